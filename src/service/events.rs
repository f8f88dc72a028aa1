//! Events from outside Herald (a NetBox forwarding its webhooks): checked, stored and queued
//! for every matching webhook in one transaction.

use super::{require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor};
use crate::events::ingest;
use crate::events::Event;
use crate::outbox::{Intake, IntakeKeys};
use crate::queue::Recorded;
use crate::webhooks::signature;
use chrono::Utc;
use serde_json::Value;

impl Services {
    /// Whether `signature` (hex HMAC-SHA512 of `body`) is right for the ingest secret; always
    /// when no secret is set.
    pub fn check_ingest_signature(&self, body: &[u8], signature: Option<&str>) -> Result<()> {
        let secret = &self.config.ingest.secret;
        if secret.is_empty() {
            return Ok(());
        }
        if signature::netbox_valid(secret, body, signature.unwrap_or("")) {
            return Ok(());
        }
        Err(Error::BadRequest(format!(
            "{} is missing or wrong: send the hex HMAC-SHA512 of the body keyed by the ingest secret.",
            signature::NETBOX
        )))
    }

    /// Records the events of a NetBox-shaped body (one or a list); fields it leaves out come
    /// from the caller and the request.
    /// `raw` is the body as received, kept for the events that came whole (`Event::body`).
    pub async fn record_events(
        &self,
        actor: &Actor,
        body: Value,
        raw: &[u8],
        request_id: &str,
    ) -> Result<Vec<Recorded>> {
        self.record_events_once(actor, body, raw, request_id, None).await
    }

    /// `record_events`, each event only once within `ingest.dedup_window_secs`: an event NetBox
    /// posted before (the same object type, object id, event and `request_id`; the same body
    /// when it has no request id) is answered with the first one's id and queues nothing. With
    /// an `Idempotency-Key`, the whole request is known by it instead.
    pub async fn record_events_once(
        &self,
        actor: &Actor,
        body: Value,
        raw: &[u8],
        request_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Recorded>> {
        require(actor, types::EVENT, Action::Add)?;
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
                return Err(Error::BadRequest(
                    "Idempotency-Key must be 1 to 255 characters, with no control characters.".into(),
                ));
            }
        }
        let now = Utc::now();
        let defaults = ingest::Defaults {
            username: &actor.user.username,
            now,
            request_id,
        };
        let events = ingest::parse(body, raw, &self.catalog, &defaults).map_err(Error::Validation)?;
        let window = self.config.ingest.dedup_window_secs;
        let intake = (window > 0).then(|| Intake {
            keys: match idempotency_key {
                Some(key) => IntakeKeys::Request(format!("request:{key}")),
                None => IntakeKeys::PerEvent(events.iter().map(|e| intake_key(e, request_id)).collect()),
            },
            since: now - chrono::Duration::seconds(window as i64),
        });
        let record = || {
            self.outbox
                .record_events(self.store.as_ref(), events.clone(), intake.clone(), now)
        };
        let recorded = match record().await {
            // Another request took a key first: run again, and find its events.
            Err(crate::store::StoreError::Unique(_)) => record().await?,
            done => done?,
        };
        let duplicates = recorded.iter().filter(|r| r.duplicate).count();
        self.metrics.ingested("duplicate", duplicates);
        self.metrics.ingested("relay", recorded.len() - duplicates);
        Ok(recorded)
    }
}

/// How a posted event is known again: its type, object, event and `request_id` (NetBox's own
/// retry of one webhook repeats all four); the body, when it gave no request id (`defaulted`,
/// this request's own, was filled in).
fn intake_key(e: &Event, defaulted: &str) -> String {
    use sha2::Digest;
    if e.request_id != defaulted {
        let object = e.object_id().map_or_else(|| "-".to_string(), |id| id.to_string());
        return format!("event:{}:{object}:{}:{}", e.object_type, e.kind.as_str(), e.request_id);
    }
    let text = match &e.body {
        Some(body) => body.clone(),
        None => format!("{} {} {}", e.object_type, e.kind.as_str(), e.data),
    };
    format!("body:{}", hex::encode(sha2::Sha256::digest(text.as_bytes())))
}
