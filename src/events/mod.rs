//! Events: what webhooks see of a change, and its template context in NetBox's shape.

pub mod ingest;

use crate::python::json as pyjson;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Which kind of change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

impl EventKind {
    /// The word NetBox sends: `created`, `updated`, `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
        }
    }

    /// Accepts NetBox 3's words and NetBox 4's `object_created`, ...
    pub fn parse(s: &str) -> Option<EventKind> {
        match s.strip_prefix("object_").unwrap_or(s) {
            "created" => Some(EventKind::Created),
            "updated" => Some(EventKind::Updated),
            "deleted" => Some(EventKind::Deleted),
            _ => None,
        }
    }
}

/// An event, stored or about to be.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// 0 until stored.
    pub id: i64,
    pub kind: EventKind,
    /// ISO 8601 in UTC with microseconds, as NetBox sends it.
    pub timestamp: String,
    /// `app_label.model`.
    pub object_type: String,
    pub username: String,
    pub request_id: String,
    /// The object as the REST API shows it (before the change for deletes).
    pub data: Value,
    /// `{"prechange": ..., "postchange": ...}`.
    pub snapshots: Value,
    /// The API request that made the change, as NetBox 4.6 shows it: `{"id", "method", "path",
    /// "user"}`; `None` for changes made otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The event exactly as a NetBox posted it to the relay (`/api/extras/events/`): re-sent
    /// byte for byte when a webhook has no body template, and the context templates see, as
    /// NetBox gave it. `None` for Herald's own changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The further events of a batched delivery (a webhook with `batch`), in change order after
    /// this one: the body is then the list of all their bodies, and templates see the list of
    /// their contexts as `events` beside this one's keys. Never stored with an event.
    /// `None` for a delivery of one event (a batch of one is `Some` of none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Vec<Event>>,
}

impl Event {
    /// This event heading a batch of `rest` (the events after it, in change order).
    pub fn batched(mut self, rest: Vec<Event>) -> Event {
        self.batch = Some(rest);
        self
    }

    /// Events in its delivery: 1, or the batch's size.
    pub fn count(&self) -> usize {
        1 + self.batch.as_ref().map_or(0, Vec::len)
    }

    /// The id of the object it is about, when its data has one.
    pub fn object_id(&self) -> Option<i64> {
        self.data.get("id").and_then(Value::as_i64)
    }

    /// The model name: `site` for `dcim.site`.
    pub fn model(&self) -> &str {
        self.object_type
            .split_once('.')
            .map(|(_, m)| m)
            .unwrap_or(&self.object_type)
    }

    /// The template context, keys in NetBox's order; a relayed event's own keys, as posted. A
    /// batch's is its first event's, with `events`: every event's context, in change order.
    pub fn context(&self) -> Value {
        let mut ctx = self.one_context();
        if let Some(rest) = &self.batch {
            let all: Vec<Value> = std::iter::once(ctx.clone())
                .chain(rest.iter().map(Event::one_context))
                .collect();
            if let Value::Object(m) = &mut ctx {
                m.insert("events".into(), Value::Array(all));
            }
        }
        ctx
    }

    fn one_context(&self) -> Value {
        if let Some(Ok(posted)) = self.body.as_deref().map(serde_json::from_str) {
            return posted;
        }
        let mut ctx = Map::with_capacity(8);
        ctx.insert("event".into(), Value::from(self.kind.as_str()));
        ctx.insert("timestamp".into(), Value::from(self.timestamp.as_str()));
        ctx.insert("model".into(), Value::from(self.model()));
        ctx.insert("object_type".into(), Value::from(self.object_type.as_str()));
        ctx.insert("username".into(), Value::from(self.username.as_str()));
        ctx.insert("request_id".into(), Value::from(self.request_id.as_str()));
        ctx.insert("data".into(), self.data.clone());
        if let Some(request) = &self.request {
            ctx.insert("request".into(), request.clone());
        }
        ctx.insert("snapshots".into(), self.snapshots.clone());
        Value::Object(ctx)
    }

    /// The body sent when a webhook has no body template: the context as `json.dumps` writes
    /// it (written field by field, without building the context); for a batch, the list of
    /// its events' bodies.
    pub fn default_body(&self) -> String {
        let Some(rest) = &self.batch else {
            return self.one_body();
        };
        let mut out = String::from("[");
        out.push_str(&self.one_body());
        for e in rest {
            out.push_str(", ");
            out.push_str(&e.one_body());
        }
        out.push(']');
        out
    }

