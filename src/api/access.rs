//! `/api/users/groups/` and `/api/users/permissions/`, in NetBox's shapes.

use super::views::{brief_group, brief_user};
use super::{ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId};
use crate::auth::{Group, Permission, User};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users/groups/", get(list_groups).post(create_group))
        .route(
            "/api/users/groups/{id}/",
            get(group_detail)
                .put(update_group)
                .patch(update_group)
                .delete(delete_group),
        )
        .route("/api/users/permissions/", get(list_permissions).post(create_permission))
        .route(
            "/api/users/permissions/{id}/",
            get(permission_detail)
                .put(update_permission)
                .patch(update_permission)
                .delete(delete_permission),
        )
}

fn group_json(g: &Group, base: &str) -> Value {
    let mut v = brief_group(g, base);
    v["description"] = json!(g.description);
    v
}

/// A permission as NetBox shows it, its users and groups nested.
fn permission_json(p: &Permission, users: &[User], groups: &[Group], base: &str) -> Value {
    let nested_users: Vec<Value> = p
        .users
        .iter()
        .filter_map(|id| users.iter().find(|u| u.id == *id))
        .map(|u| brief_user(u, base))
        .collect();
    let nested_groups: Vec<Value> = p
        .groups
        .iter()
        .filter_map(|id| groups.iter().find(|g| g.id == *id))
        .map(|g| brief_group(g, base))
        .collect();
    json!({
        "id": p.id,
        "url": format!("{base}/api/users/permissions/{}/", p.id),
        "display": p.name,
        "name": p.name,
        "description": p.description,
        "enabled": p.enabled,
        "object_types": p.object_types,
        "actions": p.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "constraints": null,
        "groups": nested_groups,
        "users": nested_users,
    })
}

async fn permissions_json(st: &AppState, perms: &[Permission], base: &str) -> Result<Vec<Value>, ApiError> {
    let (users, groups) = st.svc.permission_members(perms).await?;
    Ok(perms
        .iter()
        .map(|p| permission_json(p, &users, &groups, base))
        .collect())
}

async fn list_groups(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    q.only(&["name"], "groups")?;
    let (limit, offset) = q.page()?;
    let groups: Vec<Group> = st.svc.groups(&auth.actor, &q.all("name")).await?;
    let page = ListQuery::window(&groups, limit, offset)
        .iter()
        .map(|g| group_json(g, &q.origin))
        .collect();
    Ok(Json(q.paginated(groups.len() as i64, limit, offset, page)))
}

async fn group_detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(group_json(&st.svc.group(&auth.actor, id).await?, &base)))
}

async fn create_group(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let g = st.svc.create_group(&auth.actor, &body).await?;
    Ok((StatusCode::CREATED, Json(group_json(&g, &base))))
}

async fn update_group(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(group_json(
        &st.svc.update_group(&auth.actor, id, &body).await?,
        &base,
    )))
}

async fn delete_group(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_group(&auth.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_permissions(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    q.only(&[], "permissions")?;
    let (limit, offset) = q.page()?;
    let perms = st.svc.permissions(&auth.actor).await?;
    let page = permissions_json(&st, ListQuery::window(&perms, limit, offset), &q.origin).await?;
    Ok(Json(q.paginated(perms.len() as i64, limit, offset, page)))
}

async fn permission_detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let p = st.svc.permission(&auth.actor, id).await?;
    Ok(Json(permissions_json(&st, &[p], &base).await?.remove(0)))
}

async fn create_permission(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = st.svc.create_permission(&auth.actor, &body).await?;
    Ok((
        StatusCode::CREATED,
        Json(permissions_json(&st, &[p], &base).await?.remove(0)),
    ))
}

async fn update_permission(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let p = st.svc.update_permission(&auth.actor, id, &body).await?;
    Ok(Json(permissions_json(&st, &[p], &base).await?.remove(0)))
}

async fn delete_permission(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_permission(&auth.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
