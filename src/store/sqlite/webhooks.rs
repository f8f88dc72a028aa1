//! Webhooks in SQLite.

use super::{found, map_err, sql, sql_value, Run, SqliteStore, CHUNK};
use crate::store::rows::{self, webhook_args, WEBHOOK_COLUMNS};
use crate::store::sql::Arg;
use crate::store::{Result, StoreResultExt, Unique, WebhookStore};
use crate::webhooks::Webhook;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection};

/// Enabled webhooks (in the caller's transaction).
pub(super) fn enabled(conn: &Connection) -> Result<Vec<Webhook>> {
    sql("select * from webhooks where enabled = 1 order by id").rows(conn, |r| rows::webhook(r))
}

/// Enabled webhooks' versions (in the caller's transaction).
pub(super) fn enabled_versions(conn: &Connection) -> Result<Vec<(i64, DateTime<Utc>)>> {
    sql("select id, updated_at from webhooks where enabled = 1 order by id").rows(conn, |r| rows::webhook_version(r))
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read
            .run(|c| sql("select * from webhooks order by name, id").rows(c, |r| rows::webhook(r)))
            .await
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        self.read
            .run(|c| sql("select id, updated_at from webhooks order by id").rows(c, |r| rows::webhook_version(r)))
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
                    out.extend(q.rows(c, |r| rows::webhook(r))?);
                }
                Ok(out)
            })
            .await
    }

    async fn create_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        let text = format!(
            "insert into webhooks ({}, created_at, updated_at) values ({}) returning id",
            WEBHOOK_COLUMNS.join(", "),
            vec!["?"; WEBHOOK_COLUMNS.len() + 2].join(", ")
        );
        self.write_tx(move |c| {
            let mut out = Vec::with_capacity(webhooks.len());
            for mut w in webhooks {
                let mut args = webhook_args(&w)?;
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
        let sets: Vec<String> = WEBHOOK_COLUMNS.iter().map(|c| format!("{c} = ?")).collect();
        let text = format!("update webhooks set {}, updated_at = ? where id = ?", sets.join(", "));
        self.write_tx(move |c| {
            let mut out = Vec::with_capacity(webhooks.len());
            for mut w in webhooks {
                let mut args = webhook_args(&w)?;
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
