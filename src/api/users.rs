//! `/api/users/users/` and `/api/users/tokens/` (with `provision/`, what pynetbox's
//! `create_token` calls). Superusers manage everyone; other users see themselves and manage
//! their own tokens.

use super::{ApiError, AppState, Auth, Base, JsonBody, ListQuery, PathId};
use crate::auth;
use crate::events::netbox_timestamp;
use crate::store::{StoreError, Token, User};
use crate::validate::{FieldErrors, Reader};
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

fn require_superuser(auth: &Auth) -> Result<(), ApiError> {
    if auth.user.is_superuser {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// A user the caller may see: anyone for a superuser, else only themselves.
fn visible(auth: &Auth, id: i64) -> Result<(), ApiError> {
    if auth.user.is_superuser || auth.user.id == id {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

async fn list_users(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let names = q.all("username");
    let users: Vec<User> = st
        .store
        .users()
        .await?
        .into_iter()
        .filter(|u| auth.user.is_superuser || u.id == auth.user.id)
        .filter(|u| names.is_empty() || names.contains(&u.username))
        .collect();
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
    visible(&auth, id)?;
    Ok(Json(user_json(&st.store.user(id).await?, &base)))
}

/// Reads `username`, `password` and `is_superuser` over `user`.
fn apply_user(mut user: User, body: &Value, creating: bool) -> Result<User, ApiError> {
    let mut r = Reader::new(body)?;
    if let Some(name) = r.string("username") {
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 150 {
            r.errors.add("username", "Enter a username of 1 to 150 characters.");
        }
        user.username = name;
    } else if creating && !r.has("username") {
        r.errors.add("username", "This field is required.");
    }
    if let Some(password) = r.string("password") {
        if password.is_empty() {
            r.errors.add("password", "This field may not be blank.");
        } else {
            user.password_hash = auth::hash_password(&password)?;
        }
    } else if creating && !r.has("password") {
        r.errors.add("password", "This field is required.");
    }
    if let Some(flag) = r.bool("is_superuser") {
        user.is_superuser = flag;
    }
    let errors: FieldErrors = std::mem::take(&mut r.errors);
    Ok(errors.finish(user)?)
}

async fn create_user(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_superuser(&auth)?;
    let blank = User {
        id: 0,
        username: String::new(),
        password_hash: String::new(),
        is_superuser: false,
        created: chrono::Utc::now(),
    };
    let user = apply_user(blank, &body, true)?;
    let created = st
        .store
        .create_user(&user.username, &user.password_hash, user.is_superuser)
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&created, &base))))
}

async fn update_user(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    require_superuser(&auth)?;
    let current = st.store.user(id).await?;
    let user = apply_user(current, &body, false)?;
    st.store.update_user(&user).await?;
    Ok(Json(user_json(&st.store.user(user.id).await?, &base)))
}

async fn delete_user(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    require_superuser(&auth)?;
    if id == auth.user.id {
        return Err(ApiError::Conflict(
            "You cannot delete the user you are signed in as.".into(),
        ));
    }
    st.store.delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tokens(State(st): State<AppState>, auth: Auth, q: ListQuery) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let scope = (!auth.user.is_superuser).then_some(auth.user.id);
    let user_ids = q.ints("user_id")?;
    let tokens: Vec<(Token, User)> = st
        .store
        .tokens(scope)
        .await?
        .into_iter()
        .filter(|(t, _)| user_ids.is_empty() || user_ids.contains(&t.user_id))
        .collect();
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
    let (token, user) = st.store.token(id).await?;
    visible(&auth, user.id)?;
    Ok(Json(token_json(&token, &user, &base)))
}

/// Creates a token for `user` from `write_enabled`, `description` and an optional `key`; the
/// response is the only place the key is ever shown.
async fn new_token(st: &AppState, user: &User, body: &Value, base: &str) -> Result<Value, ApiError> {
    let mut r = Reader::new(body)?;
    let write_enabled = r.bool("write_enabled").unwrap_or(true);
    let description = r.string("description").unwrap_or_default();
    let key = r.string("key");
    if let Some(k) = &key {
        if k.len() < 40 || k.len() > 256 || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
            r.errors.add("key", "A key has 40 to 256 letters and digits.");
        }
    }
    if description.len() > 200 {
        r.errors
            .add("description", "Ensure this field has no more than 200 characters.");
    }
    let errors = std::mem::take(&mut r.errors);
    errors.finish(())?;
    let key = key.unwrap_or_else(auth::new_key);
    let token = match st
        .store
        .create_token(user.id, &auth::hash_key(&key), write_enabled, &description)
        .await
    {
        Ok(t) => t,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Validation(
                json!({"key": ["A token with this key already exists."]}),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let mut v = token_json(&token, user, base);
    v["key"] = json!(key);
    Ok(v)
}

async fn create_token(
    State(st): State<AppState>,
    auth: Auth,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let owner = match body.get("user") {
        None | Some(Value::Null) => auth.user.clone(),
        Some(v) => {
            let id = v.as_i64().or_else(|| v.get("id").and_then(Value::as_i64));
            let id = id.ok_or_else(|| ApiError::Validation(json!({"user": ["Expected a user id."]})))?;
            if id != auth.user.id {
                require_superuser(&auth)?;
            }
            match st.store.user(id).await {
                Ok(u) => u,
                Err(StoreError::NotFound) => {
                    return Err(ApiError::Validation(
                        json!({"user": [format!("No user with id {id}.")]}),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok((StatusCode::CREATED, Json(new_token(&st, &owner, &body, &base).await?)))
}

async fn delete_token(State(st): State<AppState>, auth: Auth, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    let (_, owner) = st.store.token(id).await?;
    visible(&auth, owner.id)?;
    st.store.delete_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"username", "password"}` → a new token for that user; no token needed to call it.
async fn provision(
    State(st): State<AppState>,
    Base(base): Base,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut r = Reader::new(&body)?;
    let username = r.string("username");
    let password = r.string("password");
    for field in ["username", "password"] {
        if !r.has(field) {
            r.errors.add(field, "This field is required.");
        }
    }
    let errors = std::mem::take(&mut r.errors);
    errors.finish(())?;
    let (username, password) = (username.unwrap_or_default(), password.unwrap_or_default());
    let user = match st.store.user_by_name(&username).await {
        Ok(u) if auth::verify_password(&password, &u.password_hash) => u,
        Ok(_) | Err(StoreError::NotFound) => return Err(ApiError::BadCredentials),
        Err(e) => return Err(e.into()),
    };
    Ok((StatusCode::CREATED, Json(new_token(&st, &user, &body, &base).await?)))
}
