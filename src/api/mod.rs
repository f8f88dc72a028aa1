//! The REST API, following NetBox's conventions: token auth, `{"count","next","previous",
//! "results"}` lists, `{"field": ["message"]}` validation errors and `{"detail": "..."}` others.

mod access;
mod deliveries;
mod error;
mod event_rules;
mod events;
mod extract;
pub mod json;
mod objects;
pub mod ops;
mod root;
mod schema;
pub mod serve;
mod users;
pub mod views;
mod webhooks;

pub use error::{status_code, ApiError};
pub use extract::{
    bulk_ids, one_or_many, one_or_many_answer, path_id, Auth, Base, JsonBody, ListQuery, PathId, PAGING,
};

use crate::service::Services;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderValue, Request};
use axum::Router;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The NetBox REST API version Herald's shapes follow (webhooks as in NetBox 3.x).
pub const API_VERSION: &str = "3.7";

/// An `OPTIONS` answer in Django REST framework's metadata format: `name`, and the fields the
/// `action` (`POST` on a list, `PUT` on one object) takes.
pub fn metadata(name: &str, action: &str, fields: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "description": "",
        "renders": ["application/json"],
        "parses": ["application/json"],
        "actions": {action: fields},
    })
}

/// A field's `choices` as Django REST framework's metadata lists them.
pub fn choices<V: Into<serde_json::Value>, L: Into<serde_json::Value>>(
    pairs: impl IntoIterator<Item = (V, L)>,
) -> serde_json::Value {
    pairs
        .into_iter()
        .map(|(v, l)| serde_json::json!({"value": v.into(), "display_name": l.into()}))
        .collect()
}

/// Every type an event may be of, as choices (`dcim | site`): what webhooks and event rules
/// subscribe to.
pub fn object_type_choices(catalog: &crate::catalog::Catalog) -> serde_json::Value {
    choices(catalog.event_types().iter().map(|t| {
        let (app, name) = catalog.event_type_label(t);
        (t.clone(), format!("{app} | {name}"))
    }))
}

/// One field's metadata: its DRF type, whether required, its label.
pub fn field_meta(kind: &str, required: bool, label: &str) -> serde_json::Value {
    serde_json::json!({"type": kind, "required": required, "read_only": false, "label": label})
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub svc: Services,
    /// Whether this process's delivery worker is running.
    pub worker_running: Arc<AtomicBool>,
}

/// The whole HTTP application: the API beside `pages` (which answer every path nothing else
/// serves).
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let api = &state.svc.config.api;
    let body_timeout = std::time::Duration::from_secs_f64(api.body_read_timeout_secs);
    let max_uri = api.max_uri_bytes;
    pages
        .merge(root::router(&state.svc.catalog))
        .merge(schema::router())
        .merge(webhooks::router())
        .merge(event_rules::router())
        .merge(events::router())
        .merge(deliveries::router())
        .merge(users::router())
        .merge(access::router())
        .merge(objects::router(&state.svc.catalog))
        .merge(ops::router())
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::map_response(add_api_version))
        .layer(DefaultBodyLimit::max(api.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout))
        .layer(axum::middleware::from_fn(move |req, next| {
            refuse_long_uris(max_uri, req, next)
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops::measure))
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

/// 414 in NetBox's shape for a URI over `max` bytes.
async fn refuse_long_uris(
    max: usize,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.uri().to_string().len() > max {
        return ApiError::UriTooLong.into_response();
    }
    next.run(req).await
}

async fn add_api_version(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut()
        .insert("API-Version", HeaderValue::from_static(API_VERSION));
    resp
}
