//! Records delivery outcomes as they come, many per transaction (group commit).

use crate::queue::Outcome;
use crate::store::{Store, StoreError};
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

/// Starts a recorder writing to `store`; outcomes go in through the sender.
pub fn start(store: Arc<dyn Store>) -> (mpsc::UnboundedSender<Outcome>, Handle) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(Pending::default());
    let task = tokio::spawn(run(store, rx, pending.clone()));
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

async fn run(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Outcome>, pending: Arc<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let outcomes: Arc<[Outcome]> = std::mem::take(&mut batch).into();
        record_outcomes(store.as_ref(), outcomes.clone()).await;
        pending.count.fetch_sub(outcomes.len(), Ordering::SeqCst);
        pending.done.notify_waiters();
    }
}

/// Writes one batch, retrying a few times; a delivery deleted while it was in flight has its
/// outcome dropped and the rest written.
pub async fn record_outcomes(store: &dyn Store, outcomes: Arc<[Outcome]>) {
    let mut outcomes = outcomes;
    for tries in 1..=TRIES {
        let failure = match store.complete(outcomes.clone(), Utc::now()).await {
            Ok(()) => return,
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
