//! The REST API, following NetBox's conventions: token auth, `{"count","next","previous",
//! "results"}` lists, `{"field": ["message"]}` validation errors and `{"detail": "..."}` others.

mod deliveries;
mod error;
mod events;
mod extract;
mod objects;
mod root;
mod users;
mod webhooks;

pub use error::{status_code, ApiError};
pub use extract::{bulk_ids, one_or_many, one_or_many_answer, Auth, Base, JsonBody, ListQuery, PathId};

use crate::service::Services;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderValue, Request};
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The NetBox REST API version Herald's shapes follow (webhooks as in NetBox 3.x).
pub const API_VERSION: &str = "3.7";

/// Largest request body accepted.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub svc: Services,
    /// Whether this process's delivery worker is running.
    pub worker_running: Arc<AtomicBool>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(root::router(&state.svc.catalog))
        .merge(webhooks::router())
        .merge(events::router())
        .merge(deliveries::router())
        .merge(users::router())
        .merge(objects::router(&state.svc.catalog))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::map_response(add_api_version))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        // Outermost, so the request span carries the id.
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// The id of one API request (a UUID), shared by every change it makes; sent back as
/// `X-Request-ID`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn request_id(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("X-Request-ID", value);
    }
    resp
}

/// A span per request keyed by the matched route (low cardinality) and the request id that
/// the change log and webhook payloads carry too.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(req.uri().path(), MatchedPath::as_str);
    let id = req.extensions().get::<RequestId>().map_or("", |r| r.0.as_str());
    tracing::info_span!("http", method = %req.method(), route, request_id = id)
}

async fn add_api_version(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut()
        .insert("API-Version", HeaderValue::from_static(API_VERSION));
    resp
}
