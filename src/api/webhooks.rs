//! `/api/extras/webhooks/`: CRUD with NetBox's bulk forms, and preview.

use super::{bulk_ids, one_or_many, one_or_many_answer, ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId};
use crate::delivery::send::{self, Clients};
use crate::events::{ingest, netbox_timestamp, Event, EventKind};
use crate::validate::parse_bool;
use crate::webhooks::request::{Compiled, Outgoing};
use crate::webhooks::Webhook;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Map, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/extras/webhooks/",
            get(list)
                .post(create)
                .put(bulk_update)
                .patch(bulk_update)
                .delete(bulk_delete),
        )
        .route("/api/extras/webhooks/preview/", post(preview_new))
        .route(
            "/api/extras/webhooks/{id}/",
            get(detail).put(update_one).patch(update_one).delete(delete),
        )
        .route("/api/extras/webhooks/{id}/preview/", post(preview_saved))
        .route("/api/extras/webhooks/{id}/test/", post(test_send))
}

async fn list(State(st): State<AppState>, _auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let ids = q.ints("id")?;
    let names = q.all("name");
    let types = q.all("content_types");
    let methods = q.all("http_method");
    let enabled = match q.first("enabled") {
        None => None,
        Some(v) => {
            Some(parse_bool(v).ok_or_else(|| ApiError::Validation(json!({"enabled": ["Must be a valid boolean."]})))?)
        }
    };
    let search = q.first("q").map(str::to_lowercase);
    // Webhooks are configuration-sized: filtering in memory keeps every filter simple.
    let all: Vec<Webhook> = st
        .store
        .webhooks()
        .await?
        .into_iter()
        .filter(|w| ids.is_empty() || ids.contains(&w.id))
        .filter(|w| names.is_empty() || names.contains(&w.name))
        .filter(|w| types.is_empty() || w.content_types.iter().any(|t| types.contains(t)))
        .filter(|w| methods.is_empty() || methods.contains(&w.http_method))
        .filter(|w| enabled.is_none_or(|e| w.enabled == e))
        .filter(|w| {
            search
                .as_ref()
                .is_none_or(|s| w.name.to_lowercase().contains(s) || w.payload_url.to_lowercase().contains(s))
        })
        .collect();
    let count = all.len() as i64;
    let page = all
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|w| w.to_json(&q.origin))
        .collect();
    Ok(Json(q.paginated(count, limit, offset, page)))
}

async fn detail(
    State(st): State<AppState>,
    _auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let w = one(&st, id).await?;
    Ok(Json(w.to_json(&base)))
}

async fn one(st: &AppState, id: i64) -> Result<Webhook, ApiError> {
    st.store.webhooks_by_id(&[id]).await?.pop().ok_or(ApiError::NotFound)
}

/// Validates every item; errors come back as a list with one object per item.
fn validate_all<T>(items: &[Value], mut f: impl FnMut(&Value) -> Result<T, ApiError>) -> Result<Vec<T>, ApiError> {
    let mut ok = Vec::with_capacity(items.len());
    let mut errors = Vec::with_capacity(items.len());
    let mut failed = false;
    for item in items {
        match f(item) {
            Ok(v) => {
                ok.push(v);
                errors.push(json!({}));
            }
            Err(ApiError::Validation(e)) => {
                failed = true;
                errors.push(e);
            }
            Err(ApiError::NotFound) => {
                failed = true;
                errors.push(json!({"id": ["Not found."]}));
            }
            Err(e) => return Err(e),
        }
    }
    if failed {
        Err(ApiError::Validation(Value::Array(errors)))
    } else {
        Ok(ok)
    }
}

async fn create(
    State(st): State<AppState>,
    _auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (items, many) = one_or_many(body)?;
    let webhooks = if many {
        validate_all(&items, |item| Ok(Webhook::blank().apply(item, &st.catalog, false)?))?
    } else {
        vec![Webhook::blank().apply(&items[0], &st.catalog, false)?]
    };
    let created = st.store.create_webhooks(webhooks).await?;
    Ok((
        StatusCode::CREATED,
        Json(one_or_many_answer(
            created.iter().map(|w| w.to_json(&base)).collect(),
            many,
        )),
    )
        .into_response())
}

/// `PUT` (all required fields) or `PATCH` (only those given) of one webhook.
async fn update_one(
    State(st): State<AppState>,
    _auth: Auth,
    method: Method,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let current = one(&st, id).await?;
    let updated = current.apply(&body, &st.catalog, method == Method::PATCH)?;
    let mut saved = st.store.update_webhooks(vec![updated]).await?;
    Ok(Json(saved.pop().map(|w| w.to_json(&base)).unwrap_or(Value::Null)))
}

/// `PUT` or `PATCH` of a list of webhooks, each with its `id`: all or none.
async fn bulk_update(
    State(st): State<AppState>,
    _auth: Auth,
    method: Method,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let (items, ids) = bulk_ids(body)?;
    let current = st.store.webhooks_by_id(&ids).await?;
    let partial = method == Method::PATCH;
    // `validate_all` visits the items in order, so each takes the next id.
    let mut next_id = ids.iter();
    let updated = validate_all(&items, |item| {
        let id = next_id.next().copied().unwrap_or_default();
        let w = current.iter().find(|w| w.id == id).cloned().ok_or(ApiError::NotFound)?;
        Ok(w.apply(item, &st.catalog, partial)?)
    })?;
    let saved = st.store.update_webhooks(updated).await?;
    Ok(Json(Value::Array(saved.iter().map(|w| w.to_json(&base)).collect())))
}

