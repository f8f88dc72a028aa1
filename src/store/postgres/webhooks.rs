//! Webhooks and event rules in PostgreSQL: one set of statements for every `Record`.

use super::{execute, fetch, found, query, sql, PgStore};
use crate::store::rows::{self, one, Record};
use crate::store::sql::{Arg, Sql};
use crate::store::{EventRuleStore, Result, StoreResultExt, WebhookStore};
use crate::webhooks::{EventRule, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// Enabled records of a kind (in the caller's transaction).
pub(super) async fn enabled<R: Record, C: GenericClient>(c: &C) -> Result<Vec<R>> {
    fetch(
        c,
        &sql(&format!("select * from {} where enabled order by id", R::TABLE)),
        |r| R::read(r),
    )
    .await
}

fn insert<R: Record>(record: &R, now: DateTime<Utc>) -> Result<Sql> {
    let mut q = sql(&format!(
        "insert into {} ({}, created_at, updated_at) values ",
        R::TABLE,
        R::COLUMNS.join(", ")
    ));
    let mut args = record.args()?;
    args.extend([Arg::from(now), Arg::from(now)]);
    q.list(args).push(" returning id");
    Ok(q)
}

fn update<R: Record>(record: &R, now: DateTime<Utc>) -> Result<Sql> {
    let mut q = sql(&format!("update {} set ", R::TABLE));
    for (i, (column, arg)) in R::COLUMNS.iter().zip(record.args()?).enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push(&format!("{column} = ")).bind(arg);
    }
    q.push(", updated_at = ")
        .bind(now)
        .push(" where id = ")
        .bind(record.id());
    Ok(q)
}

impl PgStore {
    async fn records<R: Record>(&self) -> Result<Vec<R>> {
        self.read(&sql(&format!("select * from {} order by name, id", R::TABLE)), |r| {
            R::read(r)
        })
        .await
    }

    async fn records_by_id<R: Record>(&self, ids: &[i64]) -> Result<Vec<R>> {
        let mut q = sql(&format!("select * from {} where id in ", R::TABLE));
        q.ints(ids.iter().copied()).push(" order by id");
        self.read(&q, |r| R::read(r)).await
    }

    async fn create_records<R: Record>(&self, records: Vec<R>, now: DateTime<Utc>) -> Result<Vec<R>> {
        let statements = records.iter().map(|r| insert(r, now)).collect::<Result<Vec<_>>>()?;
        let ids = self
            .in_tx(move |tx| {
                Box::pin(async move {
                    let mut ids = Vec::with_capacity(statements.len());
                    for q in &statements {
                        let id: i64 = one(query(tx, q).await?)?.try_get(0).map_err(super::map_err)?;
                        ids.push(id);
                    }
                    Ok(ids)
                })
            })
            .await
            .on_unique(R::UNIQUE)?;
        Ok(records
            .into_iter()
            .zip(ids)
            .map(|(mut r, id)| {
                r.stamp(id, Some(now), now);
                r
            })
            .collect())
    }

    async fn update_records<R: Record>(&self, records: Vec<R>, now: DateTime<Utc>) -> Result<Vec<R>> {
        let statements = records.iter().map(|r| update(r, now)).collect::<Result<Vec<_>>>()?;
        self.in_tx(move |tx| {
            Box::pin(async move {
                for q in &statements {
                    found(execute(tx, q).await?)?;
                }
                Ok(())
            })
        })
        .await
        .on_unique(R::UNIQUE)?;
        Ok(records
            .into_iter()
            .map(|mut r| {
                r.stamp(r.id(), None, now);
                r
            })
            .collect())
    }

    async fn delete_records<R: Record>(&self, ids: &[i64]) -> Result<()> {
        let ids = ids.to_vec();
        self.in_tx(move |tx| {
            Box::pin(async move {
                for id in ids {
                    let mut q = sql(&format!("delete from {} where id = ", R::TABLE));
                    q.bind(id);
                    found(execute(tx, &q).await?)?;
                }
                Ok(())
            })
        })
        .await
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.records().await
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        self.read(&sql("select id, updated_at from webhooks order by id"), |r| {
            rows::record_version(r)
        })
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
impl EventRuleStore for PgStore {
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
