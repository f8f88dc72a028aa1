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
pub struct Outbox {
    cache: Mutex<Option<Cached>>,
    /// Events one batched delivery carries at most.
    max_batch: usize,
}

impl Outbox {
    pub fn new(max_batch: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            cache: Mutex::new(None),
            max_batch,
        })
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
                let recorded = enqueue(
                    tx,
                    &matcher,
                    outbox.max_batch,
                    &written.events,
                    req.now,
                    Unmatched::Skip,
                )
                .await?;
                let queued = recorded.iter().map(|r| r.deliveries).sum();
                Ok(Committed { written, queued })
            })
        })
        .await
    }

    /// Stores events and one delivery per matching webhook, in one transaction; with `intake`,
    /// events posted before (by their keys) are answered with the first events' ids and queue
    /// nothing. Two requests racing with one key: the second fails with `Unique` and, run
    /// again, finds the first's.
    pub async fn record_events(
        self: &Arc<Self>,
        store: &dyn Store,
        events: Vec<Event>,
        intake: Option<Intake>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let (outbox, events, intake) = (self.clone(), Arc::new(events), Arc::new(intake));
        let written = in_write_tx(store, move |tx| {
            let (outbox, events, intake) = (outbox.clone(), events.clone(), intake.clone());
            Box::pin(async move {
                let matcher = outbox.matcher(tx).await?;
                match intake.as_ref() {
                    None => Ok(enqueue(tx, &matcher, outbox.max_batch, &events, now, Unmatched::Keep).await?),
                    Some(intake) => Ok(enqueue_once(tx, &matcher, outbox.max_batch, &events, intake, now).await?),
                }
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

/// How posted events are known again: by each event's key, or by one key for the request
/// (an `Idempotency-Key`); keys are remembered from `since` on.
#[derive(Debug, Clone)]
pub struct Intake {
    pub keys: IntakeKeys,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum IntakeKeys {
    /// One per event, in order.
    PerEvent(Vec<String>),
    /// One for all the request's events.
    Request(String),
}

/// The event ids remembered for `keys` since `since`.
async fn remembered(
    tx: &mut dyn WriteTx,
    keys: &[&str],
    since: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, Vec<i64>>, StoreError> {
    let st: &mut dyn crate::store::exec::Tx = tx;
    let q = crate::store::statements::intake_remembered(st.dialect(), keys, since);
    let rows = st
        .rows(&q, |r| {
            Ok((
                r.text("key")?,
                crate::store::rows::parse_json::<Vec<i64>>(&r.text("event_ids")?)?,
            ))
        })
        .await?;
    Ok(rows.into_iter().collect())
}

/// Remembers `key` for `ids`, over a key older than `since`; `Unique` when a fresh one holds
/// it (another request took it first).
async fn remember(
    tx: &mut dyn WriteTx,
    key: &str,
    ids: &[i64],
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Result<(), StoreError> {
    let st: &mut dyn crate::store::exec::Tx = tx;
    let ids = crate::store::rows::json_arg(&ids)?;
    let q = crate::store::statements::intake_remember(st.dialect(), key, ids, now, since);
    if st.exec(&q).await? == 0 {
        return Err(StoreError::Unique(crate::store::Unique {
            record: "posted event",
            fields: &["key"],
        }));
    }
    Ok(())
}

/// `enqueue`, each event (or the request) only once within the intake window.
async fn enqueue_once(
    tx: &mut dyn WriteTx,
    matcher: &Matcher,
    max_batch: usize,
    events: &[Event],
    intake: &Intake,
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, StoreError> {
    let duplicate = |event_id| Recorded {
        event_id,
        deliveries: 0,
        duplicate: true,
    };
    match &intake.keys {
        IntakeKeys::Request(key) => {
            if let Some(ids) = remembered(tx, &[key], intake.since).await?.remove(key) {
                return Ok(ids.into_iter().map(duplicate).collect());
            }
            let recorded = enqueue(tx, matcher, max_batch, events, now, Unmatched::Keep).await?;
            let ids: Vec<i64> = recorded.iter().map(|r| r.event_id).collect();
            remember(tx, key, &ids, now, intake.since).await?;
            Ok(recorded)
        }
        IntakeKeys::PerEvent(keys) => {
            let listed: Vec<&str> = keys.iter().map(String::as_str).collect();
            let seen = remembered(tx, &listed, intake.since).await?;
            // The events not seen before, each key once (a list may repeat one).
            let mut fresh: Vec<(usize, &str)> = Vec::new();
            for (i, key) in listed.iter().enumerate() {
                if !seen.contains_key(*key) && !fresh.iter().any(|(_, k)| k == key) {
                    fresh.push((i, key));
                }
            }
            let new_events: Vec<Event> = fresh.iter().map(|(i, _)| events[*i].clone()).collect();
            let recorded = enqueue(tx, matcher, max_batch, &new_events, now, Unmatched::Keep).await?;
            let mut first: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
            for ((_, key), r) in fresh.iter().zip(&recorded) {
                remember(tx, key, &[r.event_id], now, intake.since).await?;
                first.insert(key, r.event_id);
            }
            let mut out = Vec::with_capacity(keys.len());
            let mut new = recorded.into_iter();
            for (i, key) in listed.iter().enumerate() {
                if fresh.iter().any(|(j, _)| *j == i) {
                    out.extend(new.next());
                } else if let Some(ids) = seen.get(*key) {
                    out.push(duplicate(ids.first().copied().unwrap_or_default()));
                } else {
                    out.push(duplicate(first.get(key).copied().unwrap_or_default()));
                }
            }
            Ok(out)
        }
    }
}

/// Stores each event that a webhook matches (or every event, with `Unmatched::Keep`) and one
/// queued delivery per matching webhook, in the caller's transaction.
pub async fn enqueue(
    tx: &mut dyn WriteTx,
    matcher: &Matcher,
    max_batch: usize,
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
    let batches = crate::queue::gather_batches(&mut stored, max_batch);
    let listed: Vec<(&Event, &[Firing])> = stored.iter().map(|(e, w)| (*e, w.as_slice())).collect();
    let ids = tx.queue_events(&listed, &batches, now).await?;
    Ok(ids
        .into_iter()
        .zip(&stored)
        .enumerate()
        .map(|(i, (event_id, (_, webhooks)))| Recorded {
            event_id,
            deliveries: webhooks.len() + batches.iter().filter(|b| b.head == i).count(),
            duplicate: false,
        })
        .collect())
}
