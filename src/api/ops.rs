//! What load balancers, orchestrators and Prometheus ask: `GET /healthz` (the process answers),
//! `GET /readyz` (it can work: 200, or 503 with the reasons) and `GET /metrics` (Prometheus's
//! text format). On the API's port, `/metrics` asks for `metrics.token`; `metrics.listen` serves
//! all three openly on a listener of their own, which is also how a `herald worker` is watched.

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::Instant;

/// The content type of Prometheus's text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The three routes on the API's port (`/metrics` behind its token).
pub fn router() -> Router<AppState> {
    routes(get(metrics_with_token))
}

/// The three routes, open, for `metrics.listen`.
pub fn open_router(state: AppState) -> Router {
    routes(get(metrics)).with_state(state)
}

fn routes(metrics: axum::routing::MethodRouter<AppState>) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", metrics)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): State<AppState>) -> Response {
    let r = st.svc.readiness().await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if r.ready { "ready" } else { "not ready" }, "problems": r.problems});
    (status, Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let text = st.svc.scrape().await;
    ([(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT))], text).into_response()
}

async fn metrics_with_token(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let token = &st.svc.config.metrics.token;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let allowed = !token.is_empty() && given.is_some_and(|g| crate::auth::sessions::same_secret(token, g));
    if !allowed {
        let detail = if token.is_empty() {
            "/metrics is closed on this port: set metrics.token (and send it as a bearer token) or metrics.listen."
        } else {
            "Send metrics.token as \"Authorization: Bearer <token>\"."
        };
        let mut resp = (StatusCode::UNAUTHORIZED, Json(json!({"detail": detail}))).into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"herald metrics\""),
        );
        return resp;
    }
    metrics(State(st)).await
}

/// Counts and times every request by its route pattern (never its raw path: a path no route
/// matched is `unmatched`), method and status.
pub async fn measure(State(st): State<AppState>, req: Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    st.svc
        .metrics
        .http(route, method, resp.status().as_u16(), started.elapsed());
    resp
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
