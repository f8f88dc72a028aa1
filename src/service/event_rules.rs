//! Event rules: listing with filters, creating and changing them (all or none of a list, each
//! item's errors reported), deleting them. A rule's webhook must exist when it is saved.

use super::filters::{Given, Kind, Param, Spec};
use super::webhooks::{all_or_errors, TextFilter};
use super::{require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor};
use crate::events::EventKind;
use crate::page::Page;
use crate::webhooks::event_rule::{ACTION_OBJECT_TYPE, ACTION_TYPE};
use crate::webhooks::{EventRule, Webhook};
use chrono::Utc;
use serde_json::{json, Value};

/// Filters of the event rule list (NetBox's). Empty lists do not filter; all must hold.
#[derive(Debug, Clone, Default)]
pub struct EventRuleFilter {
    pub id: Vec<i64>,
    pub name: Vec<TextFilter>,
    pub description: Vec<TextFilter>,
    pub enabled: Option<bool>,
    /// Rules that fire on any of these types.
    pub object_type: Vec<String>,
    /// Rules that fire on any of these kinds.
    pub event_type: Vec<EventKind>,
    /// Rules that fire any of these webhooks.
    pub action_object_id: Vec<i64>,
    /// Rules whose action is one of these (every rule of Herald's fires a webhook).
    pub action_type: Vec<String>,
    /// Rules whose action's object is of one of these types (every one is `extras.webhook`).
    pub action_object_type: Vec<String>,
    /// Part of the name or description, any case.
    pub q: Option<String>,
}

/// What the event rule list may be filtered by.
pub static FILTERS: Spec = Spec {
    list: "event rules",
    params: &[
        Param {
            name: "id",
            kind: Kind::Ints,
        },
        Param {
            name: "name",
            kind: Kind::Lookups,
        },
        Param {
            name: "description",
            kind: Kind::Lookups,
        },
        Param {
            name: "enabled",
            kind: Kind::Bool,
        },
        Param {
            name: "object_type",
            kind: Kind::Texts,
        },
        Param {
            name: "event_type",
            kind: Kind::Choice(&["object_created", "object_updated", "object_deleted"]),
        },
        Param {
            name: "action_type",
            kind: Kind::Choice(&["webhook", "script", "notification"]),
        },
        Param {
            name: "action_object_type",
            kind: Kind::Texts,
        },
        Param {
            name: "action_object_id",
            kind: Kind::Ints,
        },
        Param {
            name: "q",
            kind: Kind::Texts,
        },
    ],
};

impl EventRuleFilter {
    /// The filter `given` names (and `also`, which the caller reads itself).
    pub fn read(given: &Given, also: &[&str]) -> Result<EventRuleFilter> {
        let r = FILTERS.read(given, also)?;
        let event_type = r
            .choices("event_type")?
            .iter()
            .filter_map(|name| name.strip_prefix("object_").and_then(EventKind::parse))
            .collect();
        Ok(EventRuleFilter {
            id: r.ints("id")?,
            name: r.lookups("name"),
            description: r.lookups("description"),
            enabled: r.bool("enabled")?,
            object_type: r.texts("object_type"),
            event_type,
            action_object_id: r.ints("action_object_id")?,
            action_type: r.choices("action_type")?,
            action_object_type: r.texts("action_object_type"),
            q: r.text("q"),
        })
    }

    fn matches(&self, r: &EventRule) -> bool {
        let q = self.q.as_ref().map(|s| s.to_lowercase());
        let of_webhooks = (self.action_type.is_empty() || self.action_type.iter().any(|t| t == ACTION_TYPE))
            && (self.action_object_type.is_empty() || self.action_object_type.iter().any(|t| t == ACTION_OBJECT_TYPE));
        of_webhooks
            && (self.id.is_empty() || self.id.contains(&r.id))
            && self.name.iter().all(|f| f.matches(&r.name))
            && self.description.iter().all(|f| f.matches(&r.description))
            && self.enabled.is_none_or(|b| b == r.enabled)
            && (self.object_type.is_empty() || r.object_types.iter().any(|t| self.object_type.contains(t)))
            && (self.event_type.is_empty() || r.event_types.iter().any(|k| self.event_type.contains(k)))
            && (self.action_object_id.is_empty() || self.action_object_id.contains(&r.webhook_id))
            && q.is_none_or(|s| r.name.to_lowercase().contains(&s) || r.description.to_lowercase().contains(&s))
    }
}

