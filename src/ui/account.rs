//! Logging in and out, one's API tokens, one's password.

use super::query::Query;
use super::render::{bare, iso, Failure};
use super::session::{
    cookie, csrf_refused, form_body, is_secure, redirect_with, safe_next, set_cookie, CSRF_FIELD, LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
};
use super::viewer::{Posted, Viewer};
use crate::api::AppState;
use crate::auth::sessions::{new_secret, same_secret};
use crate::error::Error;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/", get(login_page).post(login))
        .route("/logout/", get(logout_page).post(logout))
        .route("/user/api-tokens/", get(tokens).post(create_token))
        .route("/user/api-tokens/{id}/delete/", post(revoke_token))
        .route("/user/password/", get(password_page).post(change_password))
}

/// The login form, with a fresh token in a cookie of its own (there is no session yet).
fn login_form(status: StatusCode, next: &str, username: &str, error: Option<&str>, secure: bool) -> Response {
    let token = new_secret();
    let mut resp = bare(
        status,
        "login.html",
        "Log in",
        json!({"next": next, "username": username, "error": error, "csrf": token}),
    );
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_CSRF_COOKIE, &token, 3600, secure));
    resp
}

async fn login_page(State(st): State<AppState>, headers: HeaderMap, q: Query) -> Response {
    let next = safe_next(q.get("next"));
    // Already signed in: straight on.
    if let Some(key) = cookie(&headers, SESSION_COOKIE) {
        if st.svc.session(&key).await.is_ok() {
            return Redirect::to(&next).into_response();
        }
    }
    login_form(StatusCode::OK, &next, "", None, is_secure(&headers))
}

async fn login(State(st): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let secure = is_secure(req.headers());
    let expected = cookie(req.headers(), LOGIN_CSRF_COOKIE).unwrap_or_default();
    let fields = match form_body(req, &st).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let given = fields.text(CSRF_FIELD);
    if expected.is_empty() || !same_secret(&expected, given) {
        return csrf_refused();
    }
    let next = safe_next(fields.get("next"));
    let username = fields.text("username").trim().to_string();
    let password = fields.text("password");
    match st.svc.login(&username, password, Some(peer.ip())).await {
        Ok(new) => {
            let max_age = (new.session.expires - new.session.created).num_seconds();
            let mut resp = Redirect::to(&next).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &new.key, max_age, secure),
            );
            h.append(header::SET_COOKIE, set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure));
            resp
        }
        // The same words whether the user exists or not.
        Err(Error::BadCredentials | Error::Validation(_)) => login_form(
            StatusCode::OK,
            &next,
            &username,
            Some("Invalid username or password. Check both and try again."),
            secure,
        ),
        Err(Error::Throttled(s)) => login_form(
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            &username,
            Some(&format!("Too many attempts. Wait {s} s, then try again.")),
            secure,
        ),
        Err(e) => Failure(e).into_response(),
    }
}

async fn logout_page(State(st): State<AppState>, v: Viewer) -> Response {
    v.page(&st, "logout.html", "Log out", json!({}))
}

async fn logout(State(st): State<AppState>, headers: HeaderMap, posted: Posted) -> Result<Response, Failure> {
    if let Some(key) = cookie(&headers, SESSION_COOKIE) {
        st.svc.logout(&key).await?;
    }
    let secure = posted.viewer.secure;
    let mut resp = redirect_with("/login/", "You are logged out.", secure);
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, secure));
    Ok(resp)
}

/// The viewer's tokens; after a create, the new key once.
async fn token_page(st: &AppState, v: &Viewer, created: Option<Value>, errors: Value) -> Result<Response, Failure> {
    let tokens = st.svc.tokens(&v.actor, &[v.actor.user.id]).await?;
    let rows: Vec<Value> = tokens
        .iter()
        .map(|(t, _)| {
            json!({
                "id": t.id,
                "description": t.description,
                "write_enabled": t.write_enabled,
                "created": iso(t.created),
            })
        })
        .collect();
    let status = if errors.is_null() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(v.page_with(
        st,
        status,
        "tokens.html",
        "API tokens",
        json!({"section": "tokens", "tokens": rows, "created": created, "errors": errors}),
    ))
}

async fn tokens(State(st): State<AppState>, v: Viewer) -> Result<Response, Failure> {
    token_page(&st, &v, None, Value::Null).await
}

async fn create_token(State(st): State<AppState>, Posted { viewer: v, fields }: Posted) -> Result<Response, Failure> {
    let body = json!({
        "description": fields.text("description"),
        "write_enabled": fields.checked("write_enabled"),
    });
    match st.svc.create_token(&v.actor, &body).await {
        Ok(new) => {
            let created = json!({"key": new.key, "description": new.token.description});
            token_page(&st, &v, Some(created), Value::Null).await
        }
        Err(Error::Validation(errors)) => token_page(&st, &v, None, errors).await,
        Err(e) => Err(e.into()),
    }
}

async fn revoke_token(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Posted { viewer: v, .. }: Posted,
) -> Result<Response, Failure> {
    let id: i64 = id.parse().map_err(|_| Error::NotFound)?;
    st.svc.delete_token(&v.actor, id).await?;
    Ok(redirect_with("/user/api-tokens/", "Token revoked.", v.secure))
}

async fn password_page(State(st): State<AppState>, v: Viewer) -> Response {
    v.page(
        &st,
        "password.html",
        "Change password",
        json!({"section": "password", "errors": {}}),
    )
}

async fn change_password(
    State(st): State<AppState>,
    Posted { viewer: v, fields }: Posted,
) -> Result<Response, Failure> {
    let (current, new) = (fields.text("password"), fields.text("new_password"));
    let errors = if new != fields.text("confirm_password") {
        Some(json!({"confirm_password": ["The two new passwords differ."]}))
    } else {
        match st
            .svc
            .change_password(&v.actor.user, current, new, Some(&v.session.key_hash))
            .await
        {
            Ok(()) => None,
            Err(Error::Validation(e)) => Some(e),
            Err(e) => return Err(e.into()),
        }
    };
    match errors {
        None => Ok(redirect_with(
            "/",
            "Password changed. Your other sessions are logged out.",
            v.secure,
        )),
        Some(errors) => Ok(v.page_with(
            &st,
            StatusCode::BAD_REQUEST,
            "password.html",
            "Change password",
            json!({"section": "password", "errors": errors}),
        )),
    }
}
