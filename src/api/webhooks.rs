//! `/api/extras/webhooks/`: CRUD with NetBox's bulk forms, and preview.

use super::{
    bulk_ids, one_or_many, one_or_many_answer, ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId, PAGING,
};
use crate::service::WebhookFilter;
use crate::webhooks::{HttpMethod, Webhook};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/extras/webhooks/",
            get(list)
                .post(create)
                .put(bulk_update)
                .patch(bulk_update)
                .delete(bulk_delete)
                .options(list_options),
        )
        .route("/api/extras/webhooks/preview/", post(preview_new))
        .route(
            "/api/extras/webhooks/{id}/",
            get(detail)
                .put(update_one)
                .patch(update_one)
                .delete(delete)
                .options(detail_options),
        )
        .route("/api/extras/webhooks/{id}/preview/", post(preview_saved))
        .route("/api/extras/webhooks/{id}/test/", post(test_send))
        .route("/api/extras/webhooks/{id}/rotate-secret/", post(rotate_secret))
}

/// Webhooks as the API shows them, each with its tags in brief.
async fn shown(st: &AppState, webhooks: &[Webhook], base: &str) -> Result<Vec<Value>, ApiError> {
    let ids: Vec<i64> = webhooks.iter().flat_map(|w| w.tags.iter().copied()).collect();
    let briefs = st.svc.tag_briefs(&ids, base).await?;
    Ok(webhooks
        .iter()
        .map(|w| w.to_json(base, tag_list(&w.tags, &briefs)))
        .collect())
}

/// The brief tags of `ids` that still exist, in order.
pub(super) fn tag_list(ids: &[i64], briefs: &std::collections::HashMap<i64, Value>) -> Value {
    Value::Array(ids.iter().filter_map(|id| briefs.get(id).cloned()).collect())
}

async fn list(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let filter = WebhookFilter::read(&q.given(), &PAGING)?;
    let (limit, offset) = q.page()?;
    let page = st.svc.webhooks(&auth.actor, &filter, limit, offset).await?;
    let rows = shown(&st, &page.items, &q.origin).await?;
    Ok(Json(q.paginated(page.count, limit, offset, rows)))
}

async fn detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let w = st.svc.webhook(&auth.actor, id).await?;
    Ok(Json(shown(&st, &[w], &base).await?.pop().unwrap_or(Value::Null)))
}

async fn create(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (items, many) = one_or_many(body)?;
    let created = st.svc.create_webhooks(&auth.actor, items, many).await?;
    let shown = shown(&st, &created, &base).await?;
    Ok((StatusCode::CREATED, Json(one_or_many_answer(shown, many))).into_response())
}

/// `PUT` (all required fields) or `PATCH` (only those given) of one webhook.
async fn update_one(
    State(st): State<AppState>,
    auth: Auth,
    method: Method,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let saved = st
        .svc
        .update_webhooks(&auth.actor, vec![(id, body)], method == Method::PATCH, false)
        .await?;
    Ok(Json(shown(&st, &saved, &base).await?.pop().unwrap_or(Value::Null)))
}

/// `PUT` or `PATCH` of a list of webhooks, each with its `id`: all or none.
async fn bulk_update(
    State(st): State<AppState>,
    auth: Auth,
    method: Method,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let (items, ids) = bulk_ids(body)?;
    let changes = ids.into_iter().zip(items).collect();
    let saved = st
        .svc
        .update_webhooks(&auth.actor, changes, method == Method::PATCH, true)
        .await?;
    Ok(Json(Value::Array(shown(&st, &saved, &base).await?)))
}

