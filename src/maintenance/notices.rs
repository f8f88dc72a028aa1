//! Operator notices: what Herald tells whoever runs it about webhooks in trouble
//! (`webhook.failing`, `webhook.disabled`, `webhook.recovered`, `delivery.failed`), sent through
//! its own queue like any delivery (retried, logged, signed) to `[notices] url`. They go by a
//! webhook of Herald's own, out of the API's sight (its name starts with a space, which no
//! name the API takes does), with no template: each notice's JSON is its body.

use crate::config::NoticesConfig;
use crate::events::{netbox_timestamp, Event, EventKind};
use crate::store::{Store, StoreError, WriteError};
use crate::webhooks::{Firing, Webhook};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

/// The name of the webhook notices go by.
pub const WEBHOOK_NAME: &str = " herald notices";

/// Whether `w` is Herald's own (notices), not one of the operator's.
pub fn is_own(w: &Webhook) -> bool {
    w.name == WEBHOOK_NAME
}

/// A notice's subject: the webhook it is about.
#[derive(Debug, Clone)]
pub struct About {
    pub webhook_id: i64,
    pub name: String,
    pub last_error: Option<String>,
    pub consecutive_failures: Option<i64>,
    pub failing_since: Option<DateTime<Utc>>,
}

/// Sends notices, when they are configured.
pub struct Notices {
    webhook_id: i64,
    base_url: String,
}

impl Notices {
    /// Readies the notices' webhook for `config` (made, or changed to match it); `None` when
    /// no notices are configured.
    pub async fn ensure(store: &dyn Store, config: &NoticesConfig) -> Result<Option<Arc<Notices>>, StoreError> {
        let existing = store.webhooks().await?.into_iter().find(is_own);
        if config.url.is_empty() {
            // Notices turned off: what is queued for them goes no further.
            if let Some(mut old) = existing.filter(|w| w.enabled) {
                old.enabled = false;
                store.update_webhooks(vec![old], Utc::now()).await?;
            }
            return Ok(None);
        }
        let mut w = existing.clone().unwrap_or_else(Webhook::blank);
        w.name = WEBHOOK_NAME.into();
        w.description = "Herald's notices to its operator ([notices] in the configuration)".into();
        w.payload_url = config.url.clone();
        w.secret = config.secret.clone();
        w.enabled = true;
        let now = Utc::now();
        let saved = match existing {
            Some(old) if old == w => old,
            Some(_) => store.update_webhooks(vec![w], now).await?.remove(0),
            None => store.create_webhooks(vec![w], now).await?.remove(0),
        };
        Ok(Some(Arc::new(Notices {
            webhook_id: saved.id,
            base_url: config.base_url.trim_end_matches('/').to_string(),
        })))
    }

    /// `path` on Herald, for a notice's links (absolute when `base_url` is set).
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Whether a webhook is the notices' own (their failures are not noticed again).
    pub fn sends_by(&self, webhook_id: i64) -> bool {
        self.webhook_id == webhook_id
    }

    /// The notice `kind` about `about`, with `extra` keys, as the event its delivery carries.
    fn event(&self, kind: &str, about: &About, extra: Value, now: DateTime<Utc>) -> Event {
        let base = &self.base_url;
        let id = about.webhook_id;
        let mut body = json!({
            "event": kind,
            "timestamp": netbox_timestamp(now),
            "webhook": {"id": id, "name": about.name, "url": format!("{base}/api/extras/webhooks/{id}/")},
            "last_error": about.last_error,
            "consecutive_failures": about.consecutive_failures,
            "failing_since": about.failing_since.map(netbox_timestamp),
            "links": {
                "webhook": format!("{base}/extras/webhooks/{id}/"),
                "deliveries": format!("{base}/extras/deliveries/?webhook_id={id}"),
            },
        });
        if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
            b.extend(x);
        }
        let text = crate::python::json::dumps(&body);
        Event {
            id: 0,
            kind: EventKind::Updated,
            timestamp: netbox_timestamp(now),
            object_type: "extras.webhook".into(),
            username: "herald".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            data: json!({"id": id, "name": about.name}),
            snapshots: json!({"prechange": null, "postchange": null}),
            request: None,
            body: Some(text),
            batch: None,
        }
    }

    /// Queues the notice `kind` about `about`: in the same transaction as `when` (a statement
    /// that must touch a row for the notice to go: one worker of a fleet wins it), or alone.
    /// Returns whether it went.
    pub async fn send(
        self: &Arc<Self>,
        store: &dyn Store,
        kind: &'static str,
        about: About,
        extra: Value,
        when: Option<crate::store::sql::Sql>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let event = Arc::new(self.event(kind, &about, extra, now));
        let (when, firing) = (
            Arc::new(when),
            Firing {
                webhook_id: self.webhook_id,
                event_rule_id: None,
                batch: false,
            },
        );
        let sent = crate::store::in_write_tx(store, move |tx| {
            let (event, when) = (event.clone(), when.clone());
            Box::pin(async move {
                if let Some(q) = when.as_ref() {
                    let st: &mut dyn crate::store::exec::Tx = tx;
                    if st.exec(q).await? == 0 {
                        return Ok(false);
                    }
                }
                tx.insert_events(&[(event.as_ref(), std::slice::from_ref(&firing))], now)
                    .await?;
                Ok(true)
            })
        })
        .await;
        sent.map_err(|e| match e {
            WriteError::Store(e) => e,
            other => StoreError::Other(anyhow::anyhow!("queueing a notice failed: {other}")),
        })
    }
}
