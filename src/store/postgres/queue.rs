//! The queue in PostgreSQL: events, deliveries and attempts. Claims take due rows with
//! `FOR UPDATE SKIP LOCKED`, so workers in any number of processes never wait on each other
//! nor take the same delivery; outcomes are written in two statements per batch.

use super::events::events;
use super::{fetch, insert_rows, map_err, sql, PgStore};
use crate::queue::{ClaimArm, ClaimPlan, Outcome};
use crate::store::rows::{self, attempt_args, CLAIM_RETURNING};
use crate::store::sql::{Arg, Sql};
use crate::store::statements;
use crate::store::{ClaimStore, ClaimedBatch, Result};
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
        .push("::bigint[], ")
        .bind(column(&|a| i64::from(a.ordered)))
        .push("::bigint[]) as a(webhook_id, lim, lease, ordered)), picked as (select p.id, p.next_attempt_at, a.lease from arms a cross join lateral (select id, next_attempt_at from deliveries d where webhook_id = a.webhook_id and ")
        .push(CLAIMABLE)
        .push(" and (a.ordered = 0 or ")
        .push(&statements::first_of_its_object("d"))
        .push(") and next_attempt_at <= ")
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

#[async_trait]
impl ClaimStore for PgStore {
    async fn claim(&self, plan: &ClaimPlan) -> Result<ClaimedBatch> {
        if plan.is_empty() {
            return Ok(ClaimedBatch::default());
        }
        let q = claim_sql(plan);
        let c = self.client().await?;
        let rows = fetch(&c, &q, |r| rows::claimed_row(r)).await?;
        if rows.is_empty() {
            return Ok(ClaimedBatch::default());
        }
        let ids = crate::queue::claimed_event_ids(&rows);
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
}
