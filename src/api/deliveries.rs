//! `/api/extras/deliveries/`: the delivery log, with every attempt.

use super::{ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId};
use crate::events::{parse_timestamp, rest_time};
use crate::queue::{Attempt, Delivery, DeliveryFilter, Status};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Map, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/extras/deliveries/", get(list).delete(delete_many))
        .route("/api/extras/deliveries/retry/", post(retry_many))
        .route("/api/extras/deliveries/{id}/", get(detail).delete(delete_one))
        .route("/api/extras/deliveries/{id}/retry/", post(retry_one))
        .route("/api/extras/queue/", get(queue))
}

/// A status as a NetBox choice: `{"value", "label"}`.
pub fn status_json(s: Status) -> Value {
    json!({"value": s.as_str(), "label": s.label()})
}

fn delivery_json(d: &Delivery, base: &str) -> Value {
    json!({
        "id": d.id,
        "url": format!("{base}/api/extras/deliveries/{}/", d.id),
        "display": format!("{} #{}", d.webhook_name, d.event_id),
        "webhook": {
            "id": d.webhook_id,
            "url": format!("{base}/api/extras/webhooks/{}/", d.webhook_id),
            "display": d.webhook_name,
            "name": d.webhook_name,
        },
        "event_rule": d.event_rule.as_ref().map(|(id, name)| {
            let name = name.clone().unwrap_or_else(|| format!("#{id} (deleted)"));
            json!({"id": id, "url": format!("{base}/api/extras/event-rules/{id}/"), "display": name, "name": name})
        }),
        "event_id": d.event_id,
        "event": d.event_kind,
        "object_type": d.object_type,
        "status": status_json(d.status),
        "attempt_count": d.attempts,
        "next_attempt_at": matches!(d.status, Status::Queued | Status::Retrying).then(|| rest_time(d.next_attempt_at)),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created": rest_time(d.created),
        "last_updated": rest_time(d.last_updated),
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

pub(super) fn attempt_json(n: usize, a: &Attempt) -> Value {
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

/// The list's filters (`/api/schema/` lists them too).
pub(super) fn filters() -> Vec<String> {
    [
        "id",
        "status",
        "webhook_id",
        "event_rule_id",
        "object_type",
        "event",
        "request_id",
    ]
    .map(String::from)
    .to_vec()
}

async fn list(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    q.only_names(&filters(), "deliveries")?;
    let (limit, offset) = q.page()?;
    let filter = DeliveryFilter {
        id: q.ints("id")?,
        status: crate::service::statuses(&q.all("status"))?,
        webhook_id: q.ints("webhook_id")?,
        event_rule_id: q.ints("event_rule_id")?,
        object_type: q.all("object_type"),
        event: q.all("event"),
        since: None,
        until: None,
        request_id: q.all("request_id"),
    };
    let page = st.svc.deliveries(&auth.actor, &filter, limit, offset, None).await?;
    let rows = page.items.iter().map(|d| delivery_json(d, &q.origin)).collect();
    Ok(Json(q.paginated(page.count, limit, offset, rows)))
}

async fn detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(detail_json(&st, &auth, id, &base).await?))
}

async fn detail_json(st: &AppState, auth: &Auth, id: i64, base: &str) -> Result<Value, ApiError> {
    let d = st.svc.delivery(&auth.actor, id).await?;
    let mut body = delivery_json(&d.delivery, base);
    body["request_id"] = json!(d.event.request_id);
    body["context"] = d.event.context();
    body["attempts"] = Value::Array(
        d.attempts
            .iter()
            .enumerate()
            .map(|(i, a)| attempt_json(i + 1, a))
            .collect(),
    );
    Ok(body)
}

/// Sends a delivery again now: one more attempt, same event, same webhook.
async fn retry_one(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    st.svc.retry_delivery(&auth.actor, id).await?;
    Ok(Json(detail_json(&st, &auth, id, &base).await?))
}

async fn delete_one(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_delivery(&auth.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A filter from a body: `{"status", "webhook_id", "id", "since"}` (values or lists), or a
/// list of `{"id": n}`.
fn body_filter(body: &Value) -> Result<DeliveryFilter, ApiError> {
    let bad = |field: &str, msg: &str| ApiError::field(field, msg);
    let list = |v: Option<&Value>| -> Vec<Value> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(other) => vec![other.clone()],
        }
    };
    let ints = |field: &str, values: Vec<Value>| -> Result<Vec<i64>, ApiError> {
        values
            .iter()
            .map(|x| x.as_i64().ok_or_else(|| bad(field, "Expected integers.")))
            .collect()
    };
    let mut f = DeliveryFilter::default();
    match body {
        Value::Array(items) => {
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                match item.as_object().map(|o| (o.get("id"), o.len())) {
                    Some((Some(id), 1)) => ids.push(id.clone()),
                    _ => return Err(bad("id", "Expected a list of {\"id\": n}, nothing else.")),
                }
            }
            f.id = ints("id", ids)?;
        }
        Value::Object(map) => {
            // A key this filter does not know would otherwise widen it to everything.
            let known = [
                "id",
                "webhook_id",
                "event_rule_id",
                "status",
                "since",
                "object_type",
                "event",
                "request_id",
            ];
            if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(bad(
                    k,
                    "Not a filter: use id, webhook_id, event_rule_id, status, object_type, event, request_id or since.",
                ));
            }
            f.id = ints("id", list(map.get("id")))?;
            let texts = |field: &str| -> Result<Vec<String>, ApiError> {
                list(map.get(field))
                    .iter()
                    .map(|v| v.as_str().map(String::from).ok_or_else(|| bad(field, "Expected text.")))
                    .collect()
            };
            f.object_type = texts("object_type")?;
            f.event = texts("event")?;
            f.request_id = texts("request_id")?;
            f.webhook_id = ints("webhook_id", list(map.get("webhook_id")))?;
            f.event_rule_id = ints("event_rule_id", list(map.get("event_rule_id")))?;
            for s in list(map.get("status")) {
                let status = s
                    .as_str()
                    .and_then(Status::parse)
                    .ok_or_else(|| bad("status", "Expected queued, in_flight, retrying, succeeded or failed."))?;
                f.status.push(status);
            }
            if let Some(since) = map.get("since").filter(|v| !v.is_null()) {
                let t = since.as_str().and_then(parse_timestamp);
                f.since = Some(t.ok_or_else(|| bad("since", "Expected an ISO 8601 date and time with a time zone."))?);
            }
        }
        Value::Null => {}
        _ => {
            return Err(bad(
                "non_field_errors",
                "Expected a filter object or a list of {\"id\": n}.",
            ))
        }
    }
    Ok(f)
}

