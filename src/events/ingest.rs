//! Parsing events posted to `POST /api/extras/events/`: NetBox's own default webhook body, so an
//! existing NetBox can forward its changes to Herald.

use super::{netbox_timestamp, parse_timestamp, Event, EventKind};
use crate::catalog::Catalog;
use crate::validate::{FieldErrors, Reader};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// What fills the fields an event leaves out.
pub struct Defaults<'a> {
    pub username: &'a str,
    pub now: DateTime<Utc>,
    /// The API request's id: every event of one request shares it, as NetBox's changes do.
    pub request_id: &'a str,
}

/// Parses one event or a list. Errors come back as NetBox does for bulk bodies: one error object
/// for a single event, a list with one object per item (empty for good items) for a list.
/// `raw` is the body as received: an event that needed nothing filled in keeps its own text
/// (`Event::body`), so it is re-sent exactly as it came.
pub fn parse(body: Value, raw: &[u8], catalog: &Catalog, defaults: &Defaults<'_>) -> Result<Vec<Event>, Value> {
    match body {
        Value::Array(items) => {
            let texts = item_texts(raw, items.len());
            if items.is_empty() {
                return Err(FieldErrors::single("non_field_errors", "Expected at least one event.").into_value());
            }
            let mut events = Vec::with_capacity(items.len());
            let mut errors = Vec::with_capacity(items.len());
            let mut failed = false;
            for (i, item) in items.into_iter().enumerate() {
                let text = texts.as_ref().map(|t| t[i]);
                match parse_one(item, text, catalog, defaults) {
                    Ok(e) => {
                        events.push(e);
                        errors.push(json!({}));
                    }
                    Err(e) => {
                        failed = true;
                        errors.push(e.into_value());
                    }
                }
            }
            if failed {
                Err(Value::Array(errors))
            } else {
                Ok(events)
            }
        }
        _ => parse_one(body, whole_text(raw), catalog, defaults)
            .map(|e| vec![e])
            .map_err(FieldErrors::into_value),
    }
}

/// The text of each item of a JSON list, in order; `None` if it cannot be split as parsed.
fn item_texts(raw: &[u8], len: usize) -> Option<Vec<&str>> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(raw).ok()?;
    (items.len() == len).then(|| items.into_iter().map(|i| i.get()).collect())
}

