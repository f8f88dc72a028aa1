//! `/api/users/users/` and `/api/users/tokens/` (with `provision/`, what pynetbox's
//! `create_token` calls). Users see themselves and manage their own tokens; the rest takes
//! permissions (see `service::users`).

use super::views::brief_user;
use super::{ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId};
use crate::auth::{Token, User};
use crate::events::rest_time;
use crate::service::NewToken;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/users/users/",
            get(list_users).post(create_user).options(users_options),
        )
        .route(
            "/api/users/users/{id}/",
            get(user_detail)
                .put(update_user)
                .patch(update_user)
                .delete(delete_user)
                .options(user_options),
        )
        .route("/api/users/tokens/", get(list_tokens).post(create_token))
        .route("/api/users/tokens/provision/", post(provision))
        .route("/api/users/tokens/{id}/", get(token_detail).delete(delete_token))
}

fn user_json(u: &User, groups: &[Value], base: &str) -> Value {
    let mut v = brief_user(u, base);
    v["is_superuser"] = json!(u.is_superuser);
    v["is_staff"] = json!(u.is_superuser);
    v["is_active"] = json!(true);
    v["date_joined"] = json!(rest_time(u.created));
    v["groups"] = Value::Array(groups.to_vec());
    v
}

/// The users as JSON, each with its groups (two reads for all of them).
async fn users_json(st: &AppState, users: &[User], base: &str) -> Result<Vec<Value>, ApiError> {
    let memberships = st.svc.user_groups(users).await?;
    Ok(users
        .iter()
        .map(|u| {
            let mine: Vec<Value> = memberships
                .iter()
                .filter(|(user, _)| *user == u.id)
                .map(|(_, g)| super::views::brief_group(g, base))
                .collect();
            user_json(u, &mine, base)
        })
        .collect())
}

async fn one_user_json(st: &AppState, u: &User, base: &str) -> Result<Value, ApiError> {
    Ok(users_json(st, std::slice::from_ref(u), base).await?.remove(0))
}

fn token_json(t: &Token, u: &User, base: &str) -> Value {
    json!({
        "id": t.id,
        "url": format!("{base}/api/users/tokens/{}/", t.id),
        "display": if t.description.is_empty() { format!("Token {}", t.id) } else { t.description.clone() },
        "user": brief_user(u, base),
        "created": rest_time(t.created),
        "expires": null,
        "last_used": null,
        "write_enabled": t.write_enabled,
        "description": t.description,
    })
}

async fn list_users(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    q.only(&["username"], "users")?;
    let (limit, offset) = q.page()?;
    let users = st.svc.users(&auth.actor, &q.all("username")).await?;
    let page = users_json(&st, ListQuery::window(&users, limit, offset), &q.origin).await?;
    Ok(Json(q.paginated(users.len() as i64, limit, offset, page)))
}

async fn user_detail(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let user = st.svc.user(&auth.actor, id).await?;
    Ok(Json(one_user_json(&st, &user, &base).await?))
}

async fn create_user(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = st.svc.create_user(&auth.actor, &body).await?;
    Ok((StatusCode::CREATED, Json(one_user_json(&st, &created, &base).await?)))
}

async fn update_user(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let user = st.svc.update_user(&auth.actor, id, &body).await?;
    Ok(Json(one_user_json(&st, &user, &base).await?))
}

async fn delete_user(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_user(&auth.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tokens(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    q.only(&["user_id"], "tokens")?;
    let (limit, offset) = q.page()?;
    let tokens = st.svc.tokens(&auth.actor, &q.ints("user_id")?).await?;
    let page = ListQuery::window(&tokens, limit, offset)
        .iter()
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
    let (token, user) = st.svc.token(&auth.actor, id).await?;
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
    let created = st.svc.create_token(&auth.actor, &body).await?;
    Ok((StatusCode::CREATED, Json(new_token_json(&created, &base))))
}

async fn delete_token(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    st.svc.delete_token(&auth.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"username", "password"}` → a new token for that user; no token needed to call it.
async fn provision(
    State(st): State<AppState>,
    Base(base): Base,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = st.svc.provision_token(&body, Some(peer.ip())).await?;
    Ok((StatusCode::CREATED, Json(new_token_json(&created, &base))))
}

/// A user's fields as Django REST framework's metadata describes them.
fn user_fields() -> Map<String, Value> {
    let mut m = Map::new();
    for (name, kind, required, label) in [
        ("username", "string", true, "Username"),
        ("password", "string", true, "Password"),
        ("is_superuser", "boolean", false, "Superuser status"),
        ("groups", "field", false, "Groups"),
    ] {
        m.insert(name.into(), super::field_meta(kind, required, label));
    }
    m["username"]["max_length"] = json!(150);
    m["password"]["write_only"] = json!(true);
    m
}

async fn users_options(_auth: Auth) -> Json<Value> {
    Json(super::metadata("User List", "POST", user_fields()))
}

async fn user_options(_auth: Auth, PathId(_): PathId) -> Json<Value> {
    Json(super::metadata("User Instance", "PUT", user_fields()))
}
