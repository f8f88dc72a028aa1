//! Event rules (NetBox 3.7 and later): which object types and events, under which conditions,
//! fire which webhook. They stand beside a webhook's own triggers: a webhook fires through
//! either, and each way that fires gives its own delivery, as each NetBox rule sends its own.

use super::conditions;
use crate::catalog::Catalog;
use crate::events::{Event, EventKind};
use crate::validate::{refuse_unknown_keys, FieldErrors, Reader};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// An event rule's writable fields, as request bodies name them: NetBox 4.6's, and NetBox
/// 3.7's names for the same (`content_types`; `type_create`, ... for the event types).
pub const FIELDS: [&str; 15] = [
    "content_types",
    "type_create",
    "type_update",
    "type_delete",
    "name",
    "description",
    "object_types",
    "event_types",
    "enabled",
    "conditions",
    "action_type",
    "action_object_type",
    "action_object_id",
    "tags",
    "custom_fields",
];

/// What a rule's action may be: Herald's only action is a webhook.
pub const ACTION_TYPE: &str = "webhook";
pub const ACTION_OBJECT_TYPE: &str = "extras.webhook";

/// NetBox's event types for jobs, which Herald does not run.
const JOB_EVENTS: [&str; 4] = ["job_started", "job_completed", "job_failed", "job_errored"];

/// An event rule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRule {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub object_types: Vec<String>,
    /// The kinds of change it fires on (`object_created`, ... in the API).
    pub event_types: Vec<EventKind>,
    pub enabled: bool,
    /// A NetBox condition set on the event's data; `None` matches every event.
    pub conditions: Option<Value>,
    /// The webhook it fires.
    pub webhook_id: i64,
    /// Its tags' ids (`extras.tag`), sorted.
    pub tags: Vec<i64>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

/// NetBox's name of an event type: `object_created` for `created`.
pub fn event_type_name(kind: EventKind) -> String {
    format!("object_{}", kind.as_str())
}

impl EventRule {
    /// A rule with NetBox's defaults, not yet valid (no name, types, events or webhook).
    pub fn blank() -> EventRule {
        let now = Utc::now();
        EventRule {
            id: 0,
            name: String::new(),
            description: String::new(),
            object_types: Vec::new(),
            event_types: Vec::new(),
            enabled: true,
            conditions: None,
            webhook_id: 0,
            tags: Vec::new(),
            created: now,
            last_updated: now,
        }
    }

    /// Whether this rule's types and events select `event` (conditions aside).
    pub fn matches(&self, event: &Event) -> bool {
        self.enabled && self.event_types.contains(&event.kind) && self.object_types.contains(&event.object_type)
    }

    /// The REST representation as NetBox 4.6 shows it; `webhook` is the brief form of the
    /// webhook it fires (`None` if it is not visible), `tags` its tags as shown (brief).
    pub fn to_json(&self, base: &str, webhook: Option<Value>, tags: Value) -> Value {
        json!({
            "id": self.id,
            "url": format!("{base}/api/extras/event-rules/{}/", self.id),
            "display_url": format!("{base}/extras/event-rules/{}/", self.id),
            "display": self.name,
            "object_types": self.object_types,
            "name": self.name,
            "enabled": self.enabled,
            "event_types": self.event_types.iter().map(|k| event_type_name(*k)).collect::<Vec<_>>(),
            // NetBox 3.7's names of the same, for scripts written against it.
            "content_types": self.object_types,
            "type_create": self.event_types.contains(&EventKind::Created),
            "type_update": self.event_types.contains(&EventKind::Updated),
            "type_delete": self.event_types.contains(&EventKind::Deleted),
            "conditions": self.conditions,
            "action_type": {"value": ACTION_TYPE, "label": "Webhook"},
            "action_object_type": ACTION_OBJECT_TYPE,
            "action_object_id": self.webhook_id,
            "action_object": webhook,
            "description": self.description,
            "custom_fields": {},
            "tags": tags,
            "created": crate::events::rest_time(self.created),
            "last_updated": crate::events::rest_time(self.last_updated),
        })
    }

