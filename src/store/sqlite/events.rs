//! Events in SQLite: written with their deliveries in the write transaction, read back for
//! claims and the delivery log.

use super::{col, json_err, map_err, micros, sql, Run, CHUNK};
use crate::events::{Event, EventKind};
use crate::store::{Result, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};

/// An event row as stored, its JSON not parsed yet (parsing happens off the writer thread).
pub(super) struct RawEvent {
    id: i64,
    kind: String,
    timestamp: String,
    object_type: String,
    username: String,
    request_id: String,
    data: String,
    snapshots: String,
}

impl RawEvent {
    fn from_row(row: &Row<'_>) -> Result<RawEvent> {
        Ok(RawEvent {
            id: col(row, "id")?,
            kind: col(row, "event")?,
            timestamp: col(row, "timestamp")?,
            object_type: col(row, "object_type")?,
            username: col(row, "username")?,
            request_id: col(row, "request_id")?,
            data: col(row, "data")?,
            snapshots: col(row, "snapshots")?,
        })
    }

    pub fn parse(self) -> Result<Event> {
        let kind = self.kind;
        Ok(Event {
            id: self.id,
            kind: EventKind::parse(&kind)
                .ok_or_else(|| StoreError::Other(anyhow::anyhow!("stored event kind {kind:?} is invalid")))?,
            timestamp: self.timestamp,
            object_type: self.object_type,
            username: self.username,
            request_id: self.request_id,
            data: serde_json::from_str(&self.data).map_err(json_err)?,
            snapshots: serde_json::from_str(&self.snapshots).map_err(json_err)?,
        })
    }
}

pub(super) fn raw_events(conn: &Connection, ids: &[i64]) -> Result<Vec<RawEvent>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut q = sql("select * from events where id in ");
        q.list(chunk.iter().copied());
        out.extend(q.rows(conn, RawEvent::from_row)?);
    }
    Ok(out)
}

/// Stores an event (in the caller's transaction); returns its id.
pub(super) fn insert_event(conn: &Connection, e: &Event, now: DateTime<Utc>) -> Result<i64> {
    conn.prepare_cached(
        "insert into events (event, timestamp, object_type, username, request_id, data, snapshots, created_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.kind.as_str(),
            e.timestamp,
            e.object_type,
            e.username,
            e.request_id,
            e.data.to_string(),
            e.snapshots.to_string(),
            micros(now),
        ])
    })
    .map_err(map_err)?;
    Ok(conn.last_insert_rowid())
}

/// Queues one delivery of an event per webhook (in the caller's transaction).
pub(super) fn insert_deliveries(
    conn: &Connection,
    event_id: i64,
    e: &Event,
    webhooks: &[i64],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "insert into deliveries (event_id, webhook_id, event, object_type, status, attempts, next_attempt_at, \
             created_at, updated_at) values (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5, ?5)",
        )
        .map_err(map_err)?;
    for webhook_id in webhooks {
        stmt.execute(params![
            event_id,
            webhook_id,
            e.kind.as_str(),
            e.object_type,
            micros(now)
        ])
        .map_err(map_err)?;
    }
    Ok(())
}
