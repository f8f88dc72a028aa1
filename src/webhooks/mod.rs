//! Webhooks: their fields and rules (NetBox's), their REST view, and which events they match.

pub mod conditions;
pub mod request;
pub mod template;

use crate::catalog::Catalog;
use crate::events::{Event, EventKind};
use crate::validate::{FieldErrors, Reader};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The HTTP methods a webhook may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub const ALL: [HttpMethod; 5] = [
        HttpMethod::Get,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// `GET`, `POST`, ... (upper case, as NetBox stores them).
    pub fn parse(s: &str) -> Option<HttpMethod> {
        HttpMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl serde::Serialize for HttpMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<HttpMethod> for reqwest::Method {
    fn from(m: HttpMethod) -> reqwest::Method {
        match m {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        }
    }
}

/// A webhook as stored.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    pub id: i64,
    pub name: String,
    pub content_types: Vec<String>,
    pub type_create: bool,
    pub type_update: bool,
    pub type_delete: bool,
    pub enabled: bool,
    pub payload_url: String,
    pub http_method: HttpMethod,
    pub http_content_type: String,
    pub additional_headers: String,
    pub body_template: String,
    pub secret: String,
    pub ssl_verification: bool,
    pub ca_file_path: Option<String>,
    /// Seconds to wait for the receiver.
    pub timeout: u32,
    /// Seconds before each retry; `None` uses the configured schedule, `[]` sends once.
    pub retry_schedule: Option<Vec<f64>>,
    /// A NetBox condition set on the event's data; `None` matches every event.
    pub conditions: Option<Value>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("payload_url", &self.payload_url)
            .field("secret", &if self.secret.is_empty() { "" } else { "<redacted>" })
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook with NetBox's defaults, not yet valid (no name, URL or types).
    pub fn blank() -> Webhook {
        let now = Utc::now();
        Webhook {
            id: 0,
            name: String::new(),
            content_types: Vec::new(),
            type_create: false,
            type_update: false,
            type_delete: false,
            enabled: true,
            payload_url: String::new(),
            http_method: HttpMethod::Post,
            http_content_type: "application/json".into(),
            additional_headers: String::new(),
            body_template: String::new(),
            secret: String::new(),
            ssl_verification: true,
            ca_file_path: None,
            timeout: 15,
            retry_schedule: None,
            conditions: None,
            created: now,
            last_updated: now,
        }
    }

    /// Whether this webhook's type and event flags select `event` (conditions aside).
    pub fn matches(&self, event: &Event) -> bool {
        self.enabled
            && match event.kind {
                EventKind::Created => self.type_create,
                EventKind::Updated => self.type_update,
                EventKind::Deleted => self.type_delete,
            }
            && self.content_types.contains(&event.object_type)
    }

    /// The REST representation, `url` under `base` (`http://host`); the secret is never shown.
    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "id": self.id,
            "url": format!("{base}/api/extras/webhooks/{}/", self.id),
            "display": self.name,
            "content_types": self.content_types,
            "name": self.name,
            "type_create": self.type_create,
            "type_update": self.type_update,
            "type_delete": self.type_delete,
            "payload_url": self.payload_url,
            "enabled": self.enabled,
            "http_method": self.http_method.as_str(),
            "http_content_type": self.http_content_type,
            "additional_headers": self.additional_headers,
            "body_template": self.body_template,
            "ssl_verification": self.ssl_verification,
            "ca_file_path": self.ca_file_path,
            "timeout": self.timeout,
            "retry_schedule": self.retry_schedule,
            "conditions": self.conditions,
            "has_secret": !self.secret.is_empty(),
            "created": crate::events::netbox_timestamp(self.created),
            "last_updated": crate::events::netbox_timestamp(self.last_updated),
        })
    }

    /// Applies the fields present in `body` over `self` (all of them for create and PUT, the
    /// given ones for PATCH), then checks every rule. Errors name their fields.
    pub fn apply(mut self, body: &Value, catalog: &Catalog, partial: bool) -> Result<Webhook, FieldErrors> {
        let mut r = Reader::new(body)?;
        if let Some(v) = r.string("name") {
            self.name = v.trim().to_string();
        }
        if let Some(v) = r.string_list("content_types") {
            self.content_types = v;
        }
        for (field, slot) in [
            ("type_create", &mut self.type_create),
            ("type_update", &mut self.type_update),
            ("type_delete", &mut self.type_delete),
            ("enabled", &mut self.enabled),
            ("ssl_verification", &mut self.ssl_verification),
        ] {
            if let Some(v) = r.bool(field) {
                *slot = v;
            }
        }
        if let Some(v) = r.string("payload_url") {
            self.payload_url = v.trim().to_string();
        }
        if let Some(v) = r.string("http_method") {
            match HttpMethod::parse(&v) {
                Some(m) => self.http_method = m,
                None => r.errors.add(
                    "http_method",
                    format!(
                        "\"{v}\" is not a valid choice: use one of {}.",
                        HttpMethod::ALL.map(HttpMethod::as_str).join(", ")
                    ),
                ),
            }
        }
        if let Some(v) = r.string("http_content_type") {
            self.http_content_type = v.trim().to_string();
        }
        if let Some(v) = r.nullable_string("additional_headers") {
            self.additional_headers = v.unwrap_or_default();
        }
        if let Some(v) = r.nullable_string("body_template") {
            self.body_template = v.unwrap_or_default();
        }
        if let Some(v) = r.nullable_string("secret") {
            self.secret = v.unwrap_or_default();
        }
        if let Some(v) = r.nullable_string("ca_file_path") {
            self.ca_file_path = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        }
        if let Some(v) = r.int("timeout", 1, 3600) {
            self.timeout = v as u32;
        }
        match r.raw("retry_schedule") {
            None => {}
            Some(Value::Null) => self.retry_schedule = None,
            Some(Value::Array(items)) => {
                let secs: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
                if secs.len() != items.len() || secs.iter().any(|s| !s.is_finite() || *s < 0.0 || *s > 604_800.0) {
                    r.errors.add(
                        "retry_schedule",
                        "Expected a list of delays in seconds, each from 0 to 604800.",
                    );
                } else if secs.len() > 50 {
                    r.errors.add("retry_schedule", "At most 50 retries.");
                } else {
                    self.retry_schedule = Some(secs);
                }
            }
            Some(_) => r
                .errors
                .add("retry_schedule", "Expected a list of delays in seconds, or null."),
        }
        match r.raw("conditions") {
            None => {}
            Some(Value::Null) => self.conditions = None,
            Some(c) => match conditions::Conditions::parse(c) {
                Ok(_) => self.conditions = Some(c.clone()),
                Err(e) => r.errors.add("conditions", format!("Invalid condition set: {e}.")),
            },
        }
        let mut errors = std::mem::take(&mut r.errors);
        if !partial {
            for field in ["name", "content_types", "payload_url"] {
                if !r.has(field) && !errors.0.contains_key(field) {
                    errors.add(field, "This field is required.");
                }
            }
        }
        self.check(catalog, &mut errors);
        errors.finish(self)
    }

    /// The rules that span fields, and those that need the catalog or the file system.
    fn check(&self, catalog: &Catalog, errors: &mut FieldErrors) {
        let has = |e: &FieldErrors, f: &str| e.0.contains_key(f);
        if !has(errors, "name") {
            if self.name.is_empty() {
                errors.add("name", "This field may not be blank.");
            } else if self.name.chars().count() > 150 {
                errors.add("name", "Ensure this field has no more than 150 characters.");
            }
        }
        if !has(errors, "content_types") {
            if self.content_types.is_empty() {
                errors.add("content_types", "This list may not be empty.");
            }
            for t in &self.content_types {
                if catalog.get(t).is_none() {
                    errors.add("content_types", format!("Unknown object type \"{t}\"."));
                }
            }
        }
        if !(self.type_create || self.type_update || self.type_delete) {
            errors.add(
                "type_create",
                "You must select at least one type: create, update, and/or delete.",
            );
        }
        if !has(errors, "payload_url") {
            if let Err(msg) = check_payload_url(&self.payload_url) {
                errors.add("payload_url", msg);
            }
        }
        if !has(errors, "http_content_type") {
            if self.http_content_type.is_empty() {
                errors.add("http_content_type", "This field may not be blank.");
            } else if self.http_content_type.chars().any(char::is_control) || self.http_content_type.len() > 100 {
                errors.add(
                    "http_content_type",
                    "Must be a MIME type of at most 100 characters, on one line.",
                );
            }
        }
        for (field, source) in [
            ("additional_headers", &self.additional_headers),
            ("body_template", &self.body_template),
        ] {
            if let Err(msg) = template::check(source) {
                errors.add(field, format!("Invalid template: {msg}"));
            }
        }
        if self.secret.chars().count() > 255 {
            errors.add("secret", "Ensure this field has no more than 255 characters.");
        }
        if let Some(path) = &self.ca_file_path {
            if !self.ssl_verification {
                errors.add(
                    "ca_file_path",
                    "Do not specify a CA certificate file if SSL verification is disabled.",
                );
            } else if let Err(msg) = read_ca_file(path) {
                errors.add("ca_file_path", msg);
            }
        }
    }
}

