//! The exact request a webhook sends for an event: URL, headers, body and signature.

use super::{headers, template, HttpMethod, Webhook};
use crate::events::Event;
use hmac::{Hmac, Mac};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use sha2::Sha512;

/// The `User-Agent` Herald sends unless a webhook sets its own.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub method: HttpMethod,
    pub url: String,
    /// In sending order; names as written.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A field's template failed, or rendered something unusable.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildError {
    pub field: &'static str,
    pub message: String,
    /// The templates ran out of memory or time (they would on any event like this one).
    pub exhausted: bool,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: &'static str, message: impl Into<String>) -> BuildError {
    BuildError {
        field,
        message: message.into(),
        exhausted: false,
    }
}

/// A webhook with its templates compiled once.
pub struct Compiled {
    env: Environment<'static>,
    has_body: bool,
    /// The URL when it holds no template (most do): no rendering needed.
    static_url: Option<String>,
    /// The extra headers when they hold no template.
    static_headers: Option<Vec<(String, String)>>,
}

/// Whether `source` holds any Jinja2 syntax; without it, rendering returns the text itself.
fn is_template(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

impl Compiled {
    /// Whether building runs any template (else it is plain text and JSON, safe in-process).
    pub fn renders(&self) -> bool {
        self.has_body || self.static_url.is_none() || self.static_headers.is_none()
    }

    /// Compiles the webhook's templates; errors name the field.
    pub fn new(webhook: &Webhook) -> Result<Compiled, BuildError> {
        let mut env = template::environment();
        let has_body = !webhook.body_template.is_empty();
        let mut sources = vec![
            ("payload_url", &webhook.payload_url),
            ("additional_headers", &webhook.additional_headers),
        ];
        if has_body {
            sources.push(("body_template", &webhook.body_template));
        }
        for (field, source) in sources {
            template::add(&mut env, field, source).map_err(|e| err(field, template::describe(&e)))?;
        }
        let static_url = (!is_template(&webhook.payload_url)).then(|| webhook.payload_url.trim().to_string());
        let static_headers =
            (!is_template(&webhook.additional_headers)).then(|| headers::parse(&webhook.additional_headers));
        Ok(Compiled {
            env,
            has_body,
            static_url,
            static_headers,
        })
    }

    /// Renders the request `webhook` sends for `event` as delivery `delivery` (none for
    /// previews and tests). Errors name the field that failed.
    pub fn build(&self, webhook: &Webhook, event: &Event, delivery: Option<i64>) -> Result<Outgoing, BuildError> {
        let needs_context = self.has_body || self.static_url.is_none() || self.static_headers.is_none();
        let ctx = if needs_context {
            minijinja::Value::from_serialize(event.context())
        } else {
            minijinja::Value::UNDEFINED
        };
        let render = |name: &'static str| template::render(&self.env, name, &ctx).map_err(|e| err(name, e));

        let url = match &self.static_url {
            Some(u) => u.clone(),
            None => render("payload_url")?.trim().to_string(),
        };
        super::check_url(&url).map_err(|e| err("payload_url", format!("rendered to \"{url}\": {e}")))?;

        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), webhook.http_content_type.clone()),
            ("User-Agent".into(), USER_AGENT.into()),
        ];
        let extra = match &self.static_headers {
            Some(h) => h.clone(),
            None => headers::parse(&render("additional_headers")?),
        };
        for (name, value) in extra {
            headers::check_name(&name).map_err(|e| err("additional_headers", e))?;
            if let Some(existing) = headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                *existing = (name, value);
            } else {
                headers.push((name, value));
            }
        }
        if let Some(id) = delivery {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(headers::DELIVERY));
            headers.push((headers::DELIVERY.into(), id.to_string()));
        }

        let body = if self.has_body {
            render("body_template")?
        } else {
            event.default_body()
        };

        if !webhook.secret.is_empty() {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case("X-Hook-Signature"));
            headers.push(("X-Hook-Signature".into(), sign(&webhook.secret, body.as_bytes())));
        }

        Ok(Outgoing {
            method: webhook.http_method,
            url,
            headers,
            body,
        })
    }
}

/// Lowercase hex HMAC-SHA512 of `body` keyed by `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha512_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }
}
