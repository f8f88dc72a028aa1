//! Webhooks: listing with filters, creating and changing them (all or none of a list, each
//! item's errors reported), previewing the request one would send, sending a test, and the
//! sample events both use.

use super::filters::{Given, Kind, Param, Spec};
use super::{blocking, require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor};
use crate::delivery::send;
use crate::events::{ingest, netbox_timestamp, Event, EventKind};
use crate::page::Page;
use crate::queue::Attempt;
use crate::webhooks::request::{BuildError, Failure, Outgoing, Plain};
use crate::webhooks::{headers, signature, HttpMethod, Rules, Webhook};
use chrono::Utc;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Bytes of a test send's response body shown.
const TEST_EXCERPT: usize = 256;

/// How a text filter compares (NetBox's lookups): `payload_url__ic=example`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextLookup {
    /// Equal to one of the values.
    Exact,
    /// Equal to none of them (`__n`).
    Not,
    IContains,
    IExact,
    IStartsWith,
    IEndsWith,
}

impl TextLookup {
    /// The lookup of a parameter's suffix (`ic`, `nisw`, ...) and whether it is negated.
    pub fn parse(suffix: &str) -> Option<(TextLookup, bool)> {
        Some(match suffix {
            "" => (TextLookup::Exact, false),
            "n" => (TextLookup::Not, false),
            "ic" => (TextLookup::IContains, false),
            "nic" => (TextLookup::IContains, true),
            "ie" => (TextLookup::IExact, false),
            "nie" => (TextLookup::IExact, true),
            "isw" => (TextLookup::IStartsWith, false),
            "nisw" => (TextLookup::IStartsWith, true),
            "iew" => (TextLookup::IEndsWith, false),
            "niew" => (TextLookup::IEndsWith, true),
            _ => return None,
        })
    }
}

/// One text condition: its lookup, whether negated, and its values (any of them).
#[derive(Debug, Clone)]
pub struct TextFilter {
    pub lookup: TextLookup,
    pub negate: bool,
    pub values: Vec<String>,
}

impl TextFilter {
    pub(super) fn matches(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|v| f(v));
        let hit = match self.lookup {
            TextLookup::Exact => any(&|v| v == text),
            TextLookup::Not => !any(&|v| v == text),
            TextLookup::IContains => any(&|v| lower.contains(&v.to_lowercase())),
            TextLookup::IExact => any(&|v| lower == v.to_lowercase()),
            TextLookup::IStartsWith => any(&|v| lower.starts_with(&v.to_lowercase())),
            TextLookup::IEndsWith => any(&|v| lower.ends_with(&v.to_lowercase())),
        };
        hit != self.negate
    }
}

/// Filters of the webhook list. Empty lists do not filter; all must hold.
#[derive(Debug, Clone, Default)]
pub struct WebhookFilter {
    pub id: Vec<i64>,
    pub name: Vec<String>,
    pub content_types: Vec<String>,
    pub http_method: Vec<HttpMethod>,
    pub enabled: Option<bool>,
    pub type_create: Option<bool>,
    pub type_update: Option<bool>,
    pub type_delete: Option<bool>,
    pub ssl_verification: Option<bool>,
    pub http_content_type: Vec<String>,
    pub payload_url: Vec<TextFilter>,
    /// Part of the name or URL, any case.
    pub q: Option<String>,
}