    fn one_body(&self) -> String {
        if let Some(posted) = &self.body {
            return posted.clone();
        }
        let mut out = String::with_capacity(512);
        for (i, (key, text)) in [
            ("event", self.kind.as_str()),
            ("timestamp", self.timestamp.as_str()),
            ("model", self.model()),
            ("object_type", self.object_type.as_str()),
            ("username", self.username.as_str()),
            ("request_id", self.request_id.as_str()),
        ]
        .into_iter()
        .enumerate()
        {
            out.push_str(if i == 0 { "{" } else { ", " });
            pyjson::write_str(&mut out, key);
            out.push_str(": ");
            pyjson::write_str(&mut out, text);
        }
        out.push_str(", \"data\": ");
        pyjson::write_value_into(&mut out, &self.data);
        if let Some(request) = &self.request {
            out.push_str(", \"request\": ");
            pyjson::write_value_into(&mut out, request);
        }
        out.push_str(", \"snapshots\": ");
        pyjson::write_value_into(&mut out, &self.snapshots);
        out.push('}');
        out
    }
}

/// Formats a time as NetBox does: `2020-02-25T15:10:26.010582+00:00`.
pub fn netbox_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Formats a time as NetBox's REST API (Django REST framework) does: Python's `isoformat()`
/// in UTC with `Z` for the offset, the microseconds left out when there are none:
/// `2026-11-29T18:14:45.316740Z`. Webhook bodies carry objects in this form too.
pub fn rest_time(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

/// ISO 8601 with an offset; NetBox's older `2020-02-25 15:10:26.010582+00:00` too.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%:z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_body_in_netbox_order() {
        let e = Event {
            id: 1,
            kind: EventKind::Created,
            timestamp: "2020-02-25T15:10:26.010582+00:00".into(),
            object_type: "dcim.site".into(),
            username: "jstretch".into(),
            request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a".into(),
            data: json!({"id": 19, "name": "Site 1"}),
            snapshots: json!({"prechange": null, "postchange": {"name": "Site 1"}}),
            request: None,
            body: None,
            batch: None,
        };
        assert_eq!(
            e.default_body(),
            r#"{"event": "created", "timestamp": "2020-02-25T15:10:26.010582+00:00", "model": "site", "object_type": "dcim.site", "username": "jstretch", "request_id": "fdbca812-3142-4783-b364-2e2bd5c16c6a", "data": {"id": 19, "name": "Site 1"}, "snapshots": {"prechange": null, "postchange": {"name": "Site 1"}}}"#
        );
        assert_eq!(e.default_body(), pyjson::dumps(&e.context()));
        // NetBox 4.6's request object sits between data and snapshots.
        let with = Event {
            request: Some(
                json!({"id": e.request_id, "method": "POST", "path": "/api/dcim/sites/", "user": "jstretch"}),
            ),
            ..e.clone()
        };
        assert!(with.default_body().contains(r#""name": "Site 1"}, "request": {"id": "fdbca812-3142-4783-b364-2e2bd5c16c6a", "method": "POST", "path": "/api/dcim/sites/", "user": "jstretch"}, "snapshots": "#));
        assert_eq!(with.default_body(), pyjson::dumps(&with.context()));
        // A batch: the list of the bodies; templates see the first's keys and every context.
        let batch = e.clone().batched(vec![with.clone()]);
        assert_eq!(
            batch.default_body(),
            pyjson::dumps(&Value::Array(vec![e.context(), with.context()]))
        );
        assert_eq!(
            (batch.context()["events"][1].clone(), batch.context()["data"].clone()),
            (with.context(), e.data.clone())
        );
        assert_eq!(
            e.clone().batched(vec![]).default_body(),
            format!("[{}]", e.default_body())
        );
        assert_eq!(EventKind::parse("object_deleted"), Some(EventKind::Deleted));
        assert_eq!(EventKind::parse("moved"), None);
        let t = DateTime::from_timestamp(1_582_643_426, 10_582_000).unwrap();
        assert_eq!(rest_time(t), "2020-02-25T15:10:26.010582Z");
        let whole = DateTime::from_timestamp(1_582_643_426, 0).unwrap();
        assert_eq!(rest_time(whole), "2020-02-25T15:10:26Z");
    }
}
