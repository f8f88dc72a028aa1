//! `POST /api/extras/events/`: changes from outside (e.g. a NetBox forwarding its webhooks).

use super::{ApiError, AppState, Auth, RequestId};
use crate::events::ingest;
use crate::webhooks::request::sign;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Extension;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/extras/events/", post(create))
}

async fn create(
    State(st): State<AppState>,
    auth: Auth,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let secret = &st.config.ingest.secret;
    if !secret.is_empty() {
        let given = headers
            .get("X-Hook-Signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(
            given.trim().to_ascii_lowercase().as_bytes(),
            sign(secret, &body).as_bytes(),
        ) {
            return Err(ApiError::BadRequest(
                "X-Hook-Signature is missing or wrong: send the hex HMAC-SHA512 of the body keyed by the ingest secret.".into(),
            ));
        }
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))?;
    let defaults = ingest::Defaults {
        username: &auth.user.username,
        now: Utc::now(),
        request_id: &request_id.0,
    };
    let events = ingest::parse(value, &st.catalog, &defaults).map_err(ApiError::Validation)?;
    let recorded = st.store.record_events(events, Utc::now()).await?;
    let queued: usize = recorded.iter().map(|r| r.deliveries).sum();
    if queued > 0 {
        st.wake.notify_one();
    }
    let ids: Vec<i64> = recorded.iter().map(|r| r.event_id).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_ids": ids, "deliveries_queued": queued, "events": recorded})),
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
