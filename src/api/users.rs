//! `/api/users/users/` and `/api/users/tokens/` (with `provision/`, what pynetbox's
//! `create_token` calls). Superusers manage everyone; other users see themselves and manage
//! their own tokens.

use super::{ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId};
use crate::auth::{Token, User};
use crate::events::netbox_timestamp;
use crate::service::NewToken;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users/users/", get(list_users).post(create_user))
        .route(
            "/api/users/users/{id}/",
            get(user_detail).put(update_user).patch(update_user).delete(delete_user),
        )
        .route("/api/users/tokens/", get(list_tokens).post(create_token))
        .route("/api/users/tokens/provision/", post(provision))
        .route("/api/users/tokens/{id}/", get(token_detail).delete(delete_token))
}

fn brief_user(u: &User, base: &str) -> Value {
    json!({"id": u.id, "url": format!("{base}/api/users/users/{}/", u.id), "display": u.username, "username": u.username})
}

fn user_json(u: &User, base: &str) -> Value {
    let mut v = brief_user(u, base);
    v["is_superuser"] = json!(u.is_superuser);
    v["is_staff"] = json!(u.is_superuser);
    v["is_active"] = json!(true);
    v["date_joined"] = json!(netbox_timestamp(u.created));
    v["groups"] = json!([]);
    v
}

fn token_json(t: &Token, u: &User, base: &str) -> Value {
    json!({
        "id": t.id,
        "url": format!("{base}/api/users/tokens/{}/", t.id),
        "display": if t.description.is_empty() { format!("Token {}", t.id) } else { t.description.clone() },
        "user": brief_user(u, base),
        "created": netbox_timestamp(t.created),
        "expires": null,
        "last_used": null,
        "write_enabled": t.write_enabled,
        "description": t.description,
    })
}

async fn list_users(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let users = st.svc.users(&auth.user, &q.all("username")).await?;
    let page = users
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|u| user_json(u, &q.origin))
        .collect();
    Ok(Json(q.paginated(users.len() as i64, limit, offset, page)))
}

async fn user_detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(user_json(&st.svc.user(&auth.user, id).await?, &base)))
}

async fn create_user(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = st.svc.create_user(&auth.user, &body).await?;
    Ok((StatusCode::CREATED, Json(user_json(&created, &base))))
}

async fn update_user(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = st.svc.update_user(&auth.user, id, &body).await?;
    Ok(Json(user_json(&user, &base)))
}

async fn delete_user(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_user(&auth.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tokens(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let tokens = st.svc.tokens(&auth.user, &q.ints("user_id")?).await?;
    let page = tokens
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|(t, u)| token_json(t, u, &q.origin))
        .collect();
    Ok(Json(q.paginated(tokens.len() as i64, limit, offset, page)))
}

async fn token_detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let (token, user) = st.svc.token(&auth.user, id).await?;
    Ok(Json(token_json(&token, &user, &base)))
}

/// A new token as JSON: the only place its key is ever shown.
fn new_token_json(t: &NewToken, base: &str) -> Value {
    let mut v = token_json(&t.token, &t.user, base);
    v["key"] = json!(t.key);
    v
}

async fn create_token(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = st.svc.create_token(&auth.user, &body).await?;
    Ok((StatusCode::CREATED, Json(new_token_json(&created, &base))))
}

async fn delete_token(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_token(&auth.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"username", "password"}` → a new token for that user; no token needed to call it.
async fn provision(
    State(st): State<AppState>,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = st.svc.provision_token(&body).await?;
    Ok((StatusCode::CREATED, Json(new_token_json(&created, &base))))
}
