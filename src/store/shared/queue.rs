//! The queue's reads, requeues, releases and purges, for every backend (claims and outcome
//! batches are each backend's).

use crate::events::Event;
use crate::page::Page;
use crate::queue::{Attempt, Delivery, DeliveryFilter, Status};
use crate::store::exec::Exec;
use crate::store::rows::{self, from_micros, one, RawEvent};
use crate::store::statements;
use crate::store::{QueueStore, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
impl<E: Exec> QueueStore for E {
    async fn existing_deliveries(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let mut q = self.sql("select id from deliveries where id in ");
        q.ints(ids.iter().copied());
        self.rows(q, |r| r.int("id")).await
    }

    async fn release(&self, delivery_ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        self.exec_and_signal(statements::release(self.dialect(), delivery_ids, now))
            .await
            .map(|_| ())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next = one(self
            .rows(statements::next_due(self.dialect()), |r| r.opt_int("next"))
            .await?)?;
        next.map(from_micros).transpose()
    }

    async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: i64,
        offset: i64,
        count_at_most: Option<i64>,
    ) -> Result<Page<Delivery>> {
        let page = statements::deliveries_page(self.dialect(), filter, limit, offset, count_at_most);
        self.page(page, rows::delivery).await
    }

    async fn delivery(&self, id: i64) -> Result<Delivery> {
        one(self
            .rows(statements::delivery(self.dialect(), id), rows::delivery)
            .await?)
    }

    async fn last_deliveries(&self, webhook_ids: &[i64]) -> Result<Vec<Delivery>> {
        self.rows(statements::last_deliveries(self.dialect(), webhook_ids), rows::delivery)
            .await
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>> {
        self.rows(statements::attempts(self.dialect(), delivery_id), rows::attempt)
            .await
    }

    async fn event(&self, id: i64) -> Result<Event> {
        let mut q = self.sql("select * from events where id = ");
        q.bind(id);
        one(self.rows(q, |r| RawEvent::from_row(r)?.parse()).await?)
    }

    async fn status_counts(&self) -> Result<Vec<(Status, i64)>> {
        self.rows(self.sql(statements::STATUS_COUNTS), |r| {
            Ok((rows::status(r)?, r.int("n")?))
        })
        .await
    }

    async fn status_counts_at_most(&self, at_most: i64) -> Result<Vec<(Status, i64)>> {
        let q = statements::status_counts_at_most(self.dialect(), at_most);
        self.rows(q, |r| Ok((rows::status(r)?, r.int("n")?))).await
    }

    async fn oldest_created(&self, statuses: &[Status]) -> Result<Option<DateTime<Utc>>> {
        let mut q = self.sql("select created_at from deliveries where status in ");
        q.list(statuses.iter().map(|s| s.as_str())).push(" order by id limit 1");
        let at = self.rows(q, |r| r.int("created_at")).await?.pop();
        at.map(from_micros).transpose()
    }

    async fn failed_attempts_since(&self, since: DateTime<Utc>) -> Result<i64> {
        one(self
            .rows(statements::failed_attempts_since(self.dialect(), since), |r| r.int("n"))
            .await?)
    }

    async fn finished_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<(i64, Status, i64)>> {
        let q = statements::finished_per_minute(self.dialect(), since);
        self.rows(q, |r| Ok((r.int("minute")?, rows::status(r)?, r.int("n")?)))
            .await
    }

    async fn failing_webhooks(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<(i64, String, i64)>> {
        let q = statements::failing_webhooks(self.dialect(), since, limit);
        self.rows(q, |r| Ok((r.int("id")?, r.text("name")?, r.int("n")?))).await
    }

    async fn requeue(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64> {
        self.exec_and_signal(statements::requeue(self.dialect(), filter, now))
            .await
    }

    async fn delete_deliveries(&self, filter: &DeliveryFilter) -> Result<u64> {
        self.exec(statements::delete_deliveries(self.dialect(), filter)).await
    }

    async fn purge_deliveries(
        &self,
        succeeded_before: DateTime<Utc>,
        failed_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        let q = statements::purge_deliveries(self.dialect(), succeeded_before, failed_before, limit);
        self.exec(q).await
    }

    async fn purge_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.exec(statements::purge_events(self.dialect(), before, limit)).await
    }

    async fn take_permits(&self, id: i64, rate: f64, want: i64, now: DateTime<Utc>) -> Result<(i64, DateTime<Utc>)> {
        let gcra = crate::queue::Gcra::new(rate);
        let now_us = now.timestamp_micros();
        let (granted, next) = self
            .transact(std::sync::Arc::new(move |tx| {
                Box::pin(async move {
                    let mut seed = tx.sql("insert into webhook_rates (webhook_id, tat) values ");
                    seed.list([id, now_us]).push(" on conflict (webhook_id) do nothing");
                    tx.exec(&seed).await?;
                    let mut q = tx.sql("select tat from webhook_rates where webhook_id = ");
                    q.bind(id);
                    let dialect = tx.dialect();
                    dialect.for_update(&mut q.text);
                    let tat = tx.int(&q, "tat").await?;
                    let (granted, tat) = gcra.take(tat, now_us, want);
                    let mut set = tx.sql("update webhook_rates set tat = ");
                    set.bind(tat).push(" where webhook_id = ").bind(id);
                    tx.exec(&set).await?;
                    Ok((granted, gcra.next_at(tat)))
                })
            }))
            .await?;
        Ok((granted, from_micros(next)?))
    }

    async fn return_permits(&self, id: i64, rate: f64, n: i64) -> Result<()> {
        if n <= 0 {
            return Ok(());
        }
        let back = crate::queue::Gcra::new(rate).interval_us() * n;
        let mut q = self.sql("update webhook_rates set tat = tat - ");
        q.bind(back).push(" where webhook_id = ").bind(id);
        self.exec(q).await.map(|_| ())
    }

    async fn purge_intake_keys(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let mut q = self.sql("delete from intake_keys where key in (select key from intake_keys where created_at < ");
        q.bind(before).push(" order by created_at limit ").bind(limit).push(")");
        self.exec(q).await
    }
}