async fn delete(State(st): State<AppState>, _auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.store.delete_webhooks(&[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_delete(
    State(st): State<AppState>,
    _auth: Auth,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let (_, ids) = bulk_ids(body)?;
    st.store.delete_webhooks(&ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"webhook": {...}, "event": {...}}`: what an unsaved webhook would send.
async fn preview_new(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let Some(definition) = body.get("webhook") else {
        return Err(ApiError::Validation(
            json!({"webhook": ["This field is required: the webhook definition to preview."]}),
        ));
    };
    let webhook = Webhook::blank()
        .apply(definition, &st.catalog, false)
        .map_err(|e| ApiError::Validation(json!({"webhook": e.into_value()})))?;
    preview(&st, &auth, &webhook, body.get("event")).await
}

/// `{"event": {...}}` (optional): what a saved webhook would send.
async fn preview_saved(
    State(st): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let webhook = one(&st, id).await?;
    preview(&st, &auth, &webhook, body.get("event")).await
}

/// The sample event given in a body, or a built-in one for the webhook.
fn event_for(st: &AppState, auth: &Auth, webhook: &Webhook, event: Option<&Value>) -> Result<Event, ApiError> {
    match event.filter(|e| !e.is_null()) {
        Some(e) => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let defaults = ingest::Defaults {
                username: &auth.user.username,
                now: Utc::now(),
                request_id: &request_id,
            };
            let mut parsed = ingest::parse(e.clone(), &st.catalog, &defaults)
                .map_err(|e| ApiError::Validation(json!({ "event": e })))?;
            if parsed.len() != 1 {
                return Err(ApiError::Validation(
                    json!({"event": ["Expected one event, not a list."]}),
                ));
            }
            Ok(parsed.remove(0))
        }
        None => Ok(sample_event(st, webhook, &auth.user.username)),
    }
}

/// The request `webhook` sends for `event`; a template failure is a 400 naming its field.
fn build(webhook: &Webhook, event: &Event) -> Result<Outgoing, ApiError> {
    Compiled::new(webhook)
        .and_then(|c| c.build(webhook, event))
        .map_err(|e| ApiError::Validation(json!({ e.field: [e.message] })))
}

async fn preview(
    st: &AppState,
    auth: &Auth,
    webhook: &Webhook,
    event: Option<&Value>,
) -> Result<Json<Value>, ApiError> {
    let req = build(webhook, &event_for(st, auth, webhook, event)?)?;
    let headers: Map<String, Value> = req.headers.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    Ok(Json(
        json!({"method": req.method, "url": req.url, "headers": headers, "body": req.body}),
    ))
}

/// `{"event": {...}}` (optional): sends a saved webhook's request now and shows the exchange.
/// Nothing is queued or recorded.
async fn test_send(
    State(st): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let webhook = one(&st, id).await?;
    let req = build(&webhook, &event_for(&st, &auth, &webhook, body.get("event"))?)?;
    let client = Clients::default()
        .for_webhook(&webhook)
        .map_err(|e| ApiError::Validation(json!({"ca_file_path": [e]})))?;
    let timeout = std::time::Duration::from_secs(u64::from(webhook.timeout));
    let (attempt, _) = send::send(&client, &req, 0, timeout, st.config.worker.response_body_limit).await;
    let mut out = super::deliveries::attempt_json(1, &attempt);
    out["succeeded"] = json!(attempt.error.is_none());
    Ok(Json(out))
}

/// A realistic `created` event for the webhook's first content type.
pub fn sample_event(st: &AppState, webhook: &Webhook, username: &str) -> Event {
    let t = webhook
        .content_types
        .first()
        .and_then(|name| st.catalog.get(name))
        .or_else(|| st.catalog.types().first());
    let (object_type, data) = match t {
        Some(t) => (t.name(), t.sample.clone()),
        None => ("dcim.site".to_string(), json!({})),
    };
    let kind = if webhook.type_create || !(webhook.type_update || webhook.type_delete) {
        EventKind::Created
    } else if webhook.type_update {
        EventKind::Updated
    } else {
        EventKind::Deleted
    };
    let minimal = minimal_snapshot(&data);
    let snapshots = match kind {
        EventKind::Created => json!({"prechange": null, "postchange": minimal}),
        EventKind::Updated => json!({"prechange": minimal, "postchange": minimal}),
        EventKind::Deleted => json!({"prechange": minimal, "postchange": null}),
    };
    Event {
        id: 0,
        kind,
        timestamp: netbox_timestamp(Utc::now()),
        object_type,
        username: username.to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        data,
        snapshots,
    }
}

/// NetBox's snapshot form of a REST object: foreign keys as ids, choices as values, tags as names.
fn minimal_snapshot(data: &Value) -> Value {
    let Value::Object(map) = data else { return Value::Null };
    let mut out = Map::new();
    for (k, v) in map {
        if matches!(k.as_str(), "id" | "url" | "display") {
            continue;
        }
        let v = match (k.as_str(), v) {
            ("tags", Value::Array(tags)) => {
                let mut names: Vec<String> = tags
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
                    .collect();
                names.sort();
                json!(names)
            }
            (_, Value::Object(o)) if o.contains_key("value") && o.contains_key("label") => o["value"].clone(),
            (_, Value::Object(o)) if o.contains_key("id") => o["id"].clone(),
            (_, other) => other.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}
