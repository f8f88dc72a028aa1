//! `/api/extras/event-rules/`: NetBox 4.6's event rules, with NetBox's bulk forms.

use super::{
    bulk_ids, one_or_many, one_or_many_answer, ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId, PAGING,
};
use crate::events::EventKind;
use crate::service::EventRuleFilter;
use crate::webhooks::event_rule::{event_type_name, ACTION_TYPE};
use crate::webhooks::EventRule;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/extras/event-rules/",
            get(list)
                .post(create)
                .put(bulk_update)
                .patch(bulk_update)
                .delete(bulk_delete)
                .options(list_options),
        )
        .route(
            "/api/extras/event-rules/{id}/",
            get(detail)
                .put(update_one)
                .patch(update_one)
                .delete(delete)
                .options(detail_options),
        )
}

/// The rules as the API shows them, each with its webhook in brief.
async fn shown(st: &AppState, auth: &Auth, rules: &[EventRule], base: &str) -> Result<Vec<Value>, ApiError> {
    let webhooks = st.svc.rule_webhooks(&auth.actor, rules, base).await?;
    let tag_ids: Vec<i64> = rules.iter().flat_map(|r| r.tags.iter().copied()).collect();
    let briefs = st.svc.tag_briefs(&tag_ids, base).await?;
    Ok(rules
        .iter()
        .map(|r| {
            let webhook = webhooks
                .iter()
                .find(|(id, _)| *id == r.webhook_id)
                .map(|(_, w)| w.clone());
            r.to_json(base, webhook, super::webhooks::tag_list(&r.tags, &briefs))
        })
        .collect())
}

async fn list(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let filter = EventRuleFilter::read(&q.given(), &PAGING)?;
    let (limit, offset) = q.page()?;
    let page = st.svc.event_rules(&auth.actor, &filter, limit, offset).await?;
    let rows = shown(&st, &auth, &page.items, &q.origin).await?;
    Ok(Json(q.paginated(page.count, limit, offset, rows)))
}

async fn detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let rule = st.svc.event_rule(&auth.actor, id).await?;
    let mut one = shown(&st, &auth, &[rule], &base).await?;
    Ok(Json(one.pop().unwrap_or(Value::Null)))
}

async fn create(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (items, many) = one_or_many(body)?;
    let created = st.svc.create_event_rules(&auth.actor, items, many).await?;
    let rows = shown(&st, &auth, &created, &base).await?;
    Ok((StatusCode::CREATED, Json(one_or_many_answer(rows, many))).into_response())
}

/// `PUT` (all required fields) or `PATCH` (only those given) of one rule.
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
        .update_event_rules(&auth.actor, vec![(id, body)], method == Method::PATCH, false)
        .await?;
    let mut rows = shown(&st, &auth, &saved, &base).await?;
    Ok(Json(rows.pop().unwrap_or(Value::Null)))
}

/// `PUT` or `PATCH` of a list of rules, each with its `id`: all or none.
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
        .update_event_rules(&auth.actor, changes, method == Method::PATCH, true)
        .await?;
    Ok(Json(Value::Array(shown(&st, &auth, &saved, &base).await?)))
}

async fn delete(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_event_rules(&auth.actor, &[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_delete(State(st): State<AppState>, auth: Auth, JsonBody(body): JsonBody) -> Result<StatusCode, ApiError> {
    let (_, ids) = bulk_ids(body)?;
    st.svc.delete_event_rules(&auth.actor, &ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A rule's fields as Django REST framework's metadata describes them (pynetbox's `choices()`).
fn fields_metadata(st: &AppState) -> Map<String, Value> {
    use super::field_meta;
    let mut m = Map::new();
    for (name, kind, required, label) in [
        ("name", "string", true, "Name"),
        ("description", "string", false, "Description"),
        ("object_types", "list", true, "Object types"),
        ("event_types", "multiple choice", true, "Event types"),
        ("enabled", "boolean", false, "Enabled"),
        ("conditions", "json", false, "Conditions"),
        ("action_type", "choice", true, "Action type"),
        ("action_object_type", "string", true, "Action object type"),
        ("action_object_id", "integer", true, "Action object ID"),
    ] {
        m.insert(name.into(), field_meta(kind, required, label));
    }
    m["event_types"]["choices"] = super::choices(
        [EventKind::Created, EventKind::Updated, EventKind::Deleted]
            .map(|k| (event_type_name(k), format!("Object {}", k.as_str()))),
    );
    m["action_type"]["choices"] = super::choices([(ACTION_TYPE, "Webhook")]);
    m["object_types"]["choices"] = super::object_type_choices(&st.svc.catalog);
    m
}

async fn list_options(State(st): State<AppState>, _auth: Auth) -> Json<Value> {
    Json(super::metadata("Event Rule List", "POST", fields_metadata(&st)))
}

async fn detail_options(State(st): State<AppState>, _auth: Auth, PathId(_): PathId) -> Json<Value> {
    Json(super::metadata("Event Rule Instance", "PUT", fields_metadata(&st)))
}