/// Webhooks with their conditions parsed once, to match many events.
pub struct Matcher {
    webhooks: Vec<(Webhook, Option<conditions::Conditions>)>,
}

impl Matcher {
    pub fn new(webhooks: Vec<Webhook>) -> Matcher {
        let webhooks = webhooks
            .into_iter()
            .map(|w| {
                let parsed = match w.conditions.as_ref().map(conditions::Conditions::parse) {
                    Some(Err(e)) => {
                        tracing::error!(webhook_id = w.id, error = %e, "stored conditions are invalid; the webhook matches nothing");
                        Some(conditions::Conditions::Any(Vec::new()))
                    }
                    other => other.transpose().ok().flatten(),
                };
                (w, parsed)
            })
            .collect();
        Matcher { webhooks }
    }

    /// The webhooks `event` fires: enabled, of its type and kind, and its conditions hold.
    pub fn matching<'e>(&'e self, event: &'e Event) -> impl Iterator<Item = &'e Webhook> + 'e {
        self.webhooks
            .iter()
            .filter(|(w, c)| w.matches(event) && c.as_ref().is_none_or(|c| c.eval(&event.data, &event.snapshots)))
            .map(|(w, _)| w)
    }
}

/// An `http(s)` URL with a host; when it holds a template, it must compile and start with the scheme.
fn check_payload_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("This field may not be blank.".into());
    }
    if url.contains("{{") || url.contains("{%") {
        template::check(url).map_err(|m| format!("Invalid template: {m}"))?;
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err("Enter a valid URL: it must start with http:// or https://.".into());
        }
        return Ok(());
    }
    check_url(url)
}