/// The text of a body of one event, without the whitespace around it.
fn whole_text(raw: &[u8]) -> Option<&str> {
    std::str::from_utf8(raw)
        .ok()
        .map(|s| s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r')))
        .filter(|s| s.starts_with('{'))
}

fn parse_one(
    value: Value,
    text: Option<&str>,
    catalog: &Catalog,
    defaults: &Defaults<'_>,
) -> Result<Event, FieldErrors> {
    let mut r = Reader::new(&value)?;
    // Kept as sent only when Herald fills nothing in: then it is a sender's whole event.
    let complete = ["timestamp", "username", "request_id"].iter().all(|k| r.has(k));
    let kind = read_kind(&mut r);
    let object_type = resolve_type(&mut r, catalog);
    let timestamp = read_timestamp(&mut r, defaults);
    let username = r
        .nullable_string("username")
        .flatten()
        .unwrap_or_else(|| defaults.username.to_string());
    let request_id = read_request_id(&mut r, defaults);
    let data_ok = check_data(&mut r);
    let snapshots_ok = check_snapshots(&mut r);
    let errors = std::mem::take(&mut r.errors);
    let (Some(kind), Some(object_type), Some(timestamp), Some(request_id), true, true, true) = (
        kind,
        object_type,
        timestamp,
        request_id,
        data_ok,
        snapshots_ok,
        errors.is_empty(),
    ) else {
        return Err(errors);
    };
    let (data, snapshots) = take_object(value);
    Ok(Event {
        id: 0,
        kind,
        timestamp,
        object_type,
        username,
        request_id,
        data,
        snapshots,
        request: None,
        body: text.filter(|_| complete).map(str::to_string),
        batch: None,
    })
}

/// The `data` and the `{"prechange", "postchange"}` snapshots of a posted event (checked),
/// moved out of it rather than copied. What is not there is null.
pub fn take_object(posted: Value) -> (Value, Value) {
    let Value::Object(mut map) = posted else {
        return (Value::Null, json!({"prechange": null, "postchange": null}));
    };
    let data = map.remove("data").unwrap_or(Value::Null);
    let mut side = |name: &str| match map.get_mut("snapshots") {
        Some(Value::Object(s)) => s.remove(name).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let snapshots = json!({"prechange": side("prechange"), "postchange": side("postchange")});
    (data, snapshots)
}

/// `event`: `created`, `updated`, `deleted` (or NetBox 4's `object_created`, ...).
fn read_kind(r: &mut Reader<'_>) -> Option<EventKind> {
    match r.string("event") {
        Some(s) => {
            let kind = EventKind::parse(&s);
            if kind.is_none() {
                r.errors.add(
                    "event",
                    format!("\"{s}\" is not a valid event: use created, updated or deleted."),
                );
            }
            kind
        }
        None => {
            if !r.has("event") {
                r.errors.add("event", "This field is required.");
            }
            None
        }
    }
}

/// `timestamp`, in NetBox's form; now when left out.
fn read_timestamp(r: &mut Reader<'_>, defaults: &Defaults<'_>) -> Option<String> {
    match r.string("timestamp") {
        Some(s) => {
            let parsed = parse_timestamp(&s).map(netbox_timestamp);
            if parsed.is_none() {
                r.errors
                    .add("timestamp", "Not an ISO 8601 date and time with a time zone.");
            }
            parsed
        }
        None => Some(netbox_timestamp(defaults.now)),
    }
}

/// `request_id`: a UUID; the API request's own when left out.
fn read_request_id(r: &mut Reader<'_>, defaults: &Defaults<'_>) -> Option<String> {
    match r.nullable_string("request_id").flatten() {
        Some(s) => match uuid::Uuid::parse_str(&s) {
            Ok(u) => Some(u.hyphenated().to_string()),
            Err(_) => {
                r.errors.add("request_id", "Must be a valid UUID.");
                None
            }
        },
        None => Some(defaults.request_id.to_string()),
    }
}

/// `data`: the object, required.
fn check_data(r: &mut Reader<'_>) -> bool {
    match r.raw("data") {
        Some(Value::Object(_)) => true,
        Some(_) => {
            r.errors.add(
                "data",
                "Expected an object: the changed object as the REST API shows it.",
            );
            false
        }
        None => {
            r.errors.add("data", "This field is required.");
            false
        }
    }
}

/// `snapshots`: absent, null, or prechange/postchange objects (or nulls).
fn check_snapshots(r: &mut Reader<'_>) -> bool {
    let ok = match r.raw("snapshots") {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map
            .iter()
            .all(|(k, v)| matches!(k.as_str(), "prechange" | "postchange") && (v.is_object() || v.is_null())),
        Some(_) => false,
    };
    if !ok {
        r.errors.add(
            "snapshots",
            "Expected {\"prechange\": object or null, \"postchange\": object or null}.",
        );
    }
    ok
}

/// `object_type` (`dcim.site`) and/or `model` (`site`); both must agree with the catalog.
fn resolve_type(r: &mut Reader<'_>, catalog: &Catalog) -> Option<String> {
    let object_type = r.string("object_type");
    let model = r.string("model");
    match (object_type, model) {
        (Some(ot), model) => {
            if !catalog.is_event_type(&ot) {
                r.errors.add("object_type", format!("Unknown object type \"{ot}\"."));
                return None;
            }
            if let Some(m) = model {
                if ot.split_once('.').map(|(_, own)| own) != Some(m.as_str()) {
                    r.errors
                        .add("model", format!("\"{m}\" does not match object_type \"{ot}\"."));
                    return None;
                }
            }
            Some(ot)
        }
        (None, Some(m)) => match catalog.event_type_of_model(&m) {
            Some(t) => Some(t.to_string()),
            None => {
                r.errors.add(
                    "model",
                    format!("Unknown model \"{m}\": send object_type as app_label.model."),
                );
                None
            }
        },
        (None, None) => {
            if !r.has("object_type") && !r.has("model") {
                r.errors.add("object_type", "This field is required (or model).");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults<'static> {
        Defaults {
            username: "admin",
            now: DateTime::from_timestamp(1_582_643_426, 10_582_000).unwrap(),
            request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a",
        }
    }

    #[test]
    fn fills_missing_fields() {
        let c = Catalog::builtin();
        let body = json!({"event": "object_created", "model": "site", "data": {"id": 1}});
        let events = parse(body.clone(), b"", &c, &defaults()).unwrap();
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Created);
        assert_eq!(e.object_type, "dcim.site");
        assert_eq!(e.username, "admin");
        assert_eq!(e.timestamp, "2020-02-25T15:10:26.010582+00:00");
        assert_eq!(e.request_id, "fdbca812-3142-4783-b364-2e2bd5c16c6a");
        assert_eq!(e.snapshots, json!({"prechange": null, "postchange": null}));
    }

    #[test]
    fn names_bad_fields() {
        let c = Catalog::builtin();
        let body = json!({"event": "moved", "object_type": "dcim.nothing", "timestamp": "yesterday", "data": 3});
        let err = parse(body.clone(), b"", &c, &defaults()).unwrap_err();
        for f in ["event", "object_type", "timestamp", "data"] {
            assert!(err.get(f).is_some(), "{f} not named in {err}");
        }
        let list = json!([{"event": "created", "object_type": "dcim.site", "data": {}}, {"event": "x"}]);
        let err = parse(list.clone(), b"", &c, &defaults()).unwrap_err();
        assert_eq!(err[0], json!({}));
        assert!(err[1].get("event").is_some());
        assert_eq!(
            parse_timestamp("2020-02-25 15:10:26.010582+00:00")
                .map(netbox_timestamp)
                .unwrap(),
            "2020-02-25T15:10:26.010582+00:00"
        );
    }
}
