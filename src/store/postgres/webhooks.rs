//! Webhooks in PostgreSQL.

use super::{execute, fetch, found, query, sql, PgStore};
use crate::store::rows::{self, one, webhook_args, WEBHOOK_COLUMNS};
use crate::store::sql::{Arg, Sql};
use crate::store::{Result, StoreResultExt, Unique, WebhookStore};
use crate::webhooks::Webhook;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// Enabled webhooks (in the caller's transaction).
pub(super) async fn enabled<C: GenericClient>(c: &C) -> Result<Vec<Webhook>> {
    fetch(c, &sql("select * from webhooks where enabled order by id"), |r| {
        rows::webhook(r)
    })
    .await
}

/// Enabled webhooks' versions (in the caller's transaction).
pub(super) async fn enabled_versions<C: GenericClient>(c: &C) -> Result<Vec<(i64, DateTime<Utc>)>> {
    fetch(
        c,
        &sql("select id, updated_at from webhooks where enabled order by id"),
        rows::webhook_version,
    )
    .await
}

fn insert(w: &Webhook, now: DateTime<Utc>) -> Result<Sql> {
    let mut q = sql(&format!(
        "insert into webhooks ({}, created_at, updated_at) values ",
        WEBHOOK_COLUMNS.join(", ")
    ));
    let mut args = webhook_args(w)?;
    args.extend([Arg::from(now), Arg::from(now)]);
    q.list(args).push(" returning id");
    Ok(q)
}

fn update(w: &Webhook, now: DateTime<Utc>) -> Result<Sql> {
    let mut q = sql("update webhooks set ");
    for (i, (column, arg)) in WEBHOOK_COLUMNS.iter().zip(webhook_args(w)?).enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push(&format!("{column} = ")).bind(arg);
    }
    q.push(", updated_at = ").bind(now).push(" where id = ").bind(w.id);
    Ok(q)
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read(&sql("select * from webhooks order by name, id"), rows::webhook)
            .await
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        self.read(&sql("select id, updated_at from webhooks order by id"), |r| {
            rows::webhook_version(r)
        })
        .await
    }

    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>> {
        let mut q = sql("select * from webhooks where id in ");
        q.ints(ids.iter().copied()).push(" order by id");
        self.read(&q, rows::webhook).await
    }

    async fn create_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        let statements = webhooks.iter().map(|w| insert(w, now)).collect::<Result<Vec<_>>>()?;
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
            .on_unique(Unique::WEBHOOK_NAME)?;
        Ok(webhooks
            .into_iter()
            .zip(ids)
            .map(|(mut w, id)| {
                (w.id, w.created, w.last_updated) = (id, now, now);
                w
            })
            .collect())
    }

    async fn update_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>> {
        let statements = webhooks.iter().map(|w| update(w, now)).collect::<Result<Vec<_>>>()?;
        self.in_tx(move |tx| {
            Box::pin(async move {
                for q in &statements {
                    found(execute(tx, q).await?)?;
                }
                Ok(())
            })
        })
        .await
        .on_unique(Unique::WEBHOOK_NAME)?;
        Ok(webhooks
            .into_iter()
            .map(|mut w| {
                w.last_updated = now;
                w
            })
            .collect())
    }

    async fn delete_webhooks(&self, ids: &[i64]) -> Result<()> {
        let ids = ids.to_vec();
        self.in_tx(move |tx| {
            Box::pin(async move {
                for id in ids {
                    let mut q = sql("delete from webhooks where id = ");
                    q.bind(id);
                    found(execute(tx, &q).await?)?;
                }
                Ok(())
            })
        })
        .await
    }
}
