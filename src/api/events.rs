//! `POST /api/extras/events/`: changes from outside (e.g. a NetBox forwarding its webhooks).

use super::extract::{body_bytes, parse_json};
use super::{ApiError, AppState, Auth, RequestId};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Extension;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/extras/events/", post(create))
}

async fn create(
    State(st): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    req: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_bytes(req, &st).await?;
    let signature = headers
        .get(crate::webhooks::signature::NETBOX)
        .and_then(|v| v.to_str().ok());
    st.svc.check_ingest_signature(&body, signature)?;
    let value = parse_json(&body, &st)?;
    let key = match headers.get("Idempotency-Key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII.".into()))?,
        ),
    };
    let recorded = st
        .svc
        .record_events_once(&auth.actor, value, &body, &request_id.0, key)
        .await?;
    let queued: usize = recorded.iter().map(|r| r.deliveries).sum();
    let ids: Vec<i64> = recorded.iter().map(|r| r.event_id).collect();
    let duplicate = !recorded.is_empty() && recorded.iter().all(|r| r.duplicate);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_ids": ids, "deliveries_queued": queued, "duplicate": duplicate, "events": recorded})),
    ))
}
