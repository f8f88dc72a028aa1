//! The outbox: a change and the deliveries it causes are written in one transaction. For
//! object writes: the enabled webhooks are matched, the objects written (`objects::engine`),
//! their changes recorded, and one event per object queued with a delivery per matching
//! webhook. Events posted from outside (`/api/extras/events/`) go the same way. Written once,
//! over any backend's `WriteTx`.

use crate::catalog::Catalog;
use crate::error::WriteError;
use crate::events::Event;
use crate::objects::engine::{self, WriteRequest, Written};
use crate::queue::Recorded;
use crate::store::{in_write_tx, Store, StoreError, TriggerVersions, WriteTx};
use crate::webhooks::{Firing, Matcher};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// What to do with an event no webhook matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Store it anyway: events posted to the API are answered with their ids.
    Keep,
    /// Leave it out: an object change is in the change log already.
    Skip,
}

/// What an object write committed.
#[derive(Debug)]
pub struct Committed {
    pub written: Written,
    /// Deliveries queued.
    pub queued: usize,
}

/// Enabled webhooks' and event rules' versions, and the matcher built from them.
type Cached = (TriggerVersions, Arc<Matcher>);

/// Writes changes with their deliveries. Keeps the webhook matcher (conditions compiled) from
/// one transaction to the next while no enabled webhook changed.
#[derive(Default)]
pub struct Outbox {
    cache: Mutex<Option<Cached>>,
}

impl Outbox {
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    /// Applies one API request's object writes in one transaction: objects, their changes,
    /// one event per object touched and the deliveries of matching webhooks; nothing on error.
    pub async fn write_objects(
        self: &Arc<Self>,
        store: &dyn Store,
        catalog: Arc<Catalog>,
        req: WriteRequest,
    ) -> Result<Committed, WriteError> {
        let (outbox, req) = (self.clone(), Arc::new(req));
        in_write_tx(store, move |tx| {
            let (outbox, catalog, req) = (outbox.clone(), catalog.clone(), req.clone());
            Box::pin(async move {
                let matcher = outbox.matcher(tx).await?;
                let written = engine::apply(&catalog, tx, &req).await?;
                tx.add_changes(&written.changes).await?;
                let recorded = enqueue(tx, &matcher, &written.events, req.now, Unmatched::Skip).await?;
                let queued = recorded.iter().map(|r| r.deliveries).sum();
                Ok(Committed { written, queued })
            })
        })
        .await
    }

    /// Stores events and one delivery per matching webhook, in one transaction.
    pub async fn record_events(
        self: &Arc<Self>,
        store: &dyn Store,
        events: Vec<Event>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let (outbox, events) = (self.clone(), Arc::new(events));
        let written = in_write_tx(store, move |tx| {
            let (outbox, events) = (outbox.clone(), events.clone());
            Box::pin(async move {
                let matcher = outbox.matcher(tx).await?;
                Ok(enqueue(tx, &matcher, &events, now, Unmatched::Keep).await?)
            })
        })
        .await;
        written.map_err(|e| match e {
            WriteError::Store(e) => e,
            other => StoreError::Other(anyhow::anyhow!("recording events failed: {other}")),
        })
    }

    /// The matcher for the enabled webhooks this transaction sees: the cached one while their
    /// versions are unchanged, else built anew (conditions parsed once per version).
    async fn matcher(&self, tx: &mut dyn WriteTx) -> Result<Arc<Matcher>, StoreError> {
        let versions = tx.trigger_versions().await?;
        if let Some((seen, matcher)) = crate::sync::lock(&self.cache).as_ref() {
            if *seen == versions {
                return Ok(matcher.clone());
            }
        }
        let matcher = Arc::new(Matcher::new(
            tx.enabled_webhooks().await?,
            tx.enabled_event_rules().await?,
        ));
        *crate::sync::lock(&self.cache) = Some((versions, matcher.clone()));
        Ok(matcher)
    }
}

/// Stores each event that a webhook matches (or every event, with `Unmatched::Keep`) and one
/// queued delivery per matching webhook, in the caller's transaction.
pub async fn enqueue(
    tx: &mut dyn WriteTx,
    matcher: &Matcher,
    events: &[Event],
    now: DateTime<Utc>,
    unmatched: Unmatched,
) -> Result<Vec<Recorded>, StoreError> {
    let mut stored: Vec<(&Event, Vec<Firing>)> = Vec::with_capacity(events.len());
    for e in events {
        let firings: Vec<Firing> = matcher.matching(e).collect();
        if firings.is_empty() && unmatched == Unmatched::Skip {
            continue;
        }
        stored.push((e, firings));
    }
    let batch: Vec<(&Event, &[Firing])> = stored.iter().map(|(e, w)| (*e, w.as_slice())).collect();
    let ids = tx.insert_events(&batch, now).await?;
    Ok(ids
        .into_iter()
        .zip(&stored)
        .map(|(event_id, (_, webhooks))| Recorded {
            event_id,
            deliveries: webhooks.len(),
        })
        .collect())
}