    /// Applies the fields present in `body` over `self` (all required ones for create and PUT,
    /// the given ones for PATCH), then checks every rule that needs no database: whether the
    /// webhook exists is the caller's to check. Errors name their fields.
    pub fn apply(mut self, body: &Value, catalog: &Catalog, partial: bool) -> Result<EventRule, FieldErrors> {
        let mut r = Reader::new(body)?;
        if let Some(v) = r.string("name") {
            self.name = v.trim().to_string();
        }
        if let Some(v) = r.nullable_string("description") {
            self.description = v.unwrap_or_default().trim().to_string();
        }
        if let Some(v) = r.string_set("object_types").or_else(|| r.string_set("content_types")) {
            self.object_types = v;
        }
        if let Some(v) = r.string_set("event_types") {
            self.read_event_types(&v, &mut r.errors);
        }
        for (field, kind) in [
            ("type_create", EventKind::Created),
            ("type_update", EventKind::Updated),
            ("type_delete", EventKind::Deleted),
        ] {
            match r.bool(field) {
                Some(true) if !self.event_types.contains(&kind) => self.event_types.push(kind),
                Some(false) => self.event_types.retain(|k| *k != kind),
                _ => {}
            }
        }
        if let Some(v) = r.bool("enabled") {
            self.enabled = v;
        }
        match r.raw("conditions") {
            None => {}
            Some(Value::Null) => self.conditions = None,
            Some(c) => match conditions::Conditions::parse(c) {
                Ok(_) => self.conditions = Some(c.clone()),
                Err(e) => r.errors.add("conditions", format!("Invalid condition set: {e}.")),
            },
        }
        if let Some(v) = r.string("action_type") {
            if v != ACTION_TYPE {
                r.errors.add(
                    "action_type",
                    format!("\"{v}\": Herald's event rules fire webhooks only (\"{ACTION_TYPE}\")."),
                );
            }
        }
        if let Some(v) = r.string("action_object_type") {
            if v != ACTION_OBJECT_TYPE {
                r.errors.add(
                    "action_object_type",
                    format!("\"{v}\": the action object must be a webhook (\"{ACTION_OBJECT_TYPE}\")."),
                );
            }
        }
        if let Some(v) = r.int("action_object_id", 1, i64::MAX) {
            self.webhook_id = v;
        }
        r.empty_custom_fields();
        let mut errors = std::mem::take(&mut r.errors);
        refuse_unknown_keys(
            body,
            |k| FIELDS.contains(&k) || k == "action_object",
            "event rules",
            &mut errors,
        );
        if !partial {
            let given = |names: &[&str]| names.iter().any(|n| r.has(n));
            for (field, names) in [
                ("name", &["name"][..]),
                ("object_types", &["object_types", "content_types"][..]),
                (
                    "event_types",
                    &["event_types", "type_create", "type_update", "type_delete"][..],
                ),
                ("action_object_id", &["action_object_id"][..]),
            ] {
                if !given(names) && !errors.0.contains_key(field) {
                    errors.add(field, "This field is required.");
                }
            }
            if !r.has("action_type") && !errors.0.contains_key("action_type") {
                errors.add("action_type", "This field is required.");
            }
        }
        self.check(catalog, &mut errors);
        errors.finish(self)
    }

    fn read_event_types(&mut self, given: &[String], errors: &mut FieldErrors) {
        let mut kinds = Vec::with_capacity(given.len());
        for name in given {
            match name.strip_prefix("object_").and_then(EventKind::parse) {
                Some(k) if !kinds.contains(&k) => kinds.push(k),
                Some(_) => {}
                None if JOB_EVENTS.contains(&name.as_str()) => errors.add(
                    "event_types",
                    format!("\"{name}\": Herald runs no jobs, so no job events fire."),
                ),
                None => errors.add(
                    "event_types",
                    format!("\"{name}\" is not a valid choice: use object_created, object_updated or object_deleted."),
                ),
            }
        }
        self.event_types = kinds;
    }

    fn check(&self, catalog: &Catalog, errors: &mut FieldErrors) {
        let has = |e: &FieldErrors, f: &str| e.0.contains_key(f);
        errors.check_name_and_description(&self.name, &self.description);
        if !has(errors, "object_types") {
            if self.object_types.is_empty() {
                errors.add("object_types", "This list may not be empty.");
            }
            super::check_event_types(catalog, "object_types", &self.object_types, errors);
        }
        if !has(errors, "event_types") && self.event_types.is_empty() {
            errors.add("event_types", "This list may not be empty.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_their_fields_and_match_their_events() {
        let c = Catalog::builtin();
        let bad = json!({"name": "", "object_types": ["dcim.nothing"], "event_types": ["job_started", "moved"],
                         "action_type": "script", "action_object_type": "extras.script", "custom_fields": {"x": 1},
                         "color": "red"});
        let err = EventRule::blank().apply(&bad, &c, false).unwrap_err().into_value();
        for f in [
            "name",
            "object_types",
            "event_types",
            "action_type",
            "action_object_type",
            "action_object_id",
            "custom_fields",
            "color",
        ] {
            assert!(err.get(f).is_some(), "{f} missing in {err}");
        }
        let ok = json!({"name": "r", "object_types": ["dcim.site", "dcim.rack"],
                        "event_types": ["object_created", "object_deleted"], "action_type": "webhook",
                        "action_object_type": "extras.webhook", "action_object_id": 3, "tags": []});
        let rule = EventRule::blank().apply(&ok, &c, false).unwrap();
        assert_eq!(rule.event_types, [EventKind::Created, EventKind::Deleted]);
        // NetBox 3.7's names for the same fields.
        let old = json!({"name": "r", "content_types": ["dcim.site"], "type_create": true, "type_delete": true,
                         "action_type": "webhook", "action_object_type": "extras.webhook", "action_object_id": 3});
        let same = EventRule::blank().apply(&old, &c, false).unwrap();
        assert_eq!(
            (same.object_types.clone(), same.event_types.clone()),
            (vec!["dcim.site".to_string()], rule.event_types.clone())
        );
        let shown = same.to_json("", None, json!([]));
        assert_eq!(
            (shown["type_create"].clone(), shown["type_update"].clone()),
            (json!(true), json!(false))
        );
        let event = |kind, object_type: &str| Event {
            id: 0,
            kind,
            timestamp: String::new(),
            object_type: object_type.into(),
            username: String::new(),
            request_id: String::new(),
            data: json!({}),
            snapshots: json!({}),
            request: None,
            body: None,
            batch: None,
        };
        assert!(rule.matches(&event(EventKind::Created, "dcim.rack")));
        assert!(!rule.matches(&event(EventKind::Updated, "dcim.rack")));
        assert!(!rule.matches(&event(EventKind::Created, "dcim.device")));
        let off = rule.apply(&json!({"enabled": false}), &c, true).unwrap();
        assert!(!off.matches(&event(EventKind::Created, "dcim.site")));
        assert_eq!(
            off.to_json("", None, json!([]))["event_types"],
            json!(["object_created", "object_deleted"])
        );
    }
}
