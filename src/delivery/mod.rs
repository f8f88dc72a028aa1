//! The delivery worker: claim due deliveries with a lease, commit, render and send each, then
//! record the outcomes in groups. No transaction is held across an HTTP call.

pub mod heartbeat;
pub mod retention;
pub mod send;

use crate::config::{RetentionConfig, WorkerConfig};
use crate::queue::{decide, parse_retry_after, Observed, Verdict};
use crate::store::{ClaimLimits, Claimed, Outcome, Status, Store};
use crate::webhooks::request::{BuildError, Compiled};
use crate::webhooks::Webhook;
use chrono::Utc;
use send::Clients;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};

/// A webhook with its templates compiled (or the compile error).
struct Prepared {
    webhook: Webhook,
    compiled: Result<Compiled, BuildError>,
    /// `host:port` when the URL's template cannot change it.
    destination: Option<String>,
}

/// Sends deliveries until cancelled.
pub struct Worker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    retention: RetentionConfig,
    wake: Arc<Notify>,
    running: Arc<AtomicBool>,
    clients: Clients,
    cache: Mutex<HashMap<i64, Arc<Prepared>>>,
    /// Per-destination slots.
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Deliveries claimed and not yet recorded.
    in_flight: Mutex<HashSet<i64>>,
    /// Notified when a send finishes, freeing a slot.
    freed: Notify,
    /// Turns the order in which webhooks sharing a destination get its spare slot.
    turn: AtomicUsize,
}

