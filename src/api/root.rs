//! `/api/` and `/api/status/`.

use super::{ApiError, AppState, Auth, Base};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/", get(root))
        .route("/api/status/", get(status))
}

async fn root(Base(base): Base) -> Json<Value> {
    Json(json!({
        "extras": format!("{base}/api/extras/"),
        "status": format!("{base}/api/status/"),
        "users": format!("{base}/api/users/"),
    }))
}

async fn status(State(st): State<AppState>, _auth: Auth) -> Result<Json<Value>, ApiError> {
    let counts = st.store.queue_counts().await?;
    let queue: Map<String, Value> = counts.iter().map(|(s, n)| (s.as_str().to_string(), json!(n))).collect();
    let running = st.worker_running.load(Ordering::SeqCst);
    let since = chrono::Utc::now() - crate::delivery::heartbeat::stale_after();
    let workers = st.store.workers_seen_since(since).await?;
    Ok(Json(json!({
        "herald-version": env!("CARGO_PKG_VERSION"),
        "api-version": super::API_VERSION,
        "worker-running": running,
        "rq-workers-running": workers,
        "queue": queue,
    })))
}
