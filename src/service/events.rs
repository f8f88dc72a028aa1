//! Events from outside Herald (a NetBox forwarding its webhooks): checked, stored and queued
//! for every matching webhook in one transaction.

use super::{require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor};
use crate::events::ingest;
use crate::queue::Recorded;
use chrono::Utc;
use hmac::digest::MacError;
use serde_json::Value;

impl Services {
    /// Whether `signature` (hex HMAC-SHA512 of `body`) is right for the ingest secret; always
    /// when no secret is set.
    pub fn check_ingest_signature(&self, body: &[u8], signature: Option<&str>) -> Result<()> {
        let secret = &self.config.ingest.secret;
        if secret.is_empty() {
            return Ok(());
        }
        let given = signature.map(|s| s.trim()).unwrap_or("");
        verify(secret, body, given).map_err(|_| {
            Error::BadRequest(
                "X-Hook-Signature is missing or wrong: send the hex HMAC-SHA512 of the body keyed by the ingest secret."
                    .into(),
            )
        })
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

/// Compares in constant time, through the MAC itself.
fn verify(secret: &str, body: &[u8], given_hex: &str) -> Result<(), MacError> {
    use hmac::{Hmac, Mac};
    let given = hex::decode(given_hex).map_err(|_| MacError)?;
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).map_err(|_| MacError)?;
    mac.update(body);
    mac.verify_slice(&given)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::request::sign;

    #[test]
    fn signatures_are_checked_by_the_mac() {
        let sig = sign("s3cr3t", b"{}");
        assert!(verify("s3cr3t", b"{}", &sig).is_ok());
        assert!(verify("s3cr3t", b"{}", &sig.to_uppercase()).is_ok());
        assert!(verify("other", b"{}", &sig).is_err());
        assert!(verify("s3cr3t", b"{ }", &sig).is_err());
        assert!(verify("s3cr3t", b"{}", "not hex").is_err());
    }
}
