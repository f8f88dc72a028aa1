//! `/api/extras/deliveries/`: the delivery log, with every attempt.

use super::{ApiError, AppState, Auth, ListQuery};
use crate::events::netbox_timestamp;
use crate::store::{Attempt, Delivery, DeliveryFilter, Status};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/extras/deliveries/", get(list))
        .route("/api/extras/deliveries/{id}/", get(detail))
}

/// A status as a NetBox choice: `{"value", "label"}`.
pub fn status_json(s: Status) -> Value {
    json!({"value": s.as_str(), "label": s.label()})
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "url": format!("/api/extras/deliveries/{}/", d.id),
        "display": format!("{} #{}", d.webhook_name, d.event_id),
        "webhook": {
            "id": d.webhook_id,
            "url": format!("/api/extras/webhooks/{}/", d.webhook_id),
            "display": d.webhook_name,
            "name": d.webhook_name,
        },
        "event_id": d.event_id,
        "event": d.event_kind,
        "object_type": d.object_type,
        "status": status_json(d.status),
        "attempt_count": d.attempts,
        "next_attempt_at": matches!(d.status, Status::Queued | Status::Retrying).then(|| netbox_timestamp(d.next_attempt_at)),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created": netbox_timestamp(d.created),
        "last_updated": netbox_timestamp(d.last_updated),
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

fn attempt_json(n: usize, a: &Attempt) -> Value {
    json!({
        "number": n,
        "started": netbox_timestamp(a.started),
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

async fn list(State(st): State<AppState>, _auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let mut status = Vec::new();
    for s in q.all("status") {
        status.push(Status::parse(&s).ok_or_else(|| {
            ApiError::Validation(json!({"status": [format!("\"{s}\" is not a valid choice: use queued, in_flight, retrying, succeeded or failed.")]}))
        })?);
    }
    let filter = DeliveryFilter {
        id: q.ints("id")?,
        status,
        webhook_id: q.ints("webhook_id")?,
        object_type: q.all("object_type"),
        event: q.all("event"),
        since: None,
    };
    let (count, rows) = st.store.deliveries(&filter, limit, offset).await?;
    Ok(Json(q.paginated(
        count,
        limit,
        offset,
        rows.iter().map(delivery_json).collect(),
    )))
}

async fn detail(State(st): State<AppState>, _auth: Auth, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
    let d = st.store.delivery(id).await?;
    let attempts = st.store.attempts(id).await?;
    let event = st.store.event(d.event_id).await?;
    let mut body = delivery_json(&d);
    body["request_id"] = json!(event.request_id);
    body["context"] = event.context();
    body["attempts"] = Value::Array(
        attempts
            .iter()
            .enumerate()
            .map(|(i, a)| attempt_json(i + 1, a))
            .collect(),
    );
    Ok(Json(body))
}
