//! Webhooks and event rules in SQLite: one set of statements for every `Record`.

use super::{found, map_err, sql, sql_value, Run, SqliteStore, CHUNK};
use crate::store::rows::{self, Record};
use crate::store::sql::Arg;
use crate::store::{EventRuleStore, Result, StoreResultExt, WebhookStore};
use crate::webhooks::{EventRule, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params_from_iter, Connection};

/// Enabled records of a kind (in the caller's transaction).
pub(super) fn enabled<R: Record>(conn: &Connection) -> Result<Vec<R>> {
    sql(&format!("select * from {} where enabled = 1 order by id", R::TABLE)).rows(conn, |r| R::read(r))
}

impl SqliteStore {
    async fn records<R: Record>(&self) -> Result<Vec<R>> {
        self.read
            .run(|c| sql(&format!("select * from {} order by name, id", R::TABLE)).rows(c, |r| R::read(r)))
            .await
    }

    async fn records_by_id<R: Record>(&self, ids: &[i64]) -> Result<Vec<R>> {
        let ids = ids.to_vec();
        self.read
            .run(move |c| {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sql(&format!("select * from {} where id in ", R::TABLE));
                    q.list(chunk.iter().copied());
                    out.extend(q.rows(c, |r| R::read(r))?);
                }
                Ok(out)
            })
            .await
    }

    async fn create_records<R: Record>(&self, records: Vec<R>, now: DateTime<Utc>) -> Result<Vec<R>> {
        let text = format!(
            "insert into {} ({}, created_at, updated_at) values ({}) returning id",
            R::TABLE,
            R::COLUMNS.join(", "),
            vec!["?"; R::COLUMNS.len() + 2].join(", ")
        );
        self.write_tx(move |c| {
            let mut out = Vec::with_capacity(records.len());
            for mut record in records {
                let mut args = record.args()?;
                args.extend([Arg::from(now), Arg::from(now)]);
                let id = c
                    .query_row(&text, params_from_iter(args.iter().map(sql_value)), |r| r.get(0))
                    .map_err(map_err)?;
                record.stamp(id, Some(now), now);
                out.push(record);
            }
            Ok(out)
        })
        .await
        .on_unique(R::UNIQUE)
    }

    async fn update_records<R: Record>(&self, records: Vec<R>, now: DateTime<Utc>) -> Result<Vec<R>> {
        let sets: Vec<String> = R::COLUMNS.iter().map(|c| format!("{c} = ?")).collect();
        let text = format!(
            "update {} set {}, updated_at = ? where id = ?",
            R::TABLE,
            sets.join(", ")
        );
        self.write_tx(move |c| {
            let mut out = Vec::with_capacity(records.len());
            for mut record in records {
                let mut args = record.args()?;
                args.extend([Arg::from(now), Arg::Int(record.id())]);
                found(
                    c.execute(&text, params_from_iter(args.iter().map(sql_value)))
                        .map_err(map_err)?,
                )?;
                record.stamp(record.id(), None, now);
                out.push(record);
            }
            Ok(out)
        })
        .await
        .on_unique(R::UNIQUE)
    }

    async fn delete_records<R: Record>(&self, ids: &[i64]) -> Result<()> {
        let (ids, text) = (ids.to_vec(), format!("delete from {} where id = ?", R::TABLE));
        self.write_tx(move |c| {
            for id in ids {
                found(c.execute(&text, [id]).map_err(map_err)?)?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.records().await
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        self.read
            .run(|c| sql("select id, updated_at from webhooks order by id").rows(c, |r| rows::record_version(r)))
            .await
    }

    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>> {
        self.records_by_id(ids).await
    }

    async fn create_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        self.create_records(webhooks, now).await
    }

    async fn update_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        self.update_records(webhooks, now).await
    }

    async fn delete_webhooks(&self, ids: &[i64]) -> Result<()> {
        self.delete_records::<Webhook>(ids).await
    }
}

#[async_trait]
impl EventRuleStore for SqliteStore {
    async fn event_rules(&self) -> Result<Vec<EventRule>> {
        self.records().await
    }

    async fn event_rules_by_id(&self, ids: &[i64]) -> Result<Vec<EventRule>> {
        self.records_by_id(ids).await
    }

    async fn create_event_rules(&self, rules: Vec<EventRule>, now: DateTime<Utc>) -> Result<Vec<EventRule>> {
        self.create_records(rules, now).await
    }

    async fn update_event_rules(&self, rules: Vec<EventRule>, now: DateTime<Utc>) -> Result<Vec<EventRule>> {
        self.update_records(rules, now).await
    }

    async fn delete_event_rules(&self, ids: &[i64]) -> Result<()> {
        self.delete_records::<EventRule>(ids).await
    }
}
