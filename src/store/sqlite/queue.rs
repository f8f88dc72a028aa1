//! The queue in SQLite: events, deliveries and attempts.

use super::events::raw_events;
use super::{in_write_tx, map_err, micros, sql, sql_value, Run, SqliteStore, CHUNK, DIALECT};
use crate::events::Event;
use crate::page::Page;
use crate::queue::{Attempt, ClaimPlan, Delivery, DeliveryFilter, Outcome, Status};
use crate::store::rows::{self, attempt_args, from_micros, one, Columns, RawEvent, ATTEMPT_COLUMNS, CLAIM_RETURNING};
use crate::store::statements;
use crate::store::{ClaimedBatch, QueueStore, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::sync::Arc;

/// The claim as one statement: one index range per webhook (the oldest due of each), then
/// the oldest overall; each arm's lease set with a `case`.
fn claim_sql(plan: &ClaimPlan) -> super::Sql {
    let mut q = sql("update deliveries set status = 'in_flight', attempts = attempts + 1, \
         unrecorded_claims = unrecorded_claims + 1, updated_at = ");
    q.bind(plan.now).push(", next_attempt_at = case webhook_id");
    for arm in &plan.arms {
        q.push(" when ")
            .bind(arm.webhook_id)
            .push(" then ")
            .bind(arm.lease_until);
    }
    q.push(" end where id in (select id from (");
    for (i, arm) in plan.arms.iter().enumerate() {
        if i > 0 {
            q.push(" union all ");
        }
        q.push("select * from (select id, next_attempt_at from deliveries indexed by deliveries_due_webhook where webhook_id = ")
            .bind(arm.webhook_id)
            .push(" and status in ('queued', 'retrying', 'in_flight') and next_attempt_at <= ")
            .bind(plan.now)
            .push(" order by next_attempt_at, id limit ")
            .bind(arm.limit as i64)
            .push(")");
    }
    q.push(") order by next_attempt_at, id limit ")
        .bind(plan.total as i64)
        .push(") returning ")
        .push(CLAIM_RETURNING);
    q
}

/// Writes attempts and delivery states as the outcomes give them, to deliveries in flight.
fn write_outcomes(conn: &Connection, outcomes: &[Outcome], now: DateTime<Utc>) -> Result<()> {
    let text = format!(
        "insert into attempts ({}) values ({})",
        ATTEMPT_COLUMNS.join(", "),
        ["?"; ATTEMPT_COLUMNS.len()].join(", ")
    );
    let mut insert = conn.prepare_cached(&text).map_err(map_err)?;
    for a in outcomes.iter().filter_map(|o| o.attempt.as_ref()) {
        let args = attempt_args(a)?;
        insert
            .execute(params_from_iter(args.iter().map(sql_value)))
            .map_err(map_err)?;
    }
    let mut update = conn
        .prepare_cached(
            "update deliveries set status = ?, last_error = ?, last_status_code = ?, next_attempt_at = ?, updated_at = ?, \
             unrecorded_claims = 0 where id = ? and status = 'in_flight'",
        )
        .map_err(map_err)?;
    for o in outcomes {
        update
            .execute(params![
                o.status.as_str(),
                o.last_error,
                o.last_status_code.map(i64::from),
                micros(o.next_attempt_at),
                micros(now),
                o.delivery_id,
            ])
            .map_err(map_err)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Runs a statement that changes deliveries in a write transaction; returns the rows touched.
    async fn change_deliveries(&self, q: super::Sql) -> Result<u64> {
        self.write_tx(move |c| q.execute(c).map(|n| n as u64)).await
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn claim(&self, plan: &ClaimPlan) -> Result<ClaimedBatch> {
        if plan.is_empty() {
            return Ok(ClaimedBatch::default());
        }
        let q = claim_sql(plan);
        // One job on the writer: the claim, then its events' rows (parsed off the writer).
        let (rows, raw) = self
            .write
            .run(move |c| {
                let rows = q.rows(c, |r| rows::claimed_row(r))?;
                let mut ids: Vec<i64> = rows.iter().map(|r| r.event_id).collect();
                ids.sort_unstable();
                ids.dedup();
                Ok((rows, raw_events(c, &ids)?))
            })
            .await?;
        let events = raw.into_iter().map(RawEvent::parse).collect::<Result<_>>()?;
        Ok(ClaimedBatch { rows, events })
    }

    async fn complete(&self, outcomes: Arc<[Outcome]>, now: DateTime<Utc>) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.write
            .run(move |c| in_write_tx(c, |c| write_outcomes(c, &outcomes, now)))
            .await
    }

    async fn existing_deliveries(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let ids = ids.to_vec();
        self.read
            .run(move |c| {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sql("select id from deliveries where id in ");
                    q.list(chunk.iter().copied());
                    out.extend(q.rows(c, |r| r.int("id"))?);
                }
                Ok(out)
            })
            .await
    }

    async fn release(&self, delivery_ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        let ids = delivery_ids.to_vec();
        let mut q = sql(
            "update deliveries set status = 'queued', attempts = max(attempts - 1, 0), \
             unrecorded_claims = max(unrecorded_claims - 1, 0), next_attempt_at = ",
        );
        q.bind(now).push(" where status = 'in_flight' and id in ").ints(ids);
        self.write_tx(move |c| q.execute(c).map(|_| ())).await?;
        self.signal();
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = self
            .read
            .run(|c| {
                sql("select min(next_attempt_at) from deliveries indexed by deliveries_due \
                     where status in ('queued', 'retrying', 'in_flight')")
                .scalar(c)
            })
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
        let page = statements::deliveries_page(&DIALECT, filter, limit, offset, count_at_most);
        self.page(page, |r| rows::delivery(r)).await
    }

    async fn delivery(&self, id: i64) -> Result<Delivery> {
        self.read
            .run(move |c| one(statements::delivery(&DIALECT, id).rows(c, |r| rows::delivery(r))?))
            .await
    }

    async fn last_deliveries(&self, webhook_ids: &[i64]) -> Result<Vec<Delivery>> {
        let q = statements::last_deliveries(&DIALECT, webhook_ids);
        self.read.run(move |c| q.rows(c, |r| rows::delivery(r))).await
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>> {
        self.read
            .run(move |c| statements::attempts(&DIALECT, delivery_id).rows(c, |r| rows::attempt(r)))
            .await
    }

    async fn event(&self, id: i64) -> Result<Event> {
        one(self.read.run(move |c| raw_events(c, &[id])).await?)?.parse()
    }

    async fn status_counts(&self) -> Result<Vec<(Status, i64)>> {
        self.read
            .run(|c| sql(statements::STATUS_COUNTS).rows(c, |r| Ok((rows::status(r)?, r.int("n")?))))
            .await
    }

    async fn status_counts_at_most(&self, at_most: i64) -> Result<Vec<(Status, i64)>> {
        let q = statements::status_counts_at_most(&DIALECT, at_most);
        self.read
            .run(move |c| q.rows(c, |r| Ok((rows::status(r)?, r.int("n")?))))
            .await
    }

    async fn oldest_created(&self, statuses: &[Status]) -> Result<Option<DateTime<Utc>>> {
        let mut q =
            sql("select created_at from deliveries where id = (select min(id) from deliveries where status in ");
        q.list(statuses.iter().map(|s| s.as_str())).push(")");
        let at: Option<i64> = self
            .read
            .run(move |c| {
                let args = q.args.iter().map(sql_value);
                c.query_row(&q.text, rusqlite::params_from_iter(args), |r| r.get(0))
                    .optional()
                    .map_err(map_err)
            })
            .await?;
        at.map(from_micros).transpose()
    }

    async fn failed_attempts_since(&self, since: DateTime<Utc>) -> Result<i64> {
        let q = statements::failed_attempts_since(&DIALECT, since);
        self.read.run(move |c| q.scalar(c)).await
    }

    async fn finished_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<(i64, Status, i64)>> {
        let q = statements::finished_per_minute(&DIALECT, since);
        self.read
            .run(move |c| q.rows(c, |r| Ok((r.int("minute")?, rows::status(r)?, r.int("n")?))))
            .await
    }

    async fn failing_webhooks(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<(i64, String, i64)>> {
        let q = statements::failing_webhooks(&DIALECT, since, limit);
        self.read
            .run(move |c| q.rows(c, |r| Ok((r.int("id")?, r.text("name")?, r.int("n")?))))
            .await
    }

    async fn requeue(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64> {
        let n = self
            .change_deliveries(statements::requeue(&DIALECT, filter, now))
            .await?;
        if n > 0 {
            self.signal();
        }
        Ok(n)
    }

    async fn delete_deliveries(&self, filter: &DeliveryFilter) -> Result<u64> {
        self.change_deliveries(statements::delete_deliveries(&DIALECT, filter))
            .await
    }

    async fn purge_deliveries(
        &self,
        succeeded_before: DateTime<Utc>,
        failed_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        let q = statements::purge_deliveries(&DIALECT, succeeded_before, failed_before, limit);
        self.change_deliveries(q).await
    }

    async fn purge_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.change_deliveries(statements::purge_events(&DIALECT, before, limit))
            .await
    }
}
