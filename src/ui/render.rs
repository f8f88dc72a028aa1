//! Drawing pages: the templates embedded in the binary, the shell every page stands in (the
//! navigation, the user menu, the one-time message), and error pages that show what went
//! wrong in words, never a raw error.

use crate::catalog::{label, Catalog};
use crate::error::Error;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use minijinja::Environment;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// Every template, by name; `.html` ones are autoescaped.
const TEMPLATES: [(&str, &str); 23] = [
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("error.html", include_str!("templates/error.html")),
    ("login.html", include_str!("templates/login.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("webhooks.html", include_str!("templates/webhooks.html")),
    ("webhook.html", include_str!("templates/webhook.html")),
    ("webhook_form.html", include_str!("templates/webhook_form.html")),
    ("event_rules.html", include_str!("templates/event_rules.html")),
    ("event_rule.html", include_str!("templates/event_rule.html")),
    ("event_rule_form.html", include_str!("templates/event_rule_form.html")),
    ("request.html", include_str!("templates/request.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("queue_counts.html", include_str!("templates/queue_counts.html")),
    ("delivery.html", include_str!("templates/delivery.html")),
    ("objects.html", include_str!("templates/objects.html")),
    ("object.html", include_str!("templates/object.html")),
    ("changelog.html", include_str!("templates/changelog.html")),
    ("change.html", include_str!("templates/change.html")),
    ("tokens.html", include_str!("templates/tokens.html")),
    ("password.html", include_str!("templates/password.html")),
];

/// The stylesheet and the script, served at `/static/`.
pub const STYLESHEET: &str = include_str!("static/herald.css");
pub const SCRIPT: &str = include_str!("static/herald.js");

fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    env.add_filter("ago", |t: String| parse(&t).map(|t| ago(t, Utc::now())).unwrap_or(t));
    env.add_filter("when", |t: String| parse(&t).map(when).unwrap_or(t));
    env.add_filter("pretty", pretty);
    Ok(env)
}

/// The templates, parsed once.
fn env() -> Result<&'static Environment<'static>, String> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| environment().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// A time as the pages show it in full: `2026-11-30 14:03:09 UTC`.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How long ago (or how soon) `t` is: "just now", "4 min ago", "in 2 h".
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let n = secs.unsigned_abs();
    let span = match n {
        0..=4 => return "just now".into(),
        5..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if secs >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// Text that holds JSON, indented by two spaces; other text as it is.
fn pretty(text: String) -> String {
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => serde_json::to_string_pretty(&v).unwrap_or(text),
        _ => text,
    }
}

/// A count as the pages show it: `1,234`, or `10,000+` where counting stopped.
pub fn count_text(n: i64, at_most: i64) -> String {
    if n >= at_most {
        format!("{}+", super::query::thousands(at_most))
    } else {
        super::query::thousands(n)
    }
}

/// An ISO 8601 time (UTC) for templates, which show it with `ago` and `when`.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The inventory's menu: one group per app, each type's list.
pub(super) fn inventory_nav(catalog: &Catalog) -> Value {
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for t in catalog.types() {
        let heading = match t.app_label.as_str() {
            "dcim" => "DCIM".to_string(),
            "ipam" => "IPAM".to_string(),
            "extras" => "Customization".to_string(),
            other => label(other),
        };
        let item = json!({"label": label(&t.plural()), "url": format!("/{}/", t.api_path)});
        match groups.iter_mut().find(|(h, _)| *h == heading) {
            Some((_, items)) => items.push(item),
            None => groups.push((heading, vec![item])),
        }
    }
    Value::Array(
        groups
            .into_iter()
            .map(|(heading, items)| json!({"heading": heading, "items": items}))
            .collect(),
    )
}

/// Renders `template` with `ctx`; a failure is logged and answered with a page saying so.
pub(super) fn draw(status: StatusCode, template: &str, ctx: &Value) -> Response {
    let rendered = env().and_then(|env| {
        env.get_template(template)
            .and_then(|t| t.render(ctx))
            .map_err(|e| format!("{e:#}"))
    });
    match rendered {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(template, error = %e, "a page could not be drawn");
            failure_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Page not drawn",
                "Herald could not draw this page. The reason is in its log.",
            )
        }
    }
}

/// An HTML answer with the headers every page carries.
fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("X-Frame-Options", HeaderValue::from_static("DENY"));
    h.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    h.insert("Referrer-Policy", HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

/// A page outside a session (login, errors): the shell without the user's parts.
pub fn bare(status: StatusCode, template: &str, title: &str, mut ctx: Value) -> Response {
    ctx["title"] = json!(title);
    draw(status, template, &ctx)
}

/// An error page: a heading and what happened, in words, with a way back.
pub fn failure_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let ctx = json!({"title": heading, "heading": heading, "message": message, "status": status.as_u16()});
    match env().and_then(|env| {
        env.get_template("error.html")
            .and_then(|t| t.render(&ctx))
            .map_err(|e| e.to_string())
    }) {
        Ok(body) => html(status, body),
        // The error page itself failed: plain words.
        Err(_) => html(
            status,
            format!("<!doctype html><title>{heading} | Herald</title><p>{message}</p>"),
        ),
    }
}

/// A service error as a page: what it means for the user, never its raw text.
pub struct Failure(pub Error);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure(e)
    }
}

impl From<crate::error::StoreError> for Failure {
    fn from(e: crate::error::StoreError) -> Failure {
        Failure(e.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, heading, message) = match &self.0 {
            Error::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here: it may have been deleted, or the link is wrong.".to_string(),
            ),
            Error::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your account does not have the permission this page needs. An administrator can grant it.".to_string(),
            ),
            Error::Unauthenticated | Error::InvalidToken | Error::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                "Log in first",
                "Your session has ended. Log in again to continue.".to_string(),
            ),
            Error::Conflict(m) | Error::BadRequest(m) | Error::TooLarge(m) => {
                (StatusCode::BAD_REQUEST, "Not done", m.clone())
            }
            Error::Validation(v) => (StatusCode::BAD_REQUEST, "Not done", crate::error::describe_fields(v)),
            Error::Throttled(s) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Try again in {s} s."),
            ),
            Error::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "The database is busy or unreachable; nothing was done. Try again in a moment.".to_string(),
            ),
            Error::DatabaseLost(m) => (StatusCode::SERVICE_UNAVAILABLE, "Database gone", m.clone()),
            other => {
                tracing::error!(error = ?other, "a page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Herald could not finish this request. The reason is in its log.".to_string(),
                )
            }
        };
        failure_page(status, heading, &message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        assert!(env().is_ok(), "{:?}", env().err());
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(ago(at(2), now), "just now");
        assert_eq!(ago(at(42), now), "42 s ago");
        assert_eq!(ago(at(300), now), "5 min ago");
        assert_eq!(ago(at(7200), now), "2 h ago");
        assert_eq!(ago(at(-600), now), "in 10 min");
        assert_eq!(when(now), "2026-11-30 12:00:00 UTC");
        assert_eq!(label("mac_address"), "Mac address");
    }
}
