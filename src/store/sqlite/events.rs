//! Events in SQLite: written with their deliveries in the write transaction, read back for
//! claims and the delivery log.

use super::{map_err, micros, sql, sql_value, Run, CHUNK};
use crate::events::Event;
use crate::queue::Batched;
use crate::store::rows::{event_args, RawEvent, EVENT_COLUMNS};
use crate::store::Result;
use crate::webhooks::Firing;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection};

pub(super) fn raw_events(conn: &Connection, ids: &[i64]) -> Result<Vec<RawEvent>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut q = sql("select * from events where id in ");
        q.list(chunk.iter().copied());
        out.extend(q.rows(conn, |r| RawEvent::from_row(r))?);
    }
    Ok(out)
}

/// Stores an event (in the caller's transaction); returns its id.
pub(super) fn insert_event(conn: &Connection, e: &Event, now: DateTime<Utc>) -> Result<i64> {
    conn.prepare_cached(&format!(
        "insert into events ({EVENT_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .and_then(|mut s| s.execute(params_from_iter(event_args(e, now).iter().map(sql_value))))
    .map_err(map_err)?;
    Ok(conn.last_insert_rowid())
}

/// Queues one delivery of an event per firing (in the caller's transaction).
pub(super) fn insert_deliveries(
    conn: &Connection,
    event_id: i64,
    e: &Event,
    firings: &[Firing],
    now: DateTime<Utc>,
) -> Result<()> {
    for f in firings {
        insert_delivery(conn, event_id, e, f, None, now)?;
    }
    Ok(())
}

/// Queues one delivery per batch, about its first event (`ids` are the events' ids).
pub(super) fn insert_batches(
    conn: &Connection,
    events: &[(&Event, &[Firing])],
    batches: &[Batched],
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<()> {
    for b in batches {
        insert_delivery(
            conn,
            ids[b.head],
            events[b.head].0,
            &b.firing,
            Some(b.rest_ids(ids)),
            now,
        )?;
    }
    Ok(())
}

/// One queued delivery of event `event_id` (`e`) by `f`, with a batch's further event ids.
fn insert_delivery(
    conn: &Connection,
    event_id: i64,
    e: &Event,
    f: &Firing,
    batch: Option<String>,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "insert into deliveries (event_id, webhook_id, event_rule_id, event, object_type, object_id, status, \
             attempts, next_attempt_at, created_at, updated_at, batch) values (?1, ?2, ?3, ?4, ?5, ?7, 'queued', 0, ?6, ?6, ?6, ?8)",
        )
        .map_err(map_err)?;
    stmt.execute(params![
        event_id,
        f.webhook_id,
        f.event_rule_id,
        e.kind.as_str(),
        e.object_type,
        micros(now),
        e.object_id(),
        batch,
    ])
    .map_err(map_err)?;
    Ok(())
}
