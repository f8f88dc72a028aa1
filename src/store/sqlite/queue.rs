//! The queue in SQLite: events, deliveries and attempts.

use super::events::raw_events;
use super::{map_err, micros, sql, sql_value, Run, SqliteStore};
use crate::queue::{ClaimPlan, Outcome};
use crate::store::rows::{self, attempt_args, RawEvent, ATTEMPT_COLUMNS, CLAIM_RETURNING};
use crate::store::statements;
use crate::store::{ClaimStore, ClaimedBatch, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection};
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
        q.push("select * from (select id, next_attempt_at from deliveries d indexed by deliveries_due_webhook where webhook_id = ")
            .bind(arm.webhook_id)
            .push(" and status in ('queued', 'retrying', 'in_flight') and next_attempt_at <= ")
            .bind(plan.now);
        if arm.ordered {
            q.push(" and ").push(&statements::first_of_its_object("d"));
        }
        q.push(" order by next_attempt_at, id limit ")
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

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn claim(&self, plan: &ClaimPlan) -> Result<ClaimedBatch> {
        if plan.is_empty() {
            return Ok(ClaimedBatch::default());
        }
        let q = claim_sql(plan);
        // One job on the writer: the claim, then its events' rows (parsed off the writer).
        let (rows, raw) = self
            .write
            .write(move |c| -> Result<_> {
                let rows = q.rows(c, |r| rows::claimed_row(r))?;
                let ids = crate::queue::claimed_event_ids(&rows);
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
        self.write.write(move |c| write_outcomes(c, &outcomes, now)).await
    }
}
