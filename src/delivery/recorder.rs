//! Records delivery outcomes as they come, many per transaction (group commit).

use crate::maintenance::notices::{About, Notices};
use crate::queue::{Outcome, Status};
use crate::store::{Store, StoreError};
use crate::webhooks::health;
use chrono::Utc;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::{error, warn};

/// Outcomes written per transaction at most.
const BATCH: usize = 256;
/// Tries to write a batch before leaving it to lease expiry (the deliveries are sent again).
const TRIES: u64 = 5;

/// The recorder's task, and how much it still has to write.
pub struct Handle {
    task: Mutex<Option<JoinHandle<()>>>,
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    done: Notify,
}

/// Starts a recorder writing to `store`; outcomes go in through the sender. With `notices`,
/// each delivery that used up its retries is noticed (`delivery.failed`).
pub fn start(store: Arc<dyn Store>, notices: Option<Arc<Notices>>) -> (mpsc::UnboundedSender<Outcome>, Handle) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(Pending::default());
    let task = tokio::spawn(run(store, notices, rx, pending.clone()));
    let handle = Handle {
        task: Mutex::new(Some(task)),
        pending,
    };
    (tx, handle)
}

impl Handle {
    /// Counts an outcome about to be sent in.
    pub fn sent(&self) {
        self.pending.count.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until every outcome sent in so far is written (or given up on).
    pub async fn flushed(&self) {
        loop {
            let done = self.pending.done.notified();
            if self.pending.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }

    /// Waits for the recorder to end (after every sender is dropped).
    pub async fn finish(&self) {
        let task = crate::sync::lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    notices: Option<Arc<Notices>>,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    pending: Arc<Pending>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let outcomes: Arc<[Outcome]> = std::mem::take(&mut batch).into();
        if let Some(written) = record_outcomes(store.as_ref(), outcomes.clone()).await {
            after(store.as_ref(), notices.as_ref(), &written).await;
        }
        pending.count.fetch_sub(outcomes.len(), Ordering::SeqCst);
        pending.done.notify_waiters();
    }
}

/// What written outcomes tell beyond their deliveries: each webhook's health, and the
/// deliveries that failed for good (noticed).
/// The failed deliveries a `delivery.failed` notice lists (it counts them all).
const NOTICED_DELIVERIES: usize = 20;

async fn after(store: &dyn Store, notices: Option<&Arc<Notices>>, written: &[Outcome]) {
    let notes = health::notes(written);
    if let Err(e) = store.note_health(&notes).await {
        warn!(error = ?e, "noting the webhooks' health failed");
    }
    let Some(notices) = notices else { return };
    let failed: Vec<&Outcome> = written
        .iter()
        .filter(|o| o.status == Status::Failed && o.webhook_id != 0 && !notices.sends_by(o.webhook_id))
        .collect();
    if failed.is_empty() {
        return;
    }
    let mut ids: Vec<i64> = failed.iter().map(|o| o.webhook_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let webhooks = store.webhooks_by_id(&ids).await.unwrap_or_default();
    // One notice per webhook per batch written: a receiver gone dark fails many deliveries at
    // once, and its operator needs to hear it once, with what failed.
    for id in ids {
        let theirs: Vec<&&Outcome> = failed.iter().filter(|o| o.webhook_id == id).collect();
        let about = About {
            webhook_id: id,
            name: webhooks
                .iter()
                .find(|w| w.id == id)
                .map_or_else(String::new, |w| w.name.clone()),
            last_error: theirs.last().and_then(|o| o.last_error.clone()),
            consecutive_failures: None,
            failing_since: None,
        };
        let listed: Vec<serde_json::Value> = theirs
            .iter()
            .take(NOTICED_DELIVERIES)
            .map(|o| {
                let path = format!("/api/extras/deliveries/{}/", o.delivery_id);
                serde_json::json!({"id": o.delivery_id, "url": notices.link(&path)})
            })
            .collect();
        let extra = serde_json::json!({"failed": theirs.len(), "deliveries": listed});
        if let Err(e) = notices.send(store, "delivery.failed", about, extra, None).await {
            warn!(error = ?e, webhook_id = id, "queueing a delivery.failed notice failed");
        }
    }
}

/// Writes one batch, retrying a few times; a delivery deleted while it was in flight has its
/// outcome dropped and the rest written. Returns what was written, or `None` when it gave up.
pub async fn record_outcomes(store: &dyn Store, outcomes: Arc<[Outcome]>) -> Option<Arc<[Outcome]>> {
    let mut outcomes = outcomes;
    for tries in 1..=TRIES {
        let failure = match store.complete(outcomes.clone(), Utc::now()).await {
            Ok(()) => return Some(outcomes),
            Err(StoreError::ForeignKey) => match alive(store, &outcomes).await {
                Ok(kept) => {
                    warn!(
                        dropped = outcomes.len() - kept.len(),
                        "deliveries were deleted while in flight; their outcomes are dropped"
                    );
                    outcomes = kept;
                    continue;
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        error!(error = ?failure, tries, "recording delivery outcomes failed");
        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
    }
    // The leases expire and the deliveries are sent again: at least once.
    error!(
        deliveries = outcomes.len(),
        "giving up recording outcomes; the deliveries will be sent again"
    );
    None
}

/// The outcomes whose deliveries still exist.
async fn alive(store: &dyn Store, outcomes: &[Outcome]) -> Result<Arc<[Outcome]>, StoreError> {
    let ids: Vec<i64> = outcomes.iter().map(|o| o.delivery_id).collect();
    let existing: HashSet<i64> = store.existing_deliveries(&ids).await?.into_iter().collect();
    Ok(outcomes
        .iter()
        .filter(|o| existing.contains(&o.delivery_id))
        .cloned()
        .collect())
}
