//! The queue in PostgreSQL: events, deliveries and attempts. Claims take due rows with
//! `FOR UPDATE SKIP LOCKED`, so workers in any number of processes never wait on each other
//! nor take the same delivery; outcomes are written in two statements per batch.

use super::events::events;
use super::{fetch, insert_rows, map_err, sql, PgStore, DIALECT};
use crate::events::Event;
use crate::page::Page;
use crate::queue::{Attempt, ClaimArm, ClaimPlan, Delivery, DeliveryFilter, Outcome, Status};
use crate::store::rows::{self, attempt_args, from_micros, one, Columns, RawEvent, CLAIM_RETURNING};
use crate::store::sql::{Arg, Sql};
use crate::store::statements;
use crate::store::{ClaimedBatch, QueueStore, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The statuses a claim takes once due.
const CLAIMABLE: &str = "status in ('queued', 'retrying', 'in_flight')";

/// The claim as one statement, the same text whatever the plan (so it is prepared once): per
/// webhook (an arm: its id, limit and lease end, passed as arrays), its oldest due rows not
/// locked by another claim; of those the oldest overall, up to the total.
fn claim_sql(plan: &ClaimPlan) -> Sql {
    let column = |f: &dyn Fn(&ClaimArm) -> i64| Arg::IntSet(plan.arms.iter().map(f).collect());
    let mut q = sql("with arms as (select * from unnest(");
    q.bind(column(&|a| a.webhook_id))
        .push("::bigint[], ")
        .bind(column(&|a| a.limit as i64))
        .push("::bigint[], ")
        .bind(column(&|a| a.lease_until.timestamp_micros()))
        .push("::bigint[]) as a(webhook_id, lim, lease)), picked as (select p.id, p.next_attempt_at, a.lease from arms a cross join lateral (select id, next_attempt_at from deliveries where webhook_id = a.webhook_id and ")
        .push(CLAIMABLE)
        .push(" and next_attempt_at <= ")
        .bind(plan.now)
        .push("::bigint order by next_attempt_at, id limit a.lim for update skip locked) p), \
               chosen as (select id, lease from picked order by next_attempt_at, id limit ")
        .bind(plan.total as i64)
        .push("::bigint) update deliveries d set status = 'in_flight', attempts = d.attempts + 1, \
               unrecorded_claims = d.unrecorded_claims + 1, updated_at = ")
        .bind(plan.now)
        .push("::bigint, next_attempt_at = chosen.lease from chosen where d.id = chosen.id returning ");
    let returning: Vec<String> = CLAIM_RETURNING.split(", ").map(|c| format!("d.{c}")).collect();
    q.push(&returning.join(", "));
    q
}

/// The columns of `attempts` with their types, in the order of `rows::attempt_args`.
const ATTEMPT_COLUMNS: [(&str, &str); 11] = [
    ("delivery_id", "bigint"),
    ("started_at", "bigint"),
    ("duration_us", "bigint"),
    ("request_method", "text"),
    ("request_url", "text"),
    ("request_headers", "text"),
    ("request_body", "text"),
    ("response_status", "int"),
    ("response_headers", "text"),
    ("response_body", "text"),
    ("error", "text"),
];

/// Writes the attempts, then each delivery's state, to deliveries still in flight (in the
/// caller's transaction).
async fn write_outcomes(
    tx: &deadpool_postgres::Transaction<'_>,
    outcomes: &[Outcome],
    now: DateTime<Utc>,
) -> Result<()> {
    let attempts: Vec<Vec<Arg>> = outcomes
        .iter()
        .filter_map(|o| o.attempt.as_ref())
        .map(|a| attempt_args(a).map(Vec::from))
        .collect::<Result<_>>()?;
    if !attempts.is_empty() {
        insert_rows(tx, "attempts", &ATTEMPT_COLUMNS, &attempts).await?;
    }
    let ids: Vec<i64> = outcomes.iter().map(|o| o.delivery_id).collect();
    let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
    let errors: Vec<Option<std::borrow::Cow<'_, str>>> = outcomes
        .iter()
        .map(|o| o.last_error.as_deref().map(super::pg_text))
        .collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.last_status_code.map(i32::from)).collect();
    let next: Vec<i64> = outcomes.iter().map(|o| o.next_attempt_at.timestamp_micros()).collect();
    let stmt = tx
        .prepare_cached(
            "update deliveries d set status = u.status, last_error = u.last_error, last_status_code = u.code, \
             next_attempt_at = u.next, updated_at = $6, unrecorded_claims = 0 \
             from unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::bigint[]) as u(id, status, last_error, code, next) \
             where d.id = u.id and d.status = 'in_flight'",
        )
        .await
        .map_err(map_err)?;
    tx.execute(
        &stmt,
        &[&ids, &statuses, &errors, &codes, &next, &now.timestamp_micros()],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

impl PgStore {
    /// Runs `q` and wakes every process's workers if it touched a row.
    async fn change_and_signal(&self, q: Sql) -> Result<u64> {
        let n = self
            .in_tx(move |tx| {
                Box::pin(async move {
                    let n = super::execute(tx, &q).await?;
                    if n > 0 {
                        super::notify(tx).await?;
                    }
                    Ok(n)
                })
            })
            .await?;
        if n > 0 {
            self.queued.notify_one();
        }
        Ok(n)
    }
}

#[async_trait]
impl QueueStore for PgStore {
    async fn claim(&self, plan: &ClaimPlan) -> Result<ClaimedBatch> {
        if plan.is_empty() {
            return Ok(ClaimedBatch::default());
        }
        let q = claim_sql(plan);
        let c = self.client().await?;
        let rows = fetch(&c, &q, rows::claimed_row).await?;
        if rows.is_empty() {
            return Ok(ClaimedBatch::default());
        }
        let mut ids: Vec<i64> = rows.iter().map(|r| r.event_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let events = events(&c, &ids).await?;
        Ok(ClaimedBatch { rows, events })
    }

    async fn complete(&self, outcomes: Arc<[Outcome]>, now: DateTime<Utc>) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        // In delivery order, so two batches touching the same deliveries lock them alike.
        // Sorted once; a retry shares the sorted batch instead of copying it (bodies and all).
        let mut sorted = outcomes.to_vec();
        sorted.sort_by_key(|o| o.delivery_id);
        let sorted: Arc<[Outcome]> = sorted.into();
        self.in_tx_retried(move |tx| {
            let sorted = sorted.clone();
            Box::pin(async move { write_outcomes(tx, &sorted, now).await })
        })
        .await
    }

    async fn existing_deliveries(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let mut q = sql("select id from deliveries where id in ");
        q.ints(ids.iter().copied());
        self.read(&q, |r| r.int("id")).await
    }

    async fn release(&self, delivery_ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        let mut q = sql(
            "update deliveries set status = 'queued', attempts = greatest(attempts - 1, 0), \
             unrecorded_claims = greatest(unrecorded_claims - 1, 0), next_attempt_at = ",
        );
        q.bind(now)
            .push(" where status = 'in_flight' and id in ")
            .ints(delivery_ids.iter().copied());
        self.change_and_signal(q).await.map(|_| ())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = self
            .value(&sql(&format!(
                "select min(next_attempt_at) from deliveries where {CLAIMABLE}"
            )))
            .await?;
        next.map(from_micros).transpose()
    }

    async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: i64,
        offset: i64,
        count_at_most: Option<i64>,
    ) -> Result<Page<Delivery>> {
        self.page(
            statements::deliveries_page(&DIALECT, filter, limit, offset, count_at_most),
            rows::delivery,
        )
        .await
    }

    async fn delivery(&self, id: i64) -> Result<Delivery> {
        one(self.read(&statements::delivery(&DIALECT, id), rows::delivery).await?)
    }

    async fn last_deliveries(&self, webhook_ids: &[i64]) -> Result<Vec<Delivery>> {
        self.read(&statements::last_deliveries(&DIALECT, webhook_ids), rows::delivery)
            .await
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>> {
        self.read(&statements::attempts(&DIALECT, delivery_id), rows::attempt)
            .await
    }

    async fn event(&self, id: i64) -> Result<Event> {
        let mut q = sql("select * from events where id = ");
        q.bind(id);
        one(self.read(&q, |r| RawEvent::from_row(r)?.parse()).await?)
    }

    async fn status_counts(&self) -> Result<Vec<(Status, i64)>> {
        self.read(&sql(statements::STATUS_COUNTS), |r| Ok((rows::status(r)?, r.int("n")?)))
            .await
    }

    async fn status_counts_at_most(&self, at_most: i64) -> Result<Vec<(Status, i64)>> {
        let q = statements::status_counts_at_most(&DIALECT, at_most);
        self.read(&q, |r| Ok((rows::status(r)?, r.int("n")?))).await
    }

    async fn oldest_created(&self, statuses: &[Status]) -> Result<Option<DateTime<Utc>>> {
        let mut q = sql("select created_at from deliveries where status in ");
        q.list(statuses.iter().map(|s| s.as_str())).push(" order by id limit 1");
        let at = self.read(&q, |r| r.int("created_at")).await?.pop();
        at.map(from_micros).transpose()
    }

    async fn failed_attempts_since(&self, since: DateTime<Utc>) -> Result<i64> {
        self.value(&statements::failed_attempts_since(&DIALECT, since)).await
    }

    async fn finished_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<(i64, Status, i64)>> {
        let q = statements::finished_per_minute(&DIALECT, since);
        self.read(&q, |r| Ok((r.int("minute")?, rows::status(r)?, r.int("n")?)))
            .await
    }

    async fn failing_webhooks(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<(i64, String, i64)>> {
        let q = statements::failing_webhooks(&DIALECT, since, limit);
        self.read(&q, |r| Ok((r.int("id")?, r.text("name")?, r.int("n")?)))
            .await
    }

    async fn requeue(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64> {
        self.change_and_signal(statements::requeue(&DIALECT, filter, now)).await
    }

    async fn delete_deliveries(&self, filter: &DeliveryFilter) -> Result<u64> {
        self.exec(&statements::delete_deliveries(&DIALECT, filter)).await
    }

    async fn purge_deliveries(
        &self,
        succeeded_before: DateTime<Utc>,
        failed_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        let q = statements::purge_deliveries(&DIALECT, succeeded_before, failed_before, limit);
        self.exec(&q).await
    }

    async fn purge_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.exec(&statements::purge_events(&DIALECT, before, limit)).await
    }
}
