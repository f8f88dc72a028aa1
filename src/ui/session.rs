//! Who is looking at a page: the session a cookie names, and forms that carry the session's
//! CSRF token. A visit without a live session is sent to log in and brought back after.

use super::render::{failure_page, Failure};
use crate::api::AppState;
use crate::error::Error;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The cookie holding the session key.
pub const SESSION_COOKIE: &str = "herald_session";
/// The cookie holding the login form's token (there is no session yet to hold it).
pub const LOGIN_CSRF_COOKIE: &str = "herald_login_csrf";
/// A one-time message for the next page ("Webhook deleted.").
pub const FLASH_COOKIE: &str = "herald_flash";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// The value of cookie `name`, if the request has it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the request came over TLS (as a proxy in front of Herald says).
pub fn is_secure(headers: &HeaderMap) -> bool {
    headers
        .get("X-Forwarded-Proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure over TLS; `max_age` 0 removes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("herald_invalid=; Max-Age=0"))
}

/// A redirect to `to` leaving a message for the next page.
pub fn redirect_with(to: &str, message: &str, secure: bool) -> Response {
    let encoded: String = form_urlencoded::byte_serialize(message.as_bytes()).collect();
    let mut resp = Redirect::to(to).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(FLASH_COOKIE, &encoded, 60, secure));
    resp
}

/// A local path to go back to after logging in: only paths on this site, read as a browser
/// reads them (it drops tabs and line breaks, and takes a backslash for a slash, so
/// `/<TAB>/evil.example` and `/\\evil.example` are `//evil.example`: another site). Anything
/// else goes to `/`.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(n) = next else { return "/".into() };
    let read: String = n
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    let local = read.starts_with('/') && !read.starts_with("//") && !read.chars().any(char::is_control);
    if local && !read.starts_with("/login") {
        read
    } else {
        "/".into()
    }
}

/// The fields of a posted form (`application/x-www-form-urlencoded`), in order.
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or "".
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether a checkbox named `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The body of a form post, bounded by the API's body limit.
pub async fn form_body(req: Request, st: &AppState) -> Result<Fields, Response> {
    let urlencoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return Err(Failure(Error::BadRequest(
            "Forms are posted as application/x-www-form-urlencoded.".into(),
        ))
        .into_response());
    }
    match axum::body::Bytes::from_request(req, st).await {
        Ok(bytes) => Ok(Fields::parse(&bytes)),
        Err(_) => Err(Failure(Error::TooLarge("The form is larger than Herald accepts.".into())).into_response()),
    }
}

/// 403 for a form without the right token: it did not come from one of Herald's pages, or the
/// session it came from has ended.
pub fn csrf_refused() -> Response {
    failure_page(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form did not carry the security token of your session, so nothing was done. \
         Go back, reload the page and send it again.",
    )
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_local_path_as_browsers_read_it() {
        for (given, to) in [
            (Some("/extras/webhooks/?q=a"), "/extras/webhooks/?q=a"),
            (Some("/\t/evil.example"), "/"),
            (Some("/\r\n/evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("\\\\evil.example"), "/"),
            (Some("//evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("\t/x"), "/x"),
            (Some("/lo\tgin/"), "/"),
            (Some("/a\u{0}b"), "/"),
            (Some(""), "/"),
            (None, "/"),
        ] {
            assert_eq!(safe_next(given), to, "{given:?}");
        }
    }
}
