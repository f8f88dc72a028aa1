//! `/api/extras/deliveries/`: the delivery log, with every attempt.

use super::views::{attempt_json, delivery_json};
use super::{ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId, PAGING};
use crate::events::rest_time;
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

async fn list(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let filter = crate::service::delivery_filter(&q.given(), &PAGING)?;
    let (limit, offset) = q.page()?;
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

/// Retries every matching delivery that is not in flight (by default: the failed ones).
async fn retry_many(State(st): State<AppState>, auth: Auth, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    let n = st
        .svc
        .retry_deliveries(&auth.actor, &crate::service::delivery_filter_of_body(&body)?)
        .await?;
    Ok(Json(json!({"retried": n})))
}

/// Deletes matching queued, retrying or failed deliveries; a filter is required.
async fn delete_many(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let n = st
        .svc
        .delete_deliveries(&auth.actor, &crate::service::delivery_filter_of_body(&body)?)
        .await?;
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