impl Worker {
    /// `wake` is notified whenever deliveries are committed; `running` is set while `run` runs.
    pub fn new(
        store: Arc<dyn Store>,
        config: WorkerConfig,
        retention: RetentionConfig,
        wake: Arc<Notify>,
        running: Arc<AtomicBool>,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            store,
            config,
            retention,
            wake,
            running,
            clients: Clients::default(),
            cache: Mutex::new(HashMap::new()),
            destinations: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            freed: Notify::new(),
            turn: AtomicUsize::new(0),
        })
    }

    /// Claims and sends until `cancel` fires; then stops claiming, gives in-flight sends
    /// `shutdown_grace_secs` to finish, records them, and puts the rest back in the queue.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.running.store(true, Ordering::SeqCst);
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let tracker = TaskTracker::new();
        let (tx, rx) = mpsc::unbounded_channel::<Outcome>();
        let recorder = tokio::spawn(record(self.store.clone(), rx));
        let beats = tokio::spawn(heartbeat::run(self.store.clone(), cancel.clone()));
        let purger = tokio::spawn(retention::run(
            self.store.clone(),
            self.retention.clone(),
            cancel.clone(),
        ));
        // Cancelled when the shutdown grace runs out: unfinished sends are dropped and released.
        let abandon = CancellationToken::new();
        info!(concurrency = self.config.concurrency, "delivery worker started");

        loop {
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = cancel.cancelled() => break,
            };
            let mut held = vec![first];
            while held.len() < self.config.batch_size {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            // Under load, slots free one at a time: gather a few (for 2 ms at most) so a claim,
            // a write transaction, serves many deliveries instead of one.
            let gather = (self.config.batch_size / 4).clamp(1, 32).min(self.config.concurrency);
            let until = tokio::time::Instant::now() + Duration::from_millis(2);
            while held.len() < gather && !self.lock_in_flight().is_empty() {
                match tokio::time::timeout_at(until, permits.clone().acquire_owned()).await {
                    Ok(Ok(p)) => held.push(p),
                    _ => break,
                }
            }
            let wanted = held.len();
            let webhooks = self.sync_webhooks().await;
            let limits = self.claim_limits(wanted, webhooks);
            let claimed = match self
                .store
                .claim(Utc::now(), &limits, self.config.lease_margin_secs)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    error!(error = ?e, "claiming deliveries failed");
                    drop(held);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = cancel.cancelled() => break,
                    }
                }
            };
            let got = claimed.len();
            if got > 0 {
                let jobs: Vec<(Claimed, Option<Arc<Prepared>>)> = {
                    let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    claimed
                        .into_iter()
                        .map(|c| {
                            let w = cache.get(&c.webhook_id).cloned();
                            (c, w)
                        })
                        .collect()
                };
                self.lock_in_flight().extend(jobs.iter().map(|(c, _)| c.delivery_id));
                for (c, webhook) in jobs {
                    let permit = held.pop().expect("one permit per claimed delivery");
                    let worker = self.clone();
                    let tx = tx.clone();
                    let span = tracing::info_span!("deliver", delivery_id = c.delivery_id, webhook_id = c.webhook_id);
                    let abandon = abandon.clone();
                    tracker.spawn(
                        async move {
                            let id = c.delivery_id;
                            let outcome = tokio::select! {
                                o = worker.deliver(c, webhook) => o,
                                _ = abandon.cancelled() => return,
                            };
                            let _ = tx.send(outcome);
                            worker.lock_in_flight().remove(&id);
                            drop(permit);
                            worker.freed.notify_one();
                        }
                        .instrument(span),
                    );
                }
            }
            drop(held);
            if got < wanted {
                // Fewer than asked for: the queue is drained (new work wakes us), or some
                // destinations are at their cap (a finished send frees a slot). With sends in
                // flight, wait for one to finish; with none, sleep until the next retry is due.
                let slot_may_free = !self.lock_in_flight().is_empty();
                let wait = if slot_may_free {
                    Duration::from_secs_f64(self.config.poll_interval_secs)
                } else {
                    self.idle_wait().await
                };
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = self.freed.notified(), if slot_may_free => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }

        info!("delivery worker stopping");
        tracker.close();
        let grace = Duration::from_secs_f64(self.config.shutdown_grace_secs);
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            abandon.cancel();
            tracker.wait().await;
            let left: Vec<i64> = self.lock_in_flight().iter().copied().collect();
            warn!(
                deliveries = left.len(),
                "grace period over: returning unfinished deliveries to the queue"
            );
            if let Err(e) = self.store.release(&left, Utc::now()).await {
                error!(error = ?e, "releasing deliveries failed; their leases will expire");
            }
        }
        drop(tx);
        let _ = recorder.await;
        let _ = purger.await;
        let _ = beats.await;
        self.running.store(false, Ordering::SeqCst);
        info!("delivery worker stopped");
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slots of a destination.
    fn slots(&self, destination: &str) -> Arc<Semaphore> {
        let mut map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_destination_concurrency)))
            .clone()
    }

    /// What one claim may take: no more of a webhook than its destination has free slots, so
    /// a slow receiver's deliveries never sit on worker slots waiting for their own.
    fn claim_limits(&self, total: usize, webhooks: Vec<i64>) -> ClaimLimits {
        let cap = self.config.per_destination_concurrency;
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
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
        ClaimLimits {
            total,
            webhooks,
            webhook_default: cap,
            per_webhook,
        }
    }

    /// How long to sleep when nothing is due: until the next due delivery, at most the poll interval.
    async fn idle_wait(&self) -> Duration {
        let poll = Duration::from_secs_f64(self.config.poll_interval_secs);
        match self.store.next_due().await {
            Ok(Some(due)) => (due - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll)
                .max(Duration::from_millis(1)),
            _ => poll,
        }
    }

    /// Lists the webhooks (id and version, one light read) and reloads them when any was
    /// added, changed or removed, so every claim knows each webhook's destination and every
    /// send uses the webhook as it is now. Returns the ids to claim for.
    async fn sync_webhooks(&self) -> Vec<i64> {
        let versions = match self.store.webhook_versions().await {
            Ok(v) => v,
            Err(e) => {
                error!(error = ?e, "listing webhooks failed");
                return Vec::new();
            }
        };
        let stale = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.len() != versions.len()
                || versions
                    .iter()
                    .any(|(id, at)| cache.get(id).is_none_or(|p| p.webhook.last_updated != *at))
        };
        if stale {
            match self.store.webhooks().await {
                Ok(all) => {
                    let alive = self.remember(all);
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|id, _| alive.contains_key(id));
                }
                Err(e) => error!(error = ?e, "loading webhooks failed"),
            }
        }
        versions.into_iter().map(|(id, _)| id).collect()
    }

    /// Caches `webhooks`, compiling those that are new or changed.
    fn remember(&self, webhooks: Vec<Webhook>) -> HashMap<i64, Arc<Prepared>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = HashMap::with_capacity(webhooks.len());
        for w in webhooks {
            let fresh = cache.get(&w.id).filter(|p| p.webhook == w).cloned();
            let prepared = fresh.unwrap_or_else(|| {
                if cache
                    .get(&w.id)
                    .is_some_and(|p| p.webhook.ca_file_path != w.ca_file_path)
                {
                    self.clients.clear();
                }
                let p = Arc::new(Prepared {
                    compiled: Compiled::new(&w),
                    destination: send::static_destination(&w.payload_url),
                    webhook: w,
                });
                cache.insert(p.webhook.id, p.clone());
                p
            });
            out.insert(prepared.webhook.id, prepared);
        }
        out
    }

    /// Renders, sends and judges one delivery.
    async fn deliver(&self, c: Claimed, prepared: Option<Arc<Prepared>>) -> Outcome {
        let failed = |error: String| Outcome {
            delivery_id: c.delivery_id,
            attempt: None,
            error: Some(error),
            status_code: None,
            status: Status::Failed,
            next_attempt_at: None,
        };
        let Some(prepared) = prepared else {
            return failed("the webhook no longer exists".into());
        };
        let built = match &prepared.compiled {
            Ok(comp) => comp.build(&prepared.webhook, &c.event),
            Err(e) => Err(e.clone()),
        };
        let request = match built {
            Ok(r) => r,
            Err(e) => return failed(format!("template error: {e}")),
        };
        let destination = prepared.destination.clone().or_else(|| send::destination(&request.url));
        let _slot: Option<OwnedSemaphorePermit> = match destination {
            Some(d) => self.slots(&d).acquire_owned().await.ok(),
            None => None,
        };
        let timeout = Duration::from_secs(u64::from(prepared.webhook.timeout));
        let (attempt, timed_out) = match self.clients.for_webhook(&prepared.webhook) {
            Ok(client) => {
                send::send(
                    &client,
                    &request,
                    c.delivery_id,
                    timeout,
                    self.config.response_body_limit,
                )
                .await
            }
            Err(e) => {
                let mut a = send::unsent_attempt(&request, c.delivery_id);
                a.error = Some(e);
                (a, false)
            }
        };
        let now = Utc::now();
        let seen = Observed {
            status: attempt.response_status,
            timed_out,
            retry_after: attempt
                .response_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| parse_retry_after(v, now)),
        };
        let policy = self.config.policy(prepared.webhook.retry_schedule.as_deref());
        let (status, next_attempt_at) = match decide(&policy, c.attempt, &seen, rand::random()) {
            Verdict::Succeeded => (Status::Succeeded, None),
            Verdict::RetryAfter(delay) => (Status::Retrying, Some(now + delay)),
            Verdict::Failed => (Status::Failed, None),
        };
        debug!(
            status = status.as_str(),
            error = attempt.error.as_deref(),
            "delivery attempt done"
        );
        Outcome {
            delivery_id: c.delivery_id,
            error: attempt.error.clone(),
            status_code: attempt.response_status,
            attempt: Some(attempt),
            status,
            next_attempt_at,
        }
    }
}

/// Records outcomes as they come, many per transaction.
async fn record(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let outcomes = std::mem::take(&mut batch);
        let mut tries = 0;
        while let Err(e) = store.complete(outcomes.clone(), Utc::now()).await {
            tries += 1;
            error!(error = ?e, tries, "recording delivery outcomes failed");
            if tries >= 5 {
                // The leases expire and the deliveries are sent again: at least once.
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * tries)).await;
        }
    }
}
