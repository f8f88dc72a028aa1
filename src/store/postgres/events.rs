//! Events in PostgreSQL: written with their deliveries in the write transaction, read back for
//! claims and the delivery log.

use super::{execute, fetch, scalar, sql};
use crate::events::Event;
use crate::store::rows::{event_args, RawEvent, EVENT_COLUMNS};
use crate::store::sql::Arg;
use crate::store::Result;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// The events with these ids.
pub(super) async fn events<C: GenericClient>(c: &C, ids: &[i64]) -> Result<Vec<Event>> {
    let mut q = sql("select * from events where id in ");
    q.ints(ids.iter().copied());
    fetch(c, &q, |r| RawEvent::from_row(r)?.parse()).await
}

/// Stores an event (in the caller's transaction); returns its id.
pub(super) async fn insert_event<C: GenericClient>(c: &C, e: &Event, now: DateTime<Utc>) -> Result<i64> {
    let mut q = sql(&format!("insert into events ({EVENT_COLUMNS}) values "));
    q.list(event_args(e, now)).push(" returning id");
    scalar(c, &q).await
}

/// Queues one delivery of an event per webhook (in the caller's transaction), in one statement.
pub(super) async fn insert_deliveries<C: GenericClient>(
    c: &C,
    event_id: i64,
    e: &Event,
    webhooks: &[i64],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut q = sql(
        "insert into deliveries (event_id, webhook_id, event, object_type, status, attempts, next_attempt_at, \
         created_at, updated_at) select ",
    );
    // Parameters in a select list have no type to take from their columns: cast them.
    q.bind(event_id)
        .push("::bigint, w, ")
        .bind(e.kind.as_str())
        .push("::text, ")
        .bind(&e.object_type)
        .push("::text, 'queued', 0, ")
        .bind(now)
        .push("::bigint, ")
        .bind(now)
        .push("::bigint, ")
        .bind(now)
        .push("::bigint from unnest(")
        .bind(Arg::IntSet(webhooks.to_vec()))
        .push("::bigint[]) w");
    execute(c, &q).await.map(|_| ())
}
