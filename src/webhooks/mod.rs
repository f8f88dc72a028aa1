//! Webhooks: their fields and rules (NetBox's), their REST view, and which events they match.

pub mod ca;
pub mod conditions;
pub mod event_rule;
pub mod headers;
pub mod health;
pub mod modulo;
pub mod request;
mod rules;
pub mod sandbox;
pub mod signature;
pub mod template;

pub use rules::{check_url, Rules};

use crate::events::{Event, EventKind};
use crate::validate::FieldErrors;
use chrono::{DateTime, Utc};
pub use event_rule::EventRule;
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

impl<'de> serde::Deserialize<'de> for HttpMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HttpMethod, D::Error> {
        let s = String::deserialize(d)?;
        HttpMethod::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown HTTP method {s:?}")))
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

/// A webhook's fields, as request bodies and the database both name them.
pub const FIELDS: [&str; 23] = [
    "name",
    "description",
    "content_types",
    "type_create",
    "type_update",
    "type_delete",
    "enabled",
    "payload_url",
    "http_method",
    "http_content_type",
    "additional_headers",
    "body_template",
    "secret",
    "ssl_verification",
    "ca_file_path",
    "timeout",
    "retry_schedule",
    "conditions",
    "tags",
    "rate_limit",
    "ordered",
    "batch",
    "signature_scheme",
];

/// A webhook as stored.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// The types whose events fire it by its own triggers; empty for a webhook that only event
    /// rules fire (NetBox 3.7 and later).
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
    /// Its tags' ids (`extras.tag`), sorted.
    pub tags: Vec<i64>,
    /// Requests a second at most, across every worker of a fleet; `None`: as fast as it goes.
    pub rate_limit: Option<f64>,
    /// Deliveries about one object go one at a time, in commit order.
    pub ordered: bool,
    /// The changes of one request that match go as one delivery, a list of contexts.
    pub batch: bool,
    /// How requests are signed.
    pub signature_scheme: signature::Scheme,
    /// The secret a rotation replaced: it signs too until `previous_secret_until`.
    pub previous_secret: String,
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Why Herald disabled it (its deliveries all failed for too long), and when; empty once
    /// it is enabled again.
    pub disabled_reason: String,
    pub disabled_at: Option<DateTime<Utc>>,
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
            description: String::new(),
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
            tags: Vec::new(),
            rate_limit: None,
            ordered: false,
            batch: false,
            signature_scheme: signature::Scheme::NetBox,
            previous_secret: String::new(),
            previous_secret_until: None,
            disabled_reason: String::new(),
            disabled_at: None,
            created: now,
            last_updated: now,
        }
    }

    /// The secret a rotation replaced, while it still signs at `now`.
    pub fn previous_secret_at(&self, now: DateTime<Utc>) -> Option<&str> {
        (!self.previous_secret.is_empty() && self.previous_secret_until.is_some_and(|until| now < until))
            .then_some(self.previous_secret.as_str())
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

    /// The REST representation, `url` under `base` (`http://host`), with its `tags` as shown
    /// (brief); the secret is never shown.
    pub fn to_json(&self, base: &str, tags: Value) -> Value {
        json!({
            "id": self.id,
            "url": format!("{base}/api/extras/webhooks/{}/", self.id),
            "display": self.name,
            "content_types": self.content_types,
            "name": self.name,
            "description": self.description,
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
            "rate_limit": self.rate_limit,
            "ordered": self.ordered,
            "batch": self.batch,
            "signature_scheme": self.signature_scheme.as_str(),
            "previous_secret_until": self.previous_secret_until.map(crate::events::rest_time),
            "disabled_reason": (!self.disabled_reason.is_empty()).then_some(&self.disabled_reason),
            "disabled_at": self.disabled_at.map(crate::events::rest_time),
            "custom_fields": {},
            "tags": tags,
            "created": crate::events::rest_time(self.created),
            "last_updated": crate::events::rest_time(self.last_updated),
        })
    }
}

/// Each of `types` that no event can be of is an error of `field`.
fn check_event_types(catalog: &crate::catalog::Catalog, field: &str, types: &[String], errors: &mut FieldErrors) {
    for t in types.iter().filter(|t| !catalog.is_event_type(t)) {
        errors.add(field, format!("Unknown object type \"{t}\"."));
    }
}

/// One way an event fires a webhook: by the webhook's own triggers, or by an event rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firing {
    pub webhook_id: i64,
    /// The rule that fired it; `None` for the webhook's own triggers.
    pub event_rule_id: Option<i64>,
    /// The webhook sends one delivery for all the events of one write it matches.
    pub batch: bool,
}

/// Enabled webhooks and event rules with their conditions parsed once, to match many events.
pub struct Matcher {
    webhooks: Vec<(Webhook, Option<conditions::Conditions>)>,
    rules: Vec<(EventRule, Option<conditions::Conditions>)>,
    /// The webhooks that batch.
    batched: std::collections::HashSet<i64>,
}

/// Parsed conditions; stored ones that no longer parse match nothing, loudly.
fn parsed_conditions(conditions: Option<&Value>, what: &str, id: i64) -> Option<conditions::Conditions> {
    match conditions.map(conditions::Conditions::parse) {
        Some(Err(e)) => {
            tracing::error!(what, id, error = %e, "stored conditions are invalid; it matches nothing");
            Some(conditions::Conditions::Any(Vec::new()))
        }
        other => other.transpose().ok().flatten(),
    }
}

impl Matcher {
    /// Over the enabled webhooks and the enabled rules; a rule whose webhook is disabled fires
    /// nothing.
    pub fn new(webhooks: Vec<Webhook>, rules: Vec<EventRule>) -> Matcher {
        let batched = webhooks.iter().filter(|w| w.batch).map(|w| w.id).collect();
        let rules = rules
            .into_iter()
            .filter(|r| r.enabled && webhooks.iter().any(|w| w.id == r.webhook_id))
            .map(|r| {
                let parsed = parsed_conditions(r.conditions.as_ref(), "event rule", r.id);
                (r, parsed)
            })
            .collect();
        let webhooks = webhooks
            .into_iter()
            .map(|w| {
                let parsed = parsed_conditions(w.conditions.as_ref(), "webhook", w.id);
                (w, parsed)
            })
            .collect();
        Matcher {
            webhooks,
            rules,
            batched,
        }
    }

    /// What `event` fires: each enabled webhook of its type and kind whose conditions hold, and
    /// each enabled rule of its type and kind whose conditions hold, for the rule's webhook.
    pub fn matching<'e>(&'e self, event: &'e Event) -> impl Iterator<Item = Firing> + 'e {
        let holds =
            |c: &Option<conditions::Conditions>| c.as_ref().is_none_or(|c| c.eval(&event.data, &event.snapshots));
        let own = self
            .webhooks
            .iter()
            .filter(move |(w, c)| w.matches(event) && holds(c))
            .map(|(w, _)| Firing {
                webhook_id: w.id,
                event_rule_id: None,
                batch: w.batch,
            });
        let ruled = self
            .rules
            .iter()
            .filter(move |(r, c)| r.matches(event) && holds(c))
            .map(|(r, _)| Firing {
                webhook_id: r.webhook_id,
                event_rule_id: Some(r.id),
                batch: self.batched.contains(&r.webhook_id),
            });
        own.chain(ruled)
    }
}
