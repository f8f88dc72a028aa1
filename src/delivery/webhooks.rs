//! The worker's copy of the webhooks (as stored, and what their text says of their requests:
//! nothing is compiled here, the sandbox compiles) and what it knows of their destinations:
//! per-destination slots, and how claims share them.

use super::Worker;
use crate::queue::ClaimLimits;
use crate::sync::lock;
use crate::webhooks::request::Plain;
use crate::webhooks::Webhook;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::error;

/// A webhook, and what its text says of its requests.
pub(super) struct Prepared {
    pub webhook: Webhook,
    pub plain: Plain,
    /// `host:port` when the URL's template cannot change it.
    pub destination: Option<String>,
}

impl Worker {
    /// The slots of a destination.
    pub(super) fn slots(&self, destination: &str) -> Arc<Semaphore> {
        lock(&self.destinations)
            .entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_destination_concurrency)))
            .clone()
    }

    /// What one claim may take: no more of a webhook than its destination has free slots, so
    /// a slow receiver's deliveries never sit on worker slots waiting for their own.
    pub(super) fn claim_limits(&self, total: usize, webhooks: Vec<i64>) -> ClaimLimits {
        let cap = self.config.per_destination_concurrency;
        let cache = lock(&self.cache);
        let map = lock(&self.destinations);
        // Webhooks sharing a destination share its free slots: split them, turn by turn.
        let mut by_destination: HashMap<&str, Vec<i64>> = HashMap::new();
        for p in cache.values() {
            if let Some(d) = &p.destination {
                by_destination.entry(d.as_str()).or_default().push(p.webhook.id);
            }
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut per_webhook = HashMap::new();
        for (destination, mut ids) in by_destination {
            ids.sort_unstable();
            let free = map.get(destination).map_or(cap, |s| s.available_permits());
            let n = ids.len();
            for (i, id) in ids.into_iter().enumerate() {
                let extra = usize::from((i + turn) % n < free % n);
                per_webhook.insert(id, free / n + extra);
            }
        }
        let ordered = cache
            .values()
            .filter(|p| p.webhook.ordered)
            .map(|p| p.webhook.id)
            .collect();
        ClaimLimits {
            total,
            webhooks,
            webhook_default: cap,
            per_webhook,
            ordered,
        }
    }

    /// Lists the webhooks (id and version, one light read) and reloads them when any was
    /// added, changed or removed, so every claim knows each webhook's destination and every
    /// send uses the webhook as it is now. Returns the ids to claim for.
    pub(super) async fn sync_webhooks(&self) -> Vec<i64> {
        let versions = match self.store.webhook_versions().await {
            Ok(v) => v,
            Err(e) => {
                error!(error = ?e, "listing webhooks failed");
                return Vec::new();
            }
        };
        let stale = {
            let cache = lock(&self.cache);
            cache.len() != versions.len()
                || versions
                    .iter()
                    .any(|(id, at)| cache.get(id).is_none_or(|p| p.webhook.last_updated != *at))
        };
        if stale {
            match self.store.webhooks().await {
                Ok(all) => self.remember(all),
                Err(e) => error!(error = ?e, "loading webhooks failed"),
            }
        }
        versions.into_iter().map(|(id, _)| id).collect()
    }

    /// Caches exactly `webhooks`, reading those that are new or changed.
    fn remember(&self, webhooks: Vec<Webhook>) {
        let mut cache = lock(&self.cache);
        let mut fresh = HashMap::with_capacity(webhooks.len());
        for w in webhooks {
            let kept = cache.get(&w.id).filter(|p| p.webhook == w).cloned();
            let prepared = kept.unwrap_or_else(|| {
                if cache
                    .get(&w.id)
                    .is_some_and(|p| p.webhook.ca_file_path != w.ca_file_path)
                {
                    self.clients.clear();
                }
                Arc::new(Prepared {
                    plain: Plain::of(&w),
                    destination: super::send::static_destination(&w.payload_url),
                    webhook: w,
                })
            });
            fresh.insert(prepared.webhook.id, prepared);
        }
        *cache = fresh;
    }
}
