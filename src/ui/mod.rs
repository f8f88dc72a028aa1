//! The admin pages: server-rendered HTML at NetBox's paths (`/login/`, `/extras/webhooks/`,
//! `/extras/deliveries/`, `/dcim/sites/`, ...). Handlers read forms and query strings, call the
//! service layer exactly as the REST API does (so every rule and every error message is the
//! same), and render templates embedded in the binary. One stylesheet and one small script
//! come with them; every page works without the script.

mod account;
mod dashboard;
mod deliveries;
mod event_rules;
mod inventory;
mod query;
mod render;
mod session;
mod viewer;
mod views;
mod webhooks;

use crate::api::{ApiError, AppState};
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use render::Failure;

/// Where the pages stop counting (and say "10,000+"): counting every row of a log of millions
/// would make each page as slow as the log is long.
pub const COUNT_AT_MOST: i64 = 10_000;

/// Every page, the static files, and the answer for paths nothing serves (JSON under `/api/`).
pub fn pages(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(account::router())
        .merge(dashboard::router())
        .merge(webhooks::router())
        .merge(event_rules::router())
        .merge(deliveries::router())
        .merge(inventory::router(&state.svc.catalog))
        .route(
            "/static/herald.css",
            get(|| async { asset("text/css", render::STYLESHEET) }),
        )
        .route(
            "/static/herald.js",
            get(|| async { asset("text/javascript", render::SCRIPT) }),
        )
        .fallback(not_found)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    resp
}

async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/api" {
        return ApiError::NotFound.into_response();
    }
    Failure(crate::error::Error::NotFound).into_response()
}
