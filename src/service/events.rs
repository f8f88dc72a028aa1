//! Events from outside Herald (a NetBox forwarding its webhooks): checked, stored and queued
//! for every matching webhook in one transaction.

use super::{require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor};
use crate::events::ingest;
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
        require(actor, types::EVENT, Action::Add)?;
        let defaults = ingest::Defaults {
            username: &actor.user.username,
            now: Utc::now(),
            request_id,
        };
        let events = ingest::parse(body, raw, &self.catalog, &defaults).map_err(Error::Validation)?;
        Ok(self
            .outbox
            .record_events(self.store.as_ref(), events, Utc::now())
            .await?)
    }
}