/// Retries every matching delivery that is not in flight (by default: the failed ones).
async fn retry_many(State(st): State<AppState>, auth: Auth, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let n = st.svc.retry_deliveries(&auth.actor, &body_filter(&body)?).await?;
    Ok(Json(json!({"retried": n})))
}

/// Deletes matching queued, retrying or failed deliveries; a filter is required.
async fn delete_many(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let n = st.svc.delete_deliveries(&auth.actor, &body_filter(&body)?).await?;
    Ok(Json(json!({"deleted": n})))
}

/// The queue at a glance.
async fn queue(State(st): State<AppState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let stats = st
        .svc
        .queue_stats(&auth.actor, now - chrono::Duration::hours(1), None)
        .await?;
    let counts: Map<String, Value> = stats
        .counts
        .iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    Ok(Json(json!({
        "counts": counts,
        "oldest_waiting": stats.oldest_waiting.map(rest_time),
        "oldest_waiting_age_seconds": stats.oldest_waiting.map(|t| (now - t).num_milliseconds() as f64 / 1000.0),
        "failed_attempts_last_hour": stats.failed_attempts,
        "last_hour": stats.per_minute.iter().map(|m| json!({
            "minute": rest_time(m.minute),
            "succeeded": m.succeeded,
            "failed": m.failed,
        })).collect::<Vec<_>>(),
        "failing_webhooks": stats.failing.iter().map(|(id, name, n)| json!({
            "id": id,
            "name": name,
            "failed_attempts": n,
        })).collect::<Vec<_>>(),
    })))
}