async fn delete(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_webhooks(&auth.actor, &[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_delete(State(st): State<AppState>, auth: Auth, JsonBody(body): JsonBody) -> Result<StatusCode, ApiError> {
    let (_, ids) = bulk_ids(body)?;
    st.svc.delete_webhooks(&auth.actor, &ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"webhook": {...}, "event": {...}}`: what an unsaved webhook would send.
async fn preview_new(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let Some(definition) = body.get("webhook") else {
        return Err(ApiError::field(
            "webhook",
            "This field is required: the webhook definition to preview.",
        ));
    };
    let webhook = st
        .svc
        .check_new_webhook(definition.clone())
        .await
        .map_err(|e| match e {
            ApiError::Validation(v) => ApiError::Validation(json!({ "webhook": v })),
            e => e,
        })?;
    preview(&st, &auth, webhook, false, body.get("event")).await
}

/// `{"event": {...}}` (optional): what a saved webhook would send.
async fn preview_saved(
    State(st): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let webhook = st.svc.webhook(&auth.actor, id).await?;
    preview(&st, &auth, webhook, true, body.get("event")).await
}

async fn preview(
    st: &AppState,
    auth: &Auth,
    webhook: Webhook,
    saved: bool,
    event: Option<&Value>,
) -> Result<Json<Value>, ApiError> {
    let req = st.svc.preview(&auth.actor, webhook, saved, event).await?;
    let refused = st.svc.refusal(&req.url);
    let headers: Map<String, Value> = req.headers.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    Ok(Json(json!({
        "method": req.method,
        "url": req.url,
        "headers": headers,
        "body": req.body,
        "destination_refused": refused,
    })))
}

/// `{"event": {...}}` (optional): sends a saved webhook's request now and shows the exchange.
/// Nothing is queued or recorded.
async fn test_send(
    State(st): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let webhook = st.svc.webhook(&auth.actor, id).await?;
    let attempt = st.svc.test_send(&auth.actor, &webhook, body.get("event")).await?;
    let mut out = super::views::attempt_json(1, &attempt);
    out["succeeded"] = json!(attempt.error.is_none());
    Ok(Json(out))
}

/// A webhook's fields as Django REST framework's metadata describes them (pynetbox's
/// `choices()` reads `http_method`'s and `content_types`' choices here).
fn fields_metadata(st: &AppState) -> Map<String, Value> {
    use super::field_meta;
    let mut m = Map::new();
    for (name, kind, required, label) in [
        ("name", "string", true, "Name"),
        ("description", "string", false, "Description"),
        ("content_types", "list", false, "Object types"),
        ("type_create", "boolean", false, "On create"),
        ("type_update", "boolean", false, "On update"),
        ("type_delete", "boolean", false, "On delete"),
        ("enabled", "boolean", false, "Enabled"),
        ("payload_url", "string", true, "URL"),
        ("http_method", "choice", false, "HTTP method"),
        ("http_content_type", "string", false, "HTTP content type"),
        ("additional_headers", "string", false, "Additional headers"),
        ("body_template", "string", false, "Body template"),
        ("secret", "string", false, "Secret"),
        ("ssl_verification", "boolean", false, "SSL verification"),
        ("ca_file_path", "string", false, "CA File Path"),
        ("timeout", "integer", false, "Timeout"),
        ("retry_schedule", "list", false, "Retry schedule"),
        ("conditions", "json", false, "Conditions"),
    ] {
        m.insert(name.into(), field_meta(kind, required, label));
    }
    m["http_method"]["choices"] = super::choices(HttpMethod::ALL.map(|h| (h.as_str(), h.as_str())));
    m["content_types"]["choices"] = super::object_type_choices(&st.svc.catalog);
    m["timeout"]["min_value"] = json!(1);
    m["timeout"]["max_value"] = json!(3600);
    m
}

async fn list_options(State(st): State<AppState>, _auth: Auth) -> Json<Value> {
    Json(super::metadata("Webhook List", "POST", fields_metadata(&st)))
}

async fn detail_options(State(st): State<AppState>, _auth: Auth, PathId(_): PathId) -> Json<Value> {
    Json(super::metadata("Webhook Instance", "PUT", fields_metadata(&st)))
}

/// A new secret, the previous one signing beside it for the overlap; the answer carries the
/// new secret (the only time it is shown).
async fn rotate_secret(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let (w, secret) = st.svc.rotate_secret(&auth.actor, id, &body).await?;
    let mut shown = shown(&st, &[w], &base).await?.pop().unwrap_or(Value::Null);
    shown["secret"] = Value::String(secret);
    Ok(Json(shown))
}
