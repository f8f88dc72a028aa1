//! Webhooks in SQLite.

use super::{col, found, json_err, map_err, sql, sql_value, time_col, Run, SqliteStore, CHUNK};
use crate::store::sql::Arg;
use crate::store::{Result, StoreError, StoreResultExt, Unique, WebhookStore};
use crate::webhooks::{HttpMethod, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, Row};

/// The columns a webhook writes, in the order of `values`.
const COLUMNS: [&str; 17] = [
    "name",
    "content_types",
    "type_create",
    "type_update",
    "type_delete",
    "enabled",
    "payload_url",
    "http_method",
    "http_content_type",
    "additional_headers",
    "body_template",
    "secret",
    "ssl_verification",
    "ca_file_path",
    "timeout",
    "retry_schedule",
    "conditions",
];

/// JSON text as an argument.
fn json<T: serde::Serialize>(v: &T) -> Result<Arg> {
    serde_json::to_string(v).map(Arg::Text).map_err(json_err)
}

fn values(w: &Webhook) -> Result<Vec<Arg>> {
    let opt = |s: Option<String>| s.map_or(Arg::Null, Arg::Text);
    Ok(vec![
        Arg::from(&w.name),
        json(&w.content_types)?,
        Arg::Bool(w.type_create),
        Arg::Bool(w.type_update),
        Arg::Bool(w.type_delete),
        Arg::Bool(w.enabled),
        Arg::from(&w.payload_url),
        Arg::from(w.http_method.as_str()),
        Arg::from(&w.http_content_type),
        Arg::from(&w.additional_headers),
        Arg::from(&w.body_template),
        Arg::from(&w.secret),
        Arg::Bool(w.ssl_verification),
        opt(w.ca_file_path.clone()),
        Arg::Int(i64::from(w.timeout)),
        match &w.retry_schedule {
            Some(s) => json(s)?,
            None => Arg::Null,
        },
        opt(w.conditions.as_ref().map(|c| c.to_string())),
    ])
}

pub(super) fn webhook_from_row(row: &Row<'_>) -> Result<Webhook> {
    let json_col = |name: &str| -> Result<Option<serde_json::Value>> {
        match col::<Option<String>>(row, name)? {
            Some(text) => serde_json::from_str(&text).map(Some).map_err(json_err),
            None => Ok(None),
        }
    };
    let method: String = col(row, "http_method")?;
    let types: String = col(row, "content_types")?;
    Ok(Webhook {
        id: col(row, "id")?,
        name: col(row, "name")?,
        content_types: serde_json::from_str(&types).map_err(json_err)?,
        type_create: col(row, "type_create")?,
        type_update: col(row, "type_update")?,
        type_delete: col(row, "type_delete")?,
        enabled: col(row, "enabled")?,
        payload_url: col(row, "payload_url")?,
        http_method: HttpMethod::parse(&method)
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("stored HTTP method {method:?} is invalid")))?,
        http_content_type: col(row, "http_content_type")?,
        additional_headers: col(row, "additional_headers")?,
        body_template: col(row, "body_template")?,
        secret: col(row, "secret")?,
        ssl_verification: col(row, "ssl_verification")?,
        ca_file_path: col(row, "ca_file_path")?,
        timeout: u32::try_from(col::<i64>(row, "timeout")?).unwrap_or(u32::MAX),
        retry_schedule: json_col("retry_schedule")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(json_err)?,
        conditions: json_col("conditions")?,
        created: time_col(row, "created_at")?,
        last_updated: time_col(row, "updated_at")?,
    })
}

/// Enabled webhooks (in the caller's transaction).
pub(super) fn enabled(conn: &Connection) -> Result<Vec<Webhook>> {
    sql("select * from webhooks where enabled = 1 order by id").rows(conn, webhook_from_row)
}

/// Enabled webhooks' versions (in the caller's transaction).
pub(super) fn enabled_versions(conn: &Connection) -> Result<Vec<(i64, DateTime<Utc>)>> {
    sql("select id, updated_at from webhooks where enabled = 1 order by id")
        .rows(conn, |r| Ok((col(r, "id")?, time_col(r, "updated_at")?)))
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read
            .run(|c| sql("select * from webhooks order by name, id").rows(c, webhook_from_row))
            .await
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        self.read
            .run(|c| {
                sql("select id, updated_at from webhooks order by id")
                    .rows(c, |r| Ok((col(r, "id")?, time_col(r, "updated_at")?)))
            })
            .await
    }

    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>> {
        let ids = ids.to_vec();
        self.read
            .run(move |c| {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sql("select * from webhooks where id in ");
                    q.list(chunk.iter().copied());
                    out.extend(q.rows(c, webhook_from_row)?);
                }
                Ok(out)
            })
            .await
    }

    async fn create_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        let text = format!(
            "insert into webhooks ({}, created_at, updated_at) values ({}) returning id",
            COLUMNS.join(", "),
            vec!["?"; COLUMNS.len() + 2].join(", ")
        );
        self.write_tx(move |c| {
            let mut out = Vec::with_capacity(webhooks.len());
            for mut w in webhooks {
                let mut args = values(&w)?;
                args.extend([Arg::from(now), Arg::from(now)]);
                w.id = c
                    .query_row(&text, params_from_iter(args.iter().map(sql_value)), |r| r.get(0))
                    .map_err(map_err)?;
                (w.created, w.last_updated) = (now, now);
                out.push(w);
            }
            Ok(out)
        })
        .await
        .on_unique(Unique::WEBHOOK_NAME)
    }

    async fn update_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        let sets: Vec<String> = COLUMNS.iter().map(|c| format!("{c} = ?")).collect();
        let text = format!("update webhooks set {}, updated_at = ? where id = ?", sets.join(", "));
        self.write_tx(move |c| {
            let mut out = Vec::with_capacity(webhooks.len());
            for mut w in webhooks {
                let mut args = values(&w)?;
                args.extend([Arg::from(now), Arg::Int(w.id)]);
                found(
                    c.execute(&text, params_from_iter(args.iter().map(sql_value)))
                        .map_err(map_err)?,
                )?;
                w.last_updated = now;
                out.push(w);
            }
            Ok(out)
        })
        .await
        .on_unique(Unique::WEBHOOK_NAME)
    }

    async fn delete_webhooks(&self, ids: &[i64]) -> Result<()> {
        let ids = ids.to_vec();
        self.write_tx(move |c| {
            for id in ids {
                found(
                    c.execute("delete from webhooks where id = ?", params![id])
                        .map_err(map_err)?,
                )?;
            }
            Ok(())
        })
        .await
    }
}