impl Services {
    /// One page of the rules matching `filter`, by name. Rules are configuration-sized:
    /// filtering in memory keeps every filter simple.
    pub async fn event_rules(
        &self,
        actor: &Actor,
        filter: &EventRuleFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Page<EventRule>> {
        require(actor, types::EVENT_RULE, Action::View)?;
        let all: Vec<EventRule> = self
            .store
            .event_rules()
            .await?
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect();
        Ok(Page::of(all, limit, offset))
    }

    pub async fn event_rule(&self, actor: &Actor, id: i64) -> Result<EventRule> {
        require(actor, types::EVENT_RULE, Action::View)?;
        self.store.event_rules_by_id(&[id]).await?.pop().ok_or(Error::NotFound)
    }

    /// The webhooks these rules fire, in the brief form a rule shows (`{id, url, display,
    /// name, description}`), for those who may see webhooks; none for others.
    pub async fn rule_webhooks(&self, actor: &Actor, rules: &[EventRule], base: &str) -> Result<Vec<(i64, Value)>> {
        if !actor.can(types::WEBHOOK, Action::View) {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = rules.iter().map(|r| r.webhook_id).collect();
        let webhooks = self.operator_webhooks(&ids).await?;
        Ok(webhooks.iter().map(|w| (w.id, brief_webhook(w, base))).collect())
    }

    /// `body` over `base`, checked: NetBox's rules, and the webhook it fires exists.
    async fn check_event_rule(&self, base: EventRule, body: &Value, partial: bool) -> Result<EventRule> {
        let tags = self.resolve_tags(body).await?;
        let mut rule = base
            .apply(body, &self.catalog, partial)
            .map_err(|e| Error::Validation(e.into_value()))?;
        if let Some(tags) = tags {
            rule.tags = tags;
        }
        if self.operator_webhooks(&[rule.webhook_id]).await?.is_empty() {
            return Err(Error::field(
                "action_object_id",
                format!("Webhook {} does not exist.", rule.webhook_id),
            ));
        }
        Ok(rule)
    }

    /// Creates rules from `items` (all or none); `bulk` when they came as a list.
    pub async fn create_event_rules(&self, actor: &Actor, items: Vec<Value>, bulk: bool) -> Result<Vec<EventRule>> {
        require(actor, types::EVENT_RULE, Action::Add)?;
        let mut checked = Vec::with_capacity(items.len());
        for item in &items {
            checked.push(self.check_event_rule(EventRule::blank(), item, false).await);
        }
        let rules = all_or_errors(checked, bulk)?;
        Ok(self.store.create_event_rules(rules, Utc::now()).await?)
    }

    /// Changes rules: `(id, body)` each, all or none; `partial` for PATCH.
    pub async fn update_event_rules(
        &self,
        actor: &Actor,
        changes: Vec<(i64, Value)>,
        partial: bool,
        bulk: bool,
    ) -> Result<Vec<EventRule>> {
        require(actor, types::EVENT_RULE, Action::Change)?;
        let ids: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
        let current = self.store.event_rules_by_id(&ids).await?;
        let mut checked = Vec::with_capacity(changes.len());
        for (id, body) in &changes {
            checked.push(match current.iter().find(|r| r.id == *id) {
                Some(r) => self.check_event_rule(r.clone(), body, partial).await,
                None => Err(Error::NotFound),
            });
        }
        let updated = all_or_errors(checked, bulk)?;
        Ok(self.store.update_event_rules(updated, Utc::now()).await?)
    }

    /// Deletes rules, all or none; the deliveries they queued stay.
    pub async fn delete_event_rules(&self, actor: &Actor, ids: &[i64]) -> Result<()> {
        require(actor, types::EVENT_RULE, Action::Delete)?;
        Ok(self.store.delete_event_rules(ids).await?)
    }
}

/// A webhook as a rule's `action_object` shows it (NetBox 4's brief webhook).
fn brief_webhook(w: &Webhook, base: &str) -> Value {
    json!({
        "id": w.id,
        "url": format!("{base}/api/extras/webhooks/{}/", w.id),
        "display": w.name,
        "name": w.name,
        "description": w.description,
    })
}