/// What the webhook list may be filtered by.
pub static FILTERS: Spec = Spec {
    list: "webhooks",
    params: &[
        Param {
            name: "id",
            kind: Kind::Ints,
        },
        Param {
            name: "name",
            kind: Kind::Texts,
        },
        Param {
            name: "content_types",
            kind: Kind::Texts,
        },
        Param {
            name: "http_method",
            kind: Kind::Choice(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
        },
        Param {
            name: "enabled",
            kind: Kind::Bool,
        },
        Param {
            name: "type_create",
            kind: Kind::Bool,
        },
        Param {
            name: "type_update",
            kind: Kind::Bool,
        },
        Param {
            name: "type_delete",
            kind: Kind::Bool,
        },
        Param {
            name: "ssl_verification",
            kind: Kind::Bool,
        },
        Param {
            name: "http_content_type",
            kind: Kind::Texts,
        },
        Param {
            name: "payload_url",
            kind: Kind::Lookups,
        },
        Param {
            name: "q",
            kind: Kind::Texts,
        },
    ],
};

impl WebhookFilter {
    /// The filter `given` names (and `also`, which the caller reads itself).
    pub fn read(given: &Given, also: &[&str]) -> Result<WebhookFilter> {
        let r = FILTERS.read(given, also)?;
        Ok(WebhookFilter {
            id: r.ints("id")?,
            name: r.texts("name"),
            content_types: r.texts("content_types"),
            http_method: r
                .choices("http_method")?
                .iter()
                .filter_map(|m| HttpMethod::parse(m))
                .collect(),
            enabled: r.bool("enabled")?,
            type_create: r.bool("type_create")?,
            type_update: r.bool("type_update")?,
            type_delete: r.bool("type_delete")?,
            ssl_verification: r.bool("ssl_verification")?,
            http_content_type: r.texts("http_content_type"),
            payload_url: r.lookups("payload_url"),
            q: r.text("q"),
        })
    }

    fn matches(&self, w: &Webhook) -> bool {
        let q = self.q.as_ref().map(|s| s.to_lowercase());
        let flag = |want: Option<bool>, have: bool| want.is_none_or(|b| b == have);
        (self.id.is_empty() || self.id.contains(&w.id))
            && (self.name.is_empty() || self.name.contains(&w.name))
            && (self.content_types.is_empty() || w.content_types.iter().any(|t| self.content_types.contains(t)))
            && (self.http_method.is_empty() || self.http_method.contains(&w.http_method))
            && flag(self.enabled, w.enabled)
            && flag(self.type_create, w.type_create)
            && flag(self.type_update, w.type_update)
            && flag(self.type_delete, w.type_delete)
            && flag(self.ssl_verification, w.ssl_verification)
            && (self.http_content_type.is_empty() || self.http_content_type.contains(&w.http_content_type))
            && self.payload_url.iter().all(|f| f.matches(&w.payload_url))
            && q.is_none_or(|s| w.name.to_lowercase().contains(&s) || w.payload_url.to_lowercase().contains(&s))
    }
}

/// Runs `check` on every item; all must pass. A failing item's errors stand at its place in a
/// list with an empty object for each good one; a single item's errors stand alone.
pub(super) fn all_or_errors<T>(items: Vec<Result<T>>, bulk: bool) -> Result<Vec<T>> {
    if !bulk {
        return items.into_iter().collect();
    }
    let mut ok = Vec::with_capacity(items.len());
    let mut errors = Vec::with_capacity(items.len());
    let mut failed = false;
    for item in items {
        match item {
            Ok(v) => {
                ok.push(v);
                errors.push(json!({}));
            }
            Err(Error::Validation(e)) => {
                failed = true;
                errors.push(e);
            }
            Err(Error::NotFound) => {
                failed = true;
                errors.push(json!({"id": ["Not found."]}));
            }
            Err(e) => return Err(e),
        }
    }
    if failed {
        Err(Error::Validation(Value::Array(errors)))
    } else {
        Ok(ok)
    }
}

impl Services {
    /// Webhooks `ids` that are the operator's: Herald's own (notices) are out of the API's
    /// and the pages' reach, though their deliveries are listed like any.
    pub(crate) async fn operator_webhooks(&self, ids: &[i64]) -> Result<Vec<Webhook>> {
        let mut found = self.store.webhooks_by_id(ids).await?;
        found.retain(|w| !crate::maintenance::notices::is_own(w));
        Ok(found)
    }

    /// One page of the webhooks matching `filter`, by name. Webhooks are configuration-sized:
    /// filtering in memory keeps every filter simple.
    pub async fn webhooks(
        &self,
        actor: &Actor,
        filter: &WebhookFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Webhook>> {
        require(actor, types::WEBHOOK, Action::View)?;
        let all: Vec<Webhook> = self
            .store
            .webhooks()
            .await?
            .into_iter()
            .filter(|w| !crate::maintenance::notices::is_own(w) && filter.matches(w))
            .map(|w| shown_to(actor, w))
            .collect();
        Ok(Page::of(all, limit, offset))
    }

    /// Webhook `id`, its secret headers masked for those who may not change it.
    pub async fn webhook(&self, actor: &Actor, id: i64) -> Result<Webhook> {
        require(actor, types::WEBHOOK, Action::View)?;
        let w = self.operator_webhooks(&[id]).await?.pop().ok_or(Error::NotFound)?;
        Ok(shown_to(actor, w))
    }

    /// Checks `body` as a new webhook (NetBox's rules): the fields off the async threads (the
    /// CA file is read), the templates in the sandbox.
    pub async fn check_new_webhook(&self, body: Value) -> Result<Webhook> {
        self.check_webhook(Webhook::blank(), body, false).await
    }

    async fn check_webhook(&self, base: Webhook, mut body: Value, partial: bool) -> Result<Webhook> {
        let tags = self.resolve_tags(&body).await?;
        // Headers sent back as they were shown masked keep their stored values.
        if let Some(Value::String(sent)) = body.get_mut("additional_headers") {
            *sent = headers::unmask_source(sent, &base.additional_headers);
        }
        let (catalog, config) = (self.catalog.clone(), self.config.clone());
        let read = move || {
            let rules = Rules {
                catalog: &catalog,
                ca_dir: config.webhooks.ca_dir(),
            };
            base.read(&body, rules, partial)
        };
        let (mut webhook, mut errors) = blocking(read).await??;
        if let Some(e) = self.check_templates(&webhook).await {
            if !errors.0.contains_key(e.field) {
                errors.add(e.field, template_refusal(&e));
            }
        }
        if let Some(tags) = tags {
            webhook.tags = tags;
        }
        Ok(errors.finish(webhook)?)
    }

    /// Compiles the templates and renders them once on a sample event, in the sandbox: a
    /// template that does not compile, or that goes past the sandbox's bounds there (it would
    /// on every delivery), is refused when saved. A render that fails on the sample only is
    /// not: real events may hold what the sample lacks.
    async fn check_templates(&self, webhook: &Webhook) -> Option<BuildError> {
        if !Plain::of(webhook).renders() {
            return None;
        }
        let sample = self.sample_event(webhook, "herald");
        match self.sandbox.build(webhook, &sample, None).await {
            Err(e) if e.failure != Failure::Render => Some(e),
            _ => None,
        }
    }

    /// What webhook `id` would be with the fields of `body` changed: checked, not saved.
    pub async fn check_changed_webhook(&self, actor: &Actor, id: i64, body: Value) -> Result<Webhook> {
        require(actor, types::WEBHOOK, Action::Change)?;
        let current = self.webhook(actor, id).await?;
        self.check_webhook(current, body, true).await
    }

    /// Creates webhooks from `items` (all or none); `bulk` when they came as a list.
    pub async fn create_webhooks(&self, actor: &Actor, items: Vec<Value>, bulk: bool) -> Result<Vec<Webhook>> {
        require(actor, types::WEBHOOK, Action::Add)?;
        let mut checked = Vec::with_capacity(items.len());
        for item in items {
            checked.push(self.check_new_webhook(item).await);
        }
        let webhooks = all_or_errors(checked, bulk)?;
        Ok(self.store.create_webhooks(webhooks, Utc::now()).await?)
    }

    /// Changes webhooks: `(id, body)` each, all or none; `partial` for PATCH (only the fields
    /// given), else PUT (every required field).
    pub async fn update_webhooks(
        &self,
        actor: &Actor,
        changes: Vec<(i64, Value)>,
        partial: bool,
        bulk: bool,
    ) -> Result<Vec<Webhook>> {
        require(actor, types::WEBHOOK, Action::Change)?;
        let ids: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
        let current = self.operator_webhooks(&ids).await?;
        let mut checked = Vec::with_capacity(changes.len());
        for (id, body) in changes {
            checked.push(match current.iter().find(|w| w.id == id) {
                Some(w) => self.check_webhook(w.clone(), body, partial).await,
                None => Err(Error::NotFound),
            });
        }
        let updated = all_or_errors(checked, bulk)?;
        Ok(self.store.update_webhooks(updated, Utc::now()).await?)
    }

    /// Gives webhook `id` a new secret (`secret`, or a new random `whsec_` one) from `body`
    /// (`{"secret", "overlap_secs"}`): for `overlap_secs` (a day unless given) the previous
    /// secret signs beside it, so receivers can move over. Returns the webhook and the secret.
    pub async fn rotate_secret(&self, actor: &Actor, id: i64, body: &Value) -> Result<(Webhook, String)> {
        require(actor, types::WEBHOOK, Action::Change)?;
        let mut r = crate::validate::Reader::new(body)?;
        let given = r.string("secret");
        let overlap = r.int("overlap_secs", 0, 30 * 86_400).unwrap_or(86_400);
        crate::validate::refuse_unknown_keys(
            body,
            |k| ["secret", "overlap_secs"].contains(&k),
            "secret rotations",
            &mut r.errors,
        );
        let mut errors = std::mem::take(&mut r.errors);
        let secret = given.unwrap_or_else(new_secret);
        if secret.is_empty() || secret.chars().count() > 255 {
            errors.add("secret", "A secret has 1 to 255 characters.");
        }
        let mut w = self.operator_webhooks(&[id]).await?.pop().ok_or(Error::NotFound)?;
        if w.signature_scheme != signature::Scheme::NetBox {
            if let Err(msg) = signature::standard_key(&secret) {
                errors.add("secret", format!("Standard Webhooks signing: {msg}."));
            }
        }
        errors.finish(())?;
        let now = Utc::now();
        if overlap > 0 && !w.secret.is_empty() {
            w.previous_secret = std::mem::take(&mut w.secret);
            w.previous_secret_until = Some(now + chrono::Duration::seconds(overlap));
        } else {
            w.previous_secret.clear();
            w.previous_secret_until = None;
        }
        w.secret = secret.clone();
        let saved = self
            .store
            .update_webhooks(vec![w], now)
            .await?
            .pop()
            .ok_or(Error::NotFound)?;
        Ok((saved, secret))
    }

    /// Deletes webhooks, all or none; their deliveries stay in the log until retention purges
    /// them.
    pub async fn delete_webhooks(&self, actor: &Actor, ids: &[i64]) -> Result<()> {
        require(actor, types::WEBHOOK, Action::Delete)?;
        let theirs = self.operator_webhooks(ids).await?;
        if ids.iter().any(|id| !theirs.iter().any(|w| w.id == *id)) {
            return Err(Error::NotFound);
        }
        Ok(self.store.delete_webhooks(ids, Utc::now()).await?)
    }

    /// The request `webhook` would send for `event` (a NetBox-shaped event body) or for a
    /// sample event of its first type; nothing is saved or sent.
    /// The request an unsaved webhook (`saved` false: its author gave its secret) or a saved
    /// one would send. The signature shows only to those who may change webhooks (or who gave
    /// the secret themselves): nobody else may get bodies of their choosing signed with it.
    pub async fn preview(
        &self,
        actor: &Actor,
        webhook: Webhook,
        saved: bool,
        event: Option<&Value>,
    ) -> Result<Outgoing> {
        require(actor, types::WEBHOOK, if saved { Action::View } else { Action::Add })?;
        let event = self.event_for(&webhook, event, &actor.user.username)?;
        self.preview_event(actor, webhook, saved, &event).await
    }

    /// `preview` for an event already parsed (a sample, or one recorded).
    pub async fn preview_event(&self, actor: &Actor, webhook: Webhook, saved: bool, event: &Event) -> Result<Outgoing> {
        require(actor, types::WEBHOOK, if saved { Action::View } else { Action::Add })?;
        let mut out = self.build(&webhook, event).await?;
        if saved && !actor.can(types::WEBHOOK, Action::Change) {
            headers::mask(&mut out.headers);
        } else {
            signature::sign(&webhook, &mut out, &one_off_id(), Utc::now());
        }
        Ok(out)
    }

    /// Why the destination policy would refuse `url` outright (by its host; names are checked
    /// again on their addresses when sending), if it would.
    pub fn refusal(&self, url: &str) -> Option<String> {
        let parsed = reqwest::Url::parse(url).ok()?;
        self.destinations.check_url(&parsed).err().map(|e| e.to_string())
    }

    /// The request `webhook` sends for `event`, built in the sandbox when it renders anything;
    /// a template failure is a field error. Not signed.
    async fn build(&self, webhook: &Webhook, event: &Event) -> Result<Outgoing> {
        let plain = Plain::of(webhook);
        let built = if plain.renders() {
            self.sandbox.build(webhook, event, None).await
        } else {
            plain.build(webhook, event, None)
        };
        built.map_err(|e| Error::field(e.field, template_refusal(&e)))
    }

    /// Sends `webhook`'s request for `event` (or a sample) now; nothing is queued or recorded.
    pub async fn test_send(&self, actor: &Actor, webhook: &Webhook, event: Option<&Value>) -> Result<Attempt> {
        require(actor, types::WEBHOOK, Action::Change)?;
        let event = self.event_for(webhook, event, &actor.user.username)?;
        let mut request = self.build(webhook, &event).await?;
        signature::sign(webhook, &mut request, &one_off_id(), Utc::now());
        let timeout = Duration::from_secs(u64::from(webhook.timeout));
        let mut attempt = match self.clients().for_request(webhook, &request.url).await {
            Ok(client) => send::send(&client, &request, 0, timeout, TEST_EXCERPT).await.0,
            Err(e) => {
                let mut a = send::unsent_attempt(&request, 0);
                a.error = Some(e);
                a
            }
        };
        // What answered is shown in part only: a test send must not become a way to read
        // what other services answer.
        if let Some(body) = &mut attempt.response_body {
            let mut end = body.len().min(TEST_EXCERPT);
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
        }
        Ok(attempt)
    }

    /// The event given (NetBox's body) or a sample one for the webhook.
    fn event_for(&self, webhook: &Webhook, event: Option<&Value>, username: &str) -> Result<Event> {
        let Some(e) = event.filter(|e| !e.is_null()) else {
            return Ok(self.sample_event(webhook, username));
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let defaults = ingest::Defaults {
            username,
            now: Utc::now(),
            request_id: &request_id,
        };
        // Written as NetBox writes its bodies: what a relayed event of this value re-sends.
        let text = crate::python::json::dumps(e);
        let mut parsed = ingest::parse(e.clone(), text.as_bytes(), &self.catalog, &defaults)
            .map_err(|e| Error::Validation(json!({ "event": e })))?;
        if parsed.len() != 1 {
            return Err(Error::field("event", "Expected one event, not a list."));
        }
        Ok(parsed.remove(0))
    }

    /// A realistic event for the webhook's first content type, of the first kind it fires on.
    pub fn sample_event(&self, webhook: &Webhook, username: &str) -> Event {
        let t = webhook
            .content_types
            .first()
            .and_then(|name| self.catalog.get(name))
            .or_else(|| self.catalog.types().first());
        let (object_type, data) = match t {
            Some(t) => (t.name().to_string(), t.sample.clone()),
            None => ("dcim.site".to_string(), json!({})),
        };
        let kind = if webhook.type_create || !(webhook.type_update || webhook.type_delete) {
            EventKind::Created
        } else if webhook.type_update {
            EventKind::Updated
        } else {
            EventKind::Deleted
        };
        let minimal = minimal_snapshot(&data);
        let snapshots = match kind {
            EventKind::Created => json!({"prechange": null, "postchange": minimal}),
            EventKind::Updated => json!({"prechange": minimal, "postchange": minimal}),
            EventKind::Deleted => json!({"prechange": minimal, "postchange": null}),
        };
        Event {
            id: 0,
            kind,
            timestamp: netbox_timestamp(Utc::now()),
            object_type,
            username: username.to_string(),
            request_id: uuid::Uuid::new_v4().to_string(),
            data,
            snapshots,
            request: None,
            body: None,
            batch: None,
        }
    }
}

/// A random secret in Standard Webhooks' form (`whsec_` and 32 bytes in base64), which NetBox's
/// scheme takes as it is.
fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The message id of a request no delivery sends (a preview, a test send).
fn one_off_id() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// `w` as `actor` may see it: secret headers masked unless they may change webhooks.
fn shown_to(actor: &Actor, mut w: Webhook) -> Webhook {
    if !actor.can(types::WEBHOOK, Action::Change) {
        w.additional_headers = headers::mask_source(&w.additional_headers);
    }
    w
}

/// What a template failure says on the field that failed.
fn template_refusal(e: &BuildError) -> String {
    match e.failure {
        Failure::Invalid => format!("Invalid template: {}", e.message),
        Failure::Exhausted => format!(
            "Rendered on a sample event, this template goes past Herald's limits: {}.",
            e.message
        ),
        Failure::Render => e.message.clone(),
    }
}

/// NetBox's snapshot form of a REST object: foreign keys as ids, choices as values, tags as names.
fn minimal_snapshot(data: &Value) -> Value {
    let Value::Object(map) = data else { return Value::Null };
    let mut out = Map::new();
    for (k, v) in map {
        if matches!(k.as_str(), "id" | "url" | "display") {
            continue;
        }
        let v = match (k.as_str(), v) {
            ("tags", Value::Array(tags)) => {
                let mut names: Vec<String> = tags
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
                    .collect();
                names.sort();
                json!(names)
            }
            (_, Value::Object(o)) if o.contains_key("value") && o.contains_key("label") => o["value"].clone(),
            (_, Value::Object(o)) if o.contains_key("id") => o["id"].clone(),
            (_, other) => other.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}
