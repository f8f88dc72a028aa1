//! What the pages' templates show of Herald's records: a delivery's row, a rule's summary, an
//! attempt, a request, the object-type picker's options. One home for the shapes several
//! pages share.

use super::render::iso;
use crate::api::AppState;
use crate::queue::{Attempt, Delivery, Status};
use crate::webhooks::request::Outgoing;
use crate::webhooks::EventRule;
use serde_json::{json, Value};

/// A delivery as a list row.
pub fn delivery_row(catalog: &crate::catalog::Catalog, d: &Delivery) -> Value {
    let waiting = matches!(d.status, Status::Queued | Status::Retrying);
    json!({
        "id": d.id,
        "webhook_id": d.webhook_id,
        "webhook": d.webhook_name,
        "event_rule": d.event_rule.as_ref().map(|(id, name)| json!({"id": id, "name": name})),
        "event_id": d.event_id,
        "event": d.event_kind,
        "object_type": d.object_type,
        "object_id": d.object_id,
        "object_url": object_url(catalog, &d.object_type, d.object_id),
        "webhook_deleted": d.webhook_deleted,
        "batch_size": d.batch.as_ref().map(|rest| rest.len() + 1),
        "status": d.status.as_str(),
        "label": d.status.label(),
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt": waiting.then(|| iso(d.next_attempt_at)),
        "created": iso(d.created),
        "last_updated": iso(d.last_updated),
    })
}

/// What lists and cards show of a rule.
pub fn rule_summary(r: &EventRule) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "enabled": r.enabled,
        "object_types": r.object_types,
        "event_types": r.event_types.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "conditions": r.conditions.as_ref().map(|c| serde_json::to_string_pretty(c).unwrap_or_default()),
        "webhook_id": r.webhook_id,
        "created": iso(r.created),
        "last_updated": iso(r.last_updated),
    })
}

/// An attempt (of a delivery or a test send) as the pages show it.
pub fn attempt(n: usize, a: &Attempt) -> Value {
    json!({
        "number": n,
        "started": iso(a.started),
        "duration_ms": format!("{:.0}", a.duration_ms),
        "method": a.request_method,
        "url": a.request_url,
        "request_headers": a.request_headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "request_body": a.request_body,
        "status": a.response_status,
        "ok": a.response_status.is_some_and(|s| (200..300).contains(&s)) && a.error.is_none(),
        "response_headers": a.response_headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "response_body": a.response_body,
        "error": a.error,
    })
}

/// A request as the pages show it.
pub fn request(out: &Outgoing) -> Value {
    json!({
        "method": out.method.as_str(),
        "url": out.url,
        "headers": out.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "body": out.body,
    })
}

/// Every object type as an option, those in `chosen` selected, in two groups: the types
/// Herald stores first (what its own changes fire on), then NetBox's others (relayed events).
pub fn type_options(st: &AppState, chosen: &[String]) -> Vec<Value> {
    let catalog = &st.svc.catalog;
    let option = |t: &String| {
        let (app, name) = catalog.event_type_label(t);
        json!({"value": t, "label": format!("{app} › {name}"), "selected": chosen.contains(t)})
    };
    let (stored, relayed): (Vec<&String>, Vec<&String>) =
        catalog.event_types().iter().partition(|t| catalog.get(t).is_some());
    vec![
        json!({"label": "Stored by Herald", "options": stored.into_iter().map(option).collect::<Vec<_>>()}),
        json!({"label": "Relayed from NetBox", "options": relayed.into_iter().map(option).collect::<Vec<_>>()}),
    ]
}

/// The page of the object a delivery is about, when Herald stores objects of its type.
fn object_url(catalog: &crate::catalog::Catalog, object_type: &str, id: Option<i64>) -> Option<String> {
    let t = catalog.get(object_type)?;
    id.map(|id| format!("/{}/{id}/", t.api_path))
}
