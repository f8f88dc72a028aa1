//! The exact request a webhook sends for an event: URL, headers and body (its signature is a
//! step of its own, `signature`, taken by the process that sends it).
//!
//! Templates are compiled only where memory is bounded: minijinja folds constant expressions
//! when it compiles (`{{ 'y' * 10**8 }}` is a 100 MB string before anything renders), so
//! `Compiled` lives in the sandbox child alone. Herald's own processes read a webhook's text
//! (`Plain`) and build, without any template engine, the requests of webhooks that hold no
//! template; the others are built in the sandbox.

use super::{headers, template, HttpMethod, Webhook};
use crate::events::Event;
use minijinja::Environment;
use serde::{Deserialize, Serialize};

/// The `User-Agent` Herald sends unless a webhook sets its own.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// A request ready to sign and send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub method: HttpMethod,
    pub url: String,
    /// In sending order; names as written.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Whether the body is the event's own (`Event::default_body` of one event): an attempt
    /// then stores none of its own.
    #[serde(default)]
    pub body_is_event: bool,
}

/// Why a request could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// A template does not compile, or compiles to more than Herald keeps: it fails on every
    /// event.
    Invalid,
    /// A template failed on this event, or rendered something unusable.
    Render,
    /// The templates ran out of memory or time (they would on any event like this one).
    Exhausted,
}

/// A field's template failed, or rendered something unusable.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildError {
    pub field: &'static str,
    pub message: String,
    pub failure: Failure,
}

impl BuildError {
    pub fn new(field: &'static str, message: impl Into<String>, failure: Failure) -> BuildError {
        BuildError {
            field,
            message: message.into(),
            failure,
        }
    }

