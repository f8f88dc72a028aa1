//! NetBox's shapes of Herald's own records (beside the inventory's objects, which
//! `objects::view` shapes): brief users and groups, deliveries and their attempts. One home for
//! what several endpoints show.

use crate::auth::{Group, User};
use crate::events::rest_time;
use crate::queue::{Attempt, Delivery, Status};
use serde_json::{json, Map, Value};

pub fn brief_user(u: &User, base: &str) -> Value {
    json!({"id": u.id, "url": format!("{base}/api/users/users/{}/", u.id), "display": u.username, "username": u.username})
}

pub fn brief_group(g: &Group, base: &str) -> Value {
    json!({"id": g.id, "url": format!("{base}/api/users/groups/{}/", g.id), "display": g.name, "name": g.name})
}

/// A status as a NetBox choice: `{"value", "label"}`.
pub fn status_json(s: Status) -> Value {
    json!({"value": s.as_str(), "label": s.label()})
}

pub fn delivery_json(d: &Delivery, base: &str) -> Value {
    json!({
        "id": d.id,
        "url": format!("{base}/api/extras/deliveries/{}/", d.id),
        "display": format!("{} #{}", d.webhook_name, d.event_id),
        "webhook": {
            "id": d.webhook_id,
            "url": format!("{base}/api/extras/webhooks/{}/", d.webhook_id),
            "display": if d.webhook_deleted { format!("{} (deleted)", d.webhook_name) } else { d.webhook_name.clone() },
            "name": d.webhook_name,
            "deleted": d.webhook_deleted,
        },
        "event_rule": d.event_rule.as_ref().map(|(id, name)| {
            let name = name.clone().unwrap_or_else(|| format!("#{id} (deleted)"));
            json!({"id": id, "url": format!("{base}/api/extras/event-rules/{id}/"), "display": name, "name": name})
        }),
        "event_id": d.event_id,
        "event": d.event_kind,
        "object_type": d.object_type,
        "object_id": d.object_id,
        "batch_event_ids": d.batch.as_ref().map(|rest| std::iter::once(d.event_id).chain(rest.iter().copied()).collect::<Vec<_>>()),
        "status": status_json(d.status),
        "attempt_count": d.attempts,
        "next_attempt_at": matches!(d.status, Status::Queued | Status::Retrying).then(|| rest_time(d.next_attempt_at)),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created": rest_time(d.created),
        "last_updated": rest_time(d.last_updated),
    })
}

pub fn attempt_json(n: usize, a: &Attempt) -> Value {
    json!({
        "number": n,
        "started": rest_time(a.started),
        "duration_ms": a.duration_ms,
        "request": {
            "method": a.request_method,
            "url": a.request_url,
            "headers": pairs(&a.request_headers),
            "body": a.request_body,
        },
        "response": a.response_status.map(|status| json!({
            "status": status,
            "headers": pairs(&a.response_headers),
            "body": a.response_body,
        })),
        "error": a.error,
    })
}

fn pairs(headers: &[(String, String)]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}
