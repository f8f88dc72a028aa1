//! Events in PostgreSQL: written with their deliveries in the write transaction (two
//! statements however many there are: their ids, then the events, their deliveries and the
//! workers' wake-up together), read back for claims and the delivery log.

use super::run::insert_all;
use super::{fetch, insert_rows, sql, CHANNEL};
use crate::events::Event;
use crate::queue::Batched;
use crate::store::rows::{event_args, RawEvent};
use crate::store::sql::Arg;
use crate::store::Result;
use crate::webhooks::Firing;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// The events with these ids.
pub(super) async fn events<C: GenericClient>(c: &C, ids: &[i64]) -> Result<Vec<Event>> {
    let mut q = sql("select * from events where id in ");
    q.ints(ids.iter().copied());
    fetch(c, &q, |r| RawEvent::from_row(r)?.parse()).await
}

/// The columns of `events` with their types, in the order of `id` then `rows::event_args`.
const EVENT_COLUMNS: [(&str, &str); 11] = [
    ("id", "bigint"),
    ("event", "text"),
    ("timestamp", "text"),
    ("object_type", "text"),
    ("username", "text"),
    ("request_id", "text"),
    ("data", "text"),
    ("snapshots", "text"),
    ("created_at", "bigint"),
    ("body", "text"),
    ("request", "text"),
];

const DELIVERY_COLUMNS: [(&str, &str); 12] = [
    ("event_id", "bigint"),
    ("webhook_id", "bigint"),
    ("event_rule_id", "bigint"),
    ("event", "text"),
    ("object_type", "text"),
    ("object_id", "bigint"),
    ("status", "text"),
    ("attempts", "int"),
    ("next_attempt_at", "bigint"),
    ("created_at", "bigint"),
    ("updated_at", "bigint"),
    ("batch", "text"),
];

/// Stores events and their deliveries (in the caller's transaction), and when there are
/// deliveries tells the workers listening, with the commit; returns the events' ids.
pub(super) async fn insert_events<C: GenericClient>(
    c: &C,
    events: &[(&Event, &[Firing])],
    batches: &[Batched],
    now: DateTime<Utc>,
    (change_columns, changes): (&[(&str, &str)], &[Vec<Arg>]),
) -> Result<Vec<i64>> {
    if events.is_empty() {
        if !changes.is_empty() {
            insert_rows(c, "object_changes", change_columns, changes).await?;
        }
        return Ok(Vec::new());
    }
    // The ids first, so that one statement can write the events and one their deliveries.
    let mut q = sql("select nextval('events_id_seq') as id from generate_series(1, ");
    q.bind(events.len() as i64).push("::bigint)");
    let mut ids: Vec<i64> = fetch(c, &q, |r| r.try_get("id").map_err(super::map_err)).await?;
    ids.sort_unstable();
    let rows: Vec<Vec<Arg>> = events
        .iter()
        .zip(&ids)
        .map(|((e, _), id)| std::iter::once(Arg::Int(*id)).chain(event_args(e, now)).collect())
        .collect();
    let row = |e: &Event, id: i64, f: &Firing, batch: Arg| {
        vec![
            Arg::Int(id),
            Arg::Int(f.webhook_id),
            f.event_rule_id.map_or(Arg::Null, Arg::Int),
            Arg::from(e.kind.as_str()),
            Arg::from(&e.object_type),
            e.object_id().map_or(Arg::Null, Arg::Int),
            Arg::from("queued"),
            Arg::Int(0),
            Arg::from(now),
            Arg::from(now),
            Arg::from(now),
            batch,
        ]
    };
    let mut deliveries: Vec<Vec<Arg>> = events
        .iter()
        .zip(&ids)
        .flat_map(|((e, firings), id)| firings.iter().map(move |f| row(e, *id, f, Arg::Null)))
        .collect();
    for b in batches {
        deliveries.push(row(
            events[b.head].0,
            ids[b.head],
            &b.firing,
            Arg::from(b.rest_ids(&ids)),
        ));
    }
    // The change records held back by the transaction, the events, their deliveries and the
    // workers' wake-up: one statement.
    let mut tables = vec![("events", &EVENT_COLUMNS[..], &rows[..], "")];
    if !changes.is_empty() {
        tables.push(("object_changes", change_columns, changes, ""));
    }
    let then = if deliveries.is_empty() {
        "select 1".to_string()
    } else {
        tables.push(("deliveries", &DELIVERY_COLUMNS[..], &deliveries[..], ""));
        format!("select pg_notify('{CHANNEL}', '')")
    };
    insert_all(c, None, &tables, &then).await?;
    Ok(ids)
}