    /// Whether the templates went past the sandbox's bounds.
    pub fn exhausted(&self) -> bool {
        self.failure == Failure::Exhausted
    }
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn render_err(field: &'static str, message: impl Into<String>) -> BuildError {
    BuildError::new(field, message, Failure::Render)
}

/// Whether `source` holds any Jinja2 syntax; without it, rendering returns the text itself.
pub fn is_template(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// What a webhook's request is from its text alone: the parts that hold no template. Reading
/// it compiles nothing, so it is safe in any process.
#[derive(Debug, Clone, PartialEq)]
pub struct Plain {
    has_body: bool,
    /// The URL when it holds no template (most do).
    static_url: Option<String>,
    /// The extra headers when they hold no template.
    static_headers: Option<Vec<(String, String)>>,
}

impl Plain {
    pub fn of(webhook: &Webhook) -> Plain {
        Plain {
            has_body: !webhook.body_template.is_empty(),
            static_url: (!is_template(&webhook.payload_url)).then(|| webhook.payload_url.trim().to_string()),
            static_headers: (!is_template(&webhook.additional_headers))
                .then(|| headers::parse(&webhook.additional_headers)),
        }
    }

    /// Whether building runs any template (in the sandbox); else it is plain text and JSON.
    pub fn renders(&self) -> bool {
        self.has_body || self.static_url.is_none() || self.static_headers.is_none()
    }

    /// The request of a webhook that renders nothing (`renders()` is false).
    pub fn build(&self, webhook: &Webhook, event: &Event, delivery: Option<i64>) -> Result<Outgoing, BuildError> {
        match (&self.static_url, &self.static_headers, self.has_body) {
            (Some(url), Some(extra), false) => {
                assemble(webhook, url.clone(), extra.clone(), event_body(event), delivery)
            }
            _ => Err(render_err(
                "template",
                "this webhook's templates render in the sandbox, not here",
            )),
        }
    }
}

/// A webhook with its templates compiled once. Only the sandbox child makes these.
pub(super) struct Compiled {
    env: Environment<'static>,
    plain: Plain,
    /// Bytes the compiled templates hold, about (what a cache of them counts).
    weight: usize,
}

impl Compiled {
    /// Compiles the webhook's templates; errors name the field. Templates whose constant
    /// expressions fold into more than `template::MAX_CONSTANT_BYTES` are refused.
    pub(super) fn new(webhook: &Webhook) -> Result<Compiled, BuildError> {
        let plain = Plain::of(webhook);
        let mut env = template::environment();
        let mut sources = Vec::with_capacity(3);
        if plain.static_url.is_none() {
            sources.push(("payload_url", &webhook.payload_url));
        }
        if plain.static_headers.is_none() {
            sources.push((template::HEADERS, &webhook.additional_headers));
        }
        if plain.has_body {
            sources.push(("body_template", &webhook.body_template));
        }
        let mut weight = 0;
        let mut constants = 0;
        for (field, source) in sources {
            let invalid = |message: String| BuildError::new(field, message, Failure::Invalid);
            template::add(&mut env, field, source).map_err(|e| invalid(template::describe(&e)))?;
            let w = template::weigh(&env, field, template::MAX_CONSTANT_BYTES - constants)
                .map_err(|e| invalid(template::describe(&e)))?;
            if w.constants_over {
                return Err(invalid(template::constants_refusal()));
            }
            constants += w.constants;
            weight += w.total;
        }
        Ok(Compiled { env, plain, weight })
    }

    pub(super) fn weight(&self) -> usize {
        self.weight
    }

    /// Renders the request `webhook` sends for `event` as delivery `delivery` (none for
    /// previews and tests). Errors name the field that failed.
    pub(super) fn build(
        &self,
        webhook: &Webhook,
        event: &Event,
        delivery: Option<i64>,
    ) -> Result<Outgoing, BuildError> {
        let ctx = minijinja::Value::from_serialize(event.context());
        let render = |name: &'static str| {
            template::render(&self.env, name, &ctx).map_err(|e| {
                let failure = if e.exhausted {
                    Failure::Exhausted
                } else {
                    Failure::Render
                };
                BuildError::new(name, e.message, failure)
            })
        };
        let url = match &self.plain.static_url {
            Some(u) => u.clone(),
            None => render("payload_url")?.trim().to_string(),
        };
        let extra = match &self.plain.static_headers {
            Some(h) => h.clone(),
            None => headers::parse(&render(template::HEADERS)?),
        };
        let body = if self.plain.has_body {
            (render("body_template")?, false)
        } else {
            event_body(event)
        };
        assemble(webhook, url, extra, body, delivery)
    }
}

/// The body of a webhook without a body template, and whether it is the event's own (a batch's
/// is the list of its events' bodies: its attempts keep it).
fn event_body(event: &Event) -> (String, bool) {
    (event.default_body(), event.batch.is_none())
}

/// The request from its rendered parts: the URL checked, the default headers overridden by the
/// webhook's own, the delivery's id last.
fn assemble(
    webhook: &Webhook,
    url: String,
    extra: Vec<(String, String)>,
    (body, body_is_event): (String, bool),
    delivery: Option<i64>,
) -> Result<Outgoing, BuildError> {
    super::check_url(&url).map_err(|e| render_err("payload_url", format!("rendered to \"{url}\": {e}")))?;
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), webhook.http_content_type.clone()),
        ("User-Agent".into(), USER_AGENT.into()),
    ];
    for (name, value) in extra {
        headers::check_name(&name).map_err(|e| render_err("additional_headers", e))?;
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
    Ok(Outgoing {
        method: webhook.http_method,
        url,
        headers,
        body,
        body_is_event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str, headers: &str, body: &str) -> Webhook {
        let mut w = Webhook::blank();
        w.payload_url = url.into();
        w.additional_headers = headers.into();
        w.body_template = body.into();
        w
    }

    #[test]
    fn plain_webhooks_build_without_a_template_engine() {
        let w = webhook("http://h/x", "X-A: 1", "");
        let plain = Plain::of(&w);
        assert!(!plain.renders());
        assert!(Plain::of(&webhook("http://h/{{ model }}", "", "")).renders());
        assert!(Plain::of(&webhook("http://h/", "X: {# c #}", "")).renders());
        assert!(Plain::of(&webhook("http://h/", "", "text")).renders());
    }

    #[test]
    fn constants_folded_past_the_limit_are_refused_when_compiled() {
        let over = webhook("http://h/", "", "{% if false %}{{ 'yy' * 10**6 }}{% endif %}ok");
        let e = Compiled::new(&over).err().expect("refused");
        assert_eq!((e.field, e.failure), ("body_template", Failure::Invalid));
        assert!(e.message.contains("constant"), "{}", e.message);
        // Spread over two templates, the limit is for the webhook.
        let spread = webhook("http://h/{{ 'u' * 600000 }}", "", "{{ 'b' * 600000 }}");
        assert_eq!(Compiled::new(&spread).err().map(|e| e.field), Some("body_template"));
        let fine = webhook("http://h/", "", "{{ 'y' * 1000 }} {{ data.name }}");
        let c = Compiled::new(&fine).unwrap();
        assert!(c.weight() >= 1000 && c.weight() < 64 * 1024, "{}", c.weight());
        // Lazy repeats count as what they would print.
        let lazy = webhook("http://h/", "", "{{ ([1] * 10**15)|length }}");
        assert!(Compiled::new(&lazy).is_err());
    }
}
