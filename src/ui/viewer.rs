//! Who is looking at a page: the signed-in user a session cookie names (a visit without a live
//! session is sent to log in and brought back after), and the page shell drawn for them.

use super::render::{draw, inventory_nav, Failure};
use super::session::{
    cookie, csrf_refused, form_body, is_secure, set_cookie, Fields, CSRF_FIELD, FLASH_COOKIE, SESSION_COOKIE,
};
use crate::api::AppState;
use crate::auth::{Actor, Session};
use crate::error::Error;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{json, Value};

/// A signed-in user looking at a page.
pub struct Viewer {
    pub actor: Actor,
    pub session: Session,
    /// A message left by the previous page, shown once.
    pub flash: Option<String>,
    /// Whether the page came over TLS (its cookies are then `Secure`).
    pub secure: bool,
}

/// To the login page, coming back to this page afterwards.
fn to_login(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    let mut resp = Redirect::to(&format!("/login/?next={next}")).into_response();
    if cookie(&parts.headers, SESSION_COOKIE).is_some() {
        let secure = is_secure(&parts.headers);
        resp.headers_mut()
            .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, secure));
    }
    resp
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Viewer, Response> {
        let Some(key) = cookie(&parts.headers, SESSION_COOKIE).filter(|k| !k.is_empty()) else {
            return Err(to_login(parts));
        };
        match st.svc.session(&key).await {
            Ok((actor, session)) => Ok(Viewer {
                actor,
                session,
                flash: cookie(&parts.headers, FLASH_COOKIE).map(|m| {
                    form_urlencoded::parse(format!("m={m}").as_bytes())
                        .map(|(_, v)| v.into_owned())
                        .next()
                        .unwrap_or_default()
                }),
                secure: is_secure(&parts.headers),
            }),
            Err(Error::Unauthenticated) => Err(to_login(parts)),
            Err(e) => Err(Failure(e).into_response()),
        }
    }
}

impl Viewer {
    /// A page in the shell for this viewer, with `ctx` for its template.
    pub fn page(&self, st: &AppState, template: &str, title: &str, ctx: Value) -> Response {
        self.page_with(st, StatusCode::OK, template, title, ctx)
    }

    /// The page that asks before deleting: `question`, what goes with it (`detail`), and
    /// where Cancel leads. The form posts back to the same path.
    pub fn confirm_delete(
        &self,
        st: &AppState,
        section: &str,
        question: String,
        detail: &str,
        cancel: String,
    ) -> Response {
        let title = question.trim_end_matches('?').to_string();
        let ctx = json!({
            "section": section,
            "question": question,
            "detail": detail,
            "verb": "Delete",
            "danger": true,
            "cancel": cancel,
            "hidden": [],
        });
        self.page(st, "confirm.html", &title, ctx)
    }

    pub fn page_with(
        &self,
        st: &AppState,
        status: StatusCode,
        template: &str,
        title: &str,
        mut ctx: Value,
    ) -> Response {
        ctx["title"] = json!(title);
        ctx["user"] = json!({
            "username": self.actor.user.username,
            "superuser": self.actor.user.is_superuser,
        });
        ctx["csrf"] = json!(self.session.csrf);
        ctx["flash"] = json!(self.flash);
        ctx["nav"] = inventory_nav(&st.svc.catalog);
        let mut resp = draw(status, template, &ctx);
        if self.flash.is_some() {
            resp.headers_mut()
                .append(header::SET_COOKIE, set_cookie(FLASH_COOKIE, "", 0, self.secure));
        }
        resp
    }
}

/// A form posted by a signed-in user, with the session's CSRF token.
pub struct Posted {
    pub viewer: Viewer,
    pub fields: Fields,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Posted, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, st).await?;
        let fields = form_body(Request::from_parts(parts, body), st).await?;
        if !viewer.session.csrf_matches(fields.text(CSRF_FIELD)) {
            return Err(csrf_refused());
        }
        Ok(Posted { viewer, fields })
    }
}
