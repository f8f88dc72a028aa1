//! Events, deliveries and attempts as rows.

use super::{invalid, json_arg, parse_json, Columns};
use crate::events::{Event, EventKind};
use crate::queue::{Attempt, ClaimedRow, Delivery, Status};
use crate::store::sql::Arg;
use crate::store::Result;
use chrono::{DateTime, Utc};

/// The columns an event writes, in the order of `event_args`.
pub const EVENT_COLUMNS: &str =
    "event, timestamp, object_type, username, request_id, data, snapshots, created_at, body, request";

pub fn event_args(e: &Event, now: DateTime<Utc>) -> [Arg; 10] {
    [
        Arg::from(e.kind.as_str()),
        Arg::from(&e.timestamp),
        Arg::from(&e.object_type),
        Arg::from(&e.username),
        Arg::from(&e.request_id),
        // A relayed event's object is in its body: stored once, not twice.
        Arg::Text(if e.body.is_some() {
            "null".into()
        } else {
            e.data.to_string()
        }),
        Arg::Text(if e.body.is_some() {
            "null".into()
        } else {
            e.snapshots.to_string()
        }),
        Arg::from(now),
        e.body.as_ref().map_or(Arg::Null, Arg::from),
        e.request.as_ref().map_or(Arg::Null, |r| Arg::Text(r.to_string())),
    ]
}

/// An event row as stored, its JSON not parsed yet (a backend may parse it elsewhere than
/// where it read it).
pub struct RawEvent {
    id: i64,
    kind: String,
    timestamp: String,
    object_type: String,
    username: String,
    request_id: String,
    data: String,
    snapshots: String,
    body: Option<String>,
    request: Option<String>,
}

impl RawEvent {
    /// A row of `events`.
    pub fn from_row(row: &dyn Columns) -> Result<RawEvent> {
        Ok(RawEvent {
            id: row.int("id")?,
            kind: row.text("event")?,
            timestamp: row.text("timestamp")?,
            object_type: row.text("object_type")?,
            username: row.text("username")?,
            request_id: row.text("request_id")?,
            data: row.text("data")?,
            snapshots: row.text("snapshots")?,
            body: row.opt_text("body")?,
            request: row.opt_text("request")?,
        })
    }

    pub fn parse(self) -> Result<Event> {
        let (data, snapshots) = match &self.body {
            Some(body) => crate::events::ingest::take_object(parse_json(body)?),
            None => (parse_json(&self.data)?, parse_json(&self.snapshots)?),
        };
        Ok(Event {
            id: self.id,
            kind: EventKind::parse(&self.kind).ok_or_else(|| invalid("event kind", &self.kind))?,
            timestamp: self.timestamp,
            object_type: self.object_type,
            username: self.username,
            request_id: self.request_id,
            data,
            snapshots,
            request: self.request.as_deref().map(parse_json).transpose()?,
            body: self.body,
            batch: None,
        })
    }
}

pub const DELIVERY_SELECT: &str = "select d.id, d.event_id, d.webhook_id, \
     case when w.deleted_at is null then w.name else w.deleted_name end as webhook_name, \
     case when w.deleted_at is null then 0 else 1 end as webhook_deleted, d.object_id, d.batch, \
     d.event_rule_id, r.name as event_rule_name, d.event, d.object_type, d.status, d.attempts, d.next_attempt_at, \
     d.created_at, d.updated_at, d.last_error, d.last_status_code from deliveries d \
     join webhooks w on w.id = d.webhook_id left join event_rules r on r.id = d.event_rule_id";

pub fn status(row: &dyn Columns) -> Result<Status> {
    let status = row.text("status")?;
    Status::parse(&status).ok_or_else(|| invalid("status", &status))
}

/// A row of `DELIVERY_SELECT`.
pub fn delivery(row: &dyn Columns) -> Result<Delivery> {
    Ok(Delivery {
        id: row.int("id")?,
        event_id: row.int("event_id")?,
        webhook_id: row.int("webhook_id")?,
        webhook_name: row.text("webhook_name")?,
        webhook_deleted: row.int("webhook_deleted")? != 0,
        object_id: row.opt_int("object_id")?,
        batch: row.opt_text("batch")?.as_deref().map(parse_json).transpose()?,
        event_rule: match row.opt_int("event_rule_id")? {
            Some(id) => Some((id, row.opt_text("event_rule_name")?)),
            None => None,
        },
        event_kind: row.text("event")?,
        object_type: row.text("object_type")?,
        status: status(row)?,
        attempts: row.int("attempts")?,
        next_attempt_at: row.time("next_attempt_at")?,
        created: row.time("created_at")?,
        last_updated: row.time("updated_at")?,
        last_error: row.opt_text("last_error")?,
        last_status_code: row.opt_int("last_status_code")?,
    })
}

/// What a claim returns: `id, event_id, webhook_id, attempts, unrecorded_claims, batch`.
pub const CLAIM_RETURNING: &str = "id, event_id, webhook_id, attempts, unrecorded_claims, batch";

pub fn claimed_row(row: &dyn Columns) -> Result<ClaimedRow> {
    Ok(ClaimedRow {
        delivery_id: row.int("id")?,
        webhook_id: row.int("webhook_id")?,
        attempts: row.int("attempts")?,
        event_id: row.int("event_id")?,
        unrecorded: row.int("unrecorded_claims")?,
        batch: row.opt_text("batch")?.as_deref().map(parse_json).transpose()?,
    })
}

/// The columns an attempt writes, in the order of `attempt_args`.
pub const ATTEMPT_COLUMNS: [&str; 11] = [
    "delivery_id",
    "started_at",
    "duration_us",
    "request_method",
    "request_url",
    "request_headers",
    "request_body",
    "response_status",
    "response_headers",
    "response_body",
    "error",
];

pub fn attempt_args(a: &Attempt) -> Result<[Arg; 11]> {
    let opt = |s: &Option<String>| s.as_ref().map_or(Arg::Null, Arg::from);
    Ok([
        Arg::Int(a.delivery_id),
        Arg::from(a.started),
        Arg::Int((a.duration_ms * 1000.0) as i64),
        Arg::from(&a.request_method),
        Arg::from(&a.request_url),
        json_arg(&a.request_headers)?,
        opt(&a.request_body),
        a.response_status.map_or(Arg::Null, |s| Arg::Int(i64::from(s))),
        json_arg(&a.response_headers)?,
        opt(&a.response_body),
        opt(&a.error),
    ])
}

/// A row of `attempts`.
pub fn attempt(row: &dyn Columns) -> Result<Attempt> {
    Ok(Attempt {
        delivery_id: row.int("delivery_id")?,
        started: row.time("started_at")?,
        duration_ms: row.int("duration_us")? as f64 / 1000.0,
        request_method: row.text("request_method")?,
        request_url: row.text("request_url")?,
        request_headers: parse_json(&row.text("request_headers")?)?,
        request_body: row.opt_text("request_body")?,
        response_status: row.opt_int("response_status")?.and_then(|s| u16::try_from(s).ok()),
        response_headers: parse_json(&row.text("response_headers")?)?,
        response_body: row.opt_text("response_body")?,
        error: row.opt_text("error")?,
    })
}