/// A plain `http(s)` URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("Enter a valid URL ({e})."))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "Enter a valid URL: scheme \"{}\" is not http or https.",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("Enter a valid URL: it has no host.".into());
    }
    Ok(())
}

/// Reads a PEM file holding at least one certificate.
pub fn read_ca_file(path: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("Cannot read CA file {path}: {e}."))?;
    if !bytes.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("{path} holds no PEM certificate."));
    }
    let certs = reqwest::Certificate::from_pem_bundle(&bytes)
        .map_err(|e| format!("{path} is not a valid PEM certificate file: {e}."))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate."));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_their_fields() {
        let c = Catalog::builtin();
        let body = json!({
            "name": "x", "content_types": ["dcim.site"], "payload_url": "ftp://h/",
            "http_method": "FETCH", "body_template": "{% if %}", "ssl_verification": false,
            "ca_file_path": "/etc/hostname"
        });
        let err = Webhook::blank().apply(&body, &c, false).unwrap_err().into_value();
        for f in [
            "type_create",
            "payload_url",
            "http_method",
            "body_template",
            "ca_file_path",
        ] {
            assert!(err.get(f).is_some(), "{f} missing in {err}");
        }
        let ok = json!({"name": "a", "content_types": ["dcim.site"], "type_create": true,
                        "payload_url": "https://h/{{ model }}"});
        let w = Webhook::blank().apply(&ok, &c, false).unwrap();
        assert_eq!((w.http_method, w.timeout), (HttpMethod::Post, 15));
        let patched = w.apply(&json!({"timeout": 0}), &c, true).unwrap_err();
        assert!(patched.0.contains_key("timeout"));
    }
}
