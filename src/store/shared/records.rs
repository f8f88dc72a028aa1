//! Webhooks and event rules, for every backend: one set of statements for every `Record`.

use crate::store::exec::{found, Exec};
use crate::store::rows::{self, Record};
use crate::store::sql::{Arg, Sql};
use crate::store::statements;
use crate::store::{EventRuleStore, Result, StoreResultExt, WebhookStore};
use crate::webhooks::{EventRule, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

async fn records<R: Record, E: Exec>(e: &E) -> Result<Vec<R>> {
    let q = e.sql(&format!(
        "select * from {} where {} order by name, id",
        R::TABLE,
        R::LIVE
    ));
    e.rows(q, R::read).await
}

async fn records_by_id<R: Record, E: Exec>(e: &E, ids: &[i64]) -> Result<Vec<R>> {
    let mut q = e.sql(&format!("select * from {} where {} and id in ", R::TABLE, R::LIVE));
    q.ints(ids.iter().copied()).push(" order by id");
    e.rows(q, R::read).await
}

fn insert<R: Record, E: Exec>(e: &E, record: &R, now: DateTime<Utc>) -> Result<Sql> {
    let mut q = e.sql(&format!(
        "insert into {} ({}, created_at, updated_at) values ",
        R::TABLE,
        R::COLUMNS.join(", ")
    ));
    let mut args = record.args()?;
    args.extend([Arg::from(now), Arg::from(now)]);
    q.list(args).push(" returning id");
    Ok(q)
}

fn update<R: Record, E: Exec>(e: &E, record: &R, now: DateTime<Utc>) -> Result<Sql> {
    let mut q = e.sql(&format!("update {} set ", R::TABLE));
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

/// Inserts them in one transaction; returns them with their ids and times.
async fn create_records<R: Record, E: Exec>(e: &E, records: Vec<R>, now: DateTime<Utc>) -> Result<Vec<R>> {
    let statements = Arc::new(records.iter().map(|r| insert(e, r, now)).collect::<Result<Vec<_>>>()?);
    let ids = e
        .transact(Arc::new(move |tx| {
            let statements = statements.clone();
            Box::pin(async move {
                let mut ids = Vec::with_capacity(statements.len());
                for q in statements.iter() {
                    ids.push(tx.int(q, "id").await?);
                }
                Ok(ids)
            })
        }))
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

/// Replaces them in one transaction (`NotFound` if one is gone).
async fn update_records<R: Record, E: Exec>(e: &E, records: Vec<R>, now: DateTime<Utc>) -> Result<Vec<R>> {
    let statements = Arc::new(records.iter().map(|r| update(e, r, now)).collect::<Result<Vec<_>>>()?);
    e.transact(Arc::new(move |tx| {
        let statements = statements.clone();
        Box::pin(async move {
            for q in statements.iter() {
                found(tx.exec(q).await?)?;
            }
            Ok(())
        })
    }))
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

/// Deletes them in one transaction (`NotFound` if one is gone).
async fn delete_records<R: Record, E: Exec>(e: &E, ids: &[i64]) -> Result<()> {
    let ids = Arc::new(ids.to_vec());
    e.transact(Arc::new(move |tx| {
        let ids = ids.clone();
        Box::pin(async move {
            for id in ids.iter() {
                let mut q = tx.sql(&format!("delete from {} where id = ", R::TABLE));
                q.bind(*id);
                found(tx.exec(&q).await?)?;
            }
            Ok(())
        })
    }))
    .await
}

#[async_trait]
impl<E: Exec> WebhookStore for E {
    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        records(self).await
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        let q = self.sql("select id, updated_at from webhooks where deleted_at is null order by id");
        self.rows(q, rows::record_version).await
    }

    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>> {
        records_by_id(self, ids).await
    }

    async fn create_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        create_records(self, webhooks, now).await
    }

    async fn update_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        update_records(self, webhooks, now).await
    }

    async fn delete_webhooks(&self, ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        let ids = Arc::new(ids.to_vec());
        self.transact(Arc::new(move |tx| {
            let ids = ids.clone();
            Box::pin(async move {
                for id in ids.iter() {
                    // Out of sight, its name free for a new one (no name the API takes starts
                    // with a space), kept for the deliveries that name it.
                    let mut q = tx.sql(
                        "update webhooks set deleted_name = name, name = ' deleted webhook ' || id, enabled = ",
                    );
                    q.bind(false)
                        .push(", deleted_at = ")
                        .bind(now)
                        .push(", updated_at = ")
                        .bind(now)
                        .push(" where deleted_at is null and id = ")
                        .bind(*id);
                    found(tx.exec(&q).await?)?;
                    let mut rules = tx.sql("delete from event_rules where action_object_id = ");
                    rules.bind(*id);
                    tx.exec(&rules).await?;
                    let mut pending = tx
                        .sql("update deliveries set status = 'failed', last_error = 'its webhook was deleted', updated_at = ");
                    pending
                        .bind(now)
                        .push(" where status in ('queued', 'retrying') and webhook_id = ")
                        .bind(*id);
                    tx.exec(&pending).await?;
                }
                Ok(())
            })
        }))
        .await
    }

    async fn note_health(&self, notes: &[crate::webhooks::health::HealthNote]) -> Result<()> {
        for n in notes {
            self.exec(statements::note_health(self.dialect(), n)).await?;
        }
        Ok(())
    }

    async fn troubled_webhooks(&self) -> Result<Vec<crate::webhooks::health::Trouble>> {
        let q = self.sql(
            "select w.id, w.name, w.enabled, w.consecutive_failures, w.failing_since, w.failing_noticed, w.updated_at, \
             (select d.last_error from deliveries d where d.webhook_id = w.id order by d.id desc limit 1) as last_error \
             from webhooks w where w.deleted_at is null and (w.failing_since is not null or w.failing_noticed = ",
        );
        let mut q = q;
        q.bind(true).push(") order by w.id");
        self.rows(q, |r| {
            Ok(crate::webhooks::health::Trouble {
                webhook_id: r.int("id")?,
                name: r.text("name")?,
                enabled: r.flag("enabled")?,
                consecutive_failures: r.int("consecutive_failures")?,
                failing_since: r.opt_int("failing_since")?.map(rows::from_micros).transpose()?,
                failing_noticed: r.flag("failing_noticed")?,
                changed_at: r.time("updated_at")?,
                last_error: r.opt_text("last_error")?,
            })
        })
        .await
    }

    async fn purge_deleted_webhooks(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let mut q = self.sql(
            "delete from webhooks where id in (select w.id from webhooks w where w.deleted_at is not null and w.deleted_at < ",
        );
        q.bind(before)
            .push(" and not exists (select 1 from deliveries d where d.webhook_id = w.id) order by w.id limit ")
            .bind(limit)
            .push(")");
        self.exec(q).await
    }
}

#[async_trait]
impl<E: Exec> EventRuleStore for E {
    async fn event_rules(&self) -> Result<Vec<EventRule>> {
        records(self).await
    }

    async fn event_rules_by_id(&self, ids: &[i64]) -> Result<Vec<EventRule>> {
        records_by_id(self, ids).await
    }

    async fn create_event_rules(&self, rules: Vec<EventRule>, now: DateTime<Utc>) -> Result<Vec<EventRule>> {
        create_records(self, rules, now).await
    }

    async fn update_event_rules(&self, rules: Vec<EventRule>, now: DateTime<Utc>) -> Result<Vec<EventRule>> {
        update_records(self, rules, now).await
    }

    async fn delete_event_rules(&self, ids: &[i64]) -> Result<()> {
        delete_records::<EventRule, E>(self, ids).await
    }
}
