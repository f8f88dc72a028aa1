//! The delivery worker: claim due deliveries with a lease, commit, render and send each, then
//! record the outcomes in groups (`recorder`). No transaction is held across an HTTP call.
//!
//! `run` is a loop of `run_once` (one claim, one send task per delivery) and `wait_for_work`,
//! then `drain` on shutdown; tests drive `run_until_idle` instead of waiting on wall time.

pub mod destinations;
mod recorder;
pub mod send;
mod webhooks;

use webhooks::Prepared;

pub use recorder::record_outcomes;

use crate::config::WorkerConfig;
use crate::metrics::Metrics;
use crate::queue::policy::{decide, parse_retry_after, Observed, Verdict};
use crate::queue::{attach_events, ClaimLimits, ClaimPlan, Claimed, Outcome, Status};
use crate::store::{Store, StoreError};
use crate::webhooks::sandbox::Sandbox;
use crate::webhooks::signature;
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

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// It claimed as many deliveries as it had free slots for: claim again at once.
    Full(usize),
    /// It claimed fewer (maybe none): the queue is drained, or destinations are at their cap.
    Short(usize),
}

use crate::sync::lock;

/// Sends deliveries until cancelled.
pub struct Worker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    /// Set while `run` runs.
    running: Arc<AtomicBool>,
    clients: Clients,
    /// Where templated requests render.
    sandbox: Arc<Sandbox>,
    cache: Mutex<HashMap<i64, Arc<Prepared>>>,
    /// Send slots of the whole worker.
    permits: Arc<Semaphore>,
    /// Per-destination slots.
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Deliveries claimed and not yet recorded.
    in_flight: Mutex<HashSet<i64>>,
    /// Notified when a send finishes, freeing a slot.
    freed: Notify,
    /// Turns the order in which webhooks sharing a destination get its spare slot.
    turn: AtomicUsize,
    /// When a rate-limited webhook that had more to send may send again.
    rate_wake: Mutex<Option<chrono::DateTime<Utc>>>,
    /// The send tasks.
    tasks: TaskTracker,
    /// Cancelled when the shutdown grace runs out: unfinished sends are dropped and released.
    abandon: CancellationToken,
    /// Outcomes on their way to the recorder (taken when draining, to end it).
    outcomes: Mutex<Option<mpsc::UnboundedSender<Outcome>>>,
    recorder: recorder::Handle,
    /// This process's measurements: what each send did, and whether claims work.
    metrics: Arc<Metrics>,
}

impl Worker {
    /// A worker over `store`, sending through `clients`; `running` is set while `run` runs.
    /// Starts its outcome recorder.
    pub fn new(
        store: Arc<dyn Store>,
        config: WorkerConfig,
        clients: Clients,
        sandbox: Arc<Sandbox>,
        running: Arc<AtomicBool>,
        notices: Option<Arc<crate::maintenance::notices::Notices>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Worker> {
        let (tx, recorder) = recorder::start(store.clone(), notices);
        Arc::new(Worker {
            permits: Arc::new(Semaphore::new(config.concurrency)),
            store,
            config,
            running,
            clients,
            sandbox,
            cache: Mutex::new(HashMap::new()),
            destinations: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            freed: Notify::new(),
            turn: AtomicUsize::new(0),
            rate_wake: Mutex::new(None),
            tasks: TaskTracker::new(),
            abandon: CancellationToken::new(),
            outcomes: Mutex::new(Some(tx)),
            recorder,
            metrics,
        })
    }

    /// Claims and sends until `cancel` fires; then drains (see `drain`).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.running.store(true, Ordering::SeqCst);
        info!(concurrency = self.config.concurrency, "delivery worker started");
        loop {
            let first = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = cancel.cancelled() => break,
            };
            let pass = self.run_once(first).await;
            self.metrics
                .claimed(pass.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            match pass {
                Ok(Pass::Full(_)) => {}
                Ok(Pass::Short(_)) => self.wait_for_work(&cancel).await,
                Err(e) => {
                    error!(error = ?e, "claiming deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        self.drain().await;
        self.running.store(false, Ordering::SeqCst);
        info!("delivery worker stopped");
    }

    /// One claim with the slots free now (`first` and any others): claims within each
    /// destination's free slots and starts one send task per delivery claimed.
    pub async fn run_once(self: &Arc<Self>, first: OwnedSemaphorePermit) -> Result<Pass, StoreError> {
        let mut held = self.gather_slots(first).await;
        let wanted = held.len();
        let webhooks = self.sync_webhooks().await;
        let now = Utc::now();
        let mut limits = self.claim_limits(wanted, webhooks);
        let permits = self.take_permits(&mut limits, now).await?;
        let plan = {
            let cache = lock(&self.cache);
            let margin = Duration::from_secs(self.config.lease_margin_secs);
            ClaimPlan::new(&limits, now, margin, |id| {
                cache
                    .get(&id)
                    .map(|p| Duration::from_secs(u64::from(p.webhook.timeout)))
            })
        };
        let batch = self.store.claim(&plan).await?;
        let claimed = attach_events(batch.rows, batch.events);
        self.return_permits(permits, &claimed).await?;
        let got = claimed.len();
        let jobs: Vec<(Claimed, Option<Arc<Prepared>>)> = {
            let cache = lock(&self.cache);
            claimed
                .into_iter()
                .map(|c| {
                    let w = cache.get(&c.webhook_id).cloned();
                    (c, w)
                })
                .collect()
        };
        lock(&self.in_flight).extend(jobs.iter().map(|(c, _)| c.delivery_id));
        for (c, webhook) in jobs {
            // One slot per delivery: `got` is at most `wanted`.
            let Some(permit) = held.pop() else { break };
            self.spawn_send(c, webhook, permit);
        }
        Ok(if got < wanted {
            Pass::Short(got)
        } else {
            Pass::Full(got)
        })
    }

    /// For each rate-limited webhook this claim may take deliveries of: permits to send, which
    /// become its limit. Returns `(webhook, rate, granted)` for what the claim leaves unused.
    async fn take_permits(
        &self,
        limits: &mut ClaimLimits,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<(i64, f64, i64)>, StoreError> {
        let limited: Vec<(i64, f64)> = {
            let cache = lock(&self.cache);
            limits
                .webhooks
                .iter()
                .filter_map(|id| cache.get(id).and_then(|p| p.webhook.rate_limit.map(|r| (*id, r))))
                .collect()
        };
        let mut taken = Vec::with_capacity(limited.len());
        let mut wake: Option<chrono::DateTime<Utc>> = None;
        for (id, rate) in limited {
            let want = limits.of(id) as i64;
            if want == 0 {
                continue;
            }
            let (granted, next) = self.store.take_permits(id, rate, want, now).await?;
            limits.per_webhook.insert(id, granted as usize);
            if granted < want {
                wake = Some(wake.map_or(next, |w| w.min(next)));
            }
            taken.push((id, rate, granted));
        }
        *lock(&self.rate_wake) = wake;
        Ok(taken)
    }

    /// Gives back the permits a claim took and did not use.
    async fn return_permits(&self, taken: Vec<(i64, f64, i64)>, claimed: &[Claimed]) -> Result<(), StoreError> {
        for (id, rate, granted) in taken {
            let used = claimed.iter().filter(|c| c.webhook_id == id).count() as i64;
            self.store.return_permits(id, rate, granted - used).await?;
        }
        Ok(())
    }

    /// Slots for one claim: `first`, the others free now, and (under load, where slots free one
    /// at a time) a few more gathered for up to 2 ms, so a claim serves many deliveries.
    async fn gather_slots(&self, first: OwnedSemaphorePermit) -> Vec<OwnedSemaphorePermit> {
        let mut held = vec![first];
        while held.len() < self.config.batch_size {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let gather = (self.config.batch_size / 4).clamp(1, 32).min(self.config.concurrency);
        let until = tokio::time::Instant::now() + Duration::from_millis(2);
        while held.len() < gather && !lock(&self.in_flight).is_empty() {
            match tokio::time::timeout_at(until, self.permits.clone().acquire_owned()).await {
                Ok(Ok(p)) => held.push(p),
                _ => break,
            }
        }
        held
    }

    fn spawn_send(self: &Arc<Self>, c: Claimed, webhook: Option<Arc<Prepared>>, permit: OwnedSemaphorePermit) {
        let worker = self.clone();
        let tx = lock(&self.outcomes).clone();
        let span = tracing::info_span!("deliver", delivery_id = c.delivery_id, webhook_id = c.webhook_id);
        let abandon = self.abandon.clone();
        self.tasks.spawn(
            async move {
                let id = c.delivery_id;
                let _sending = worker.metrics.sending();
                let outcome = tokio::select! {
                    o = worker.deliver(c, webhook) => o,
                    _ = abandon.cancelled() => return,
                };
                if let Some(tx) = tx {
                    worker.recorder.sent();
                    let _ = tx.send(outcome);
                }
                lock(&worker.in_flight).remove(&id);
                drop(permit);
                worker.freed.notify_one();
            }
            .instrument(span),
        );
    }

    /// After a short pass: waits for new work, a freed slot (while sends are in flight) or
    /// the next due retry.
    async fn wait_for_work(&self, cancel: &CancellationToken) {
        let sending = !lock(&self.in_flight).is_empty();
        let wait = if sending {
            Duration::from_secs_f64(self.config.poll_interval_secs)
        } else {
            self.idle_wait().await
        };
        let signal = self.store.queue_signal();
        tokio::select! {
            _ = signal.notified() => {}
            _ = self.freed.notified(), if sending => {}
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => {}
        }
    }

    /// Sends until nothing is due and nothing is being sent, and every outcome is recorded;
    /// returns how many deliveries it claimed. For tests and one-shot runs.
    pub async fn run_until_idle(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut claimed = 0;
        loop {
            let Ok(first) = self.permits.clone().acquire_owned().await else {
                break;
            };
            let pass = self.run_once(first).await?;
            let n = match pass {
                Pass::Full(n) | Pass::Short(n) => n,
            };
            claimed += n;
            if matches!(pass, Pass::Full(_)) {
                continue;
            }
            if !lock(&self.in_flight).is_empty() {
                self.freed.notified().await;
                continue;
            }
            self.recorder.flushed().await;
            let due_now = self.store.next_due().await?.is_some_and(|due| due <= Utc::now());
            if n == 0 && !due_now {
                break;
            }
            if n == 0 {
                // Due, and held back (by a rate limit, or an earlier delivery of its object).
                tokio::time::sleep(self.idle_wait().await).await;
            }
        }
        Ok(claimed)
    }

    /// Stops: gives in-flight sends `shutdown_grace_secs` to finish, records them, puts the
    /// rest back in the queue, and waits for the recorder to write what it has.
    pub async fn drain(&self) {
        info!("delivery worker stopping");
        self.tasks.close();
        let grace = Duration::from_secs_f64(self.config.shutdown_grace_secs);
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            self.abandon.cancel();
            self.tasks.wait().await;
            let left: Vec<i64> = lock(&self.in_flight).iter().copied().collect();
            warn!(
                deliveries = left.len(),
                "grace period over: returning unfinished deliveries to the queue"
            );
            if let Err(e) = self.store.release(&left, Utc::now()).await {
                error!(error = ?e, "releasing deliveries failed; their leases will expire");
            }
        }
        lock(&self.outcomes).take();
        self.recorder.finish().await;
    }

    /// How long to sleep when nothing is due: until the next due delivery, at most the poll
    /// interval. Due deliveries held back by a rate limit wait for its next permit.
    async fn idle_wait(&self) -> Duration {
        let poll = Duration::from_secs_f64(self.config.poll_interval_secs);
        if let Some(at) = *lock(&self.rate_wake) {
            return (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll)
                .max(Duration::from_millis(1));
        }
        match self.store.next_due().await {
            // Due already, yet this pass took nothing: it waits behind an earlier delivery of
            // its object (an ordered webhook's). A commit or a freed slot wakes the worker.
            Ok(Some(due)) if due <= Utc::now() => poll,
            Ok(Some(due)) => (due - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll)
                .max(Duration::from_millis(1)),
            _ => poll,
        }
    }

    /// Renders, sends and judges one delivery.
    async fn deliver(&self, c: Claimed, prepared: Option<Arc<Prepared>>) -> Outcome {
        let webhook_id = c.webhook_id;
        let event = c.event.clone();
        let outcome = self.judge(c, prepared).await.of_webhook(webhook_id);
        let label = match outcome.status {
            Status::Succeeded => "succeeded",
            Status::Retrying => "retried",
            _ => "failed",
        };
        self.metrics.outcome(webhook_id, label);
        // Only a success has a latency: the change's time is read for it alone.
        if outcome.status == Status::Succeeded {
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&event.timestamp) {
                let waited = outcome.next_attempt_at.signed_duration_since(at);
                self.metrics
                    .delivered(waited.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
            }
        }
        outcome
    }

    async fn judge(&self, c: Claimed, prepared: Option<Arc<Prepared>>) -> Outcome {
        let Some(prepared) = prepared else {
            return Outcome::unsendable(c.delivery_id, "the webhook no longer exists".into(), Utc::now());
        };
        if let Some(why) = c.abandoned(self.config.max_claims_without_outcome) {
            return Outcome::unsendable(c.delivery_id, why, Utc::now());
        }
        let built = if prepared.plain.renders() {
            let started = std::time::Instant::now();
            let built = self
                .sandbox
                .build(&prepared.webhook, &c.event, Some(c.delivery_id))
                .await;
            self.metrics.rendered(started.elapsed());
            built
        } else {
            prepared.plain.build(&prepared.webhook, &c.event, Some(c.delivery_id))
        };
        let mut request = match built {
            Ok(r) => r,
            Err(e) => return Outcome::unsendable(c.delivery_id, format!("template error: {e}"), Utc::now()),
        };
        let destination = prepared.destination.clone().or_else(|| send::destination(&request.url));
        let _slot: Option<(OwnedSemaphorePermit, crate::metrics::Held)> = match destination {
            Some(d) => self
                .slots(&d)
                .acquire_owned()
                .await
                .ok()
                .map(|p| (p, self.metrics.destination_slot())),
            None => None,
        };
        // Signed once it may go: a signature never waits in line for a slot.
        signature::sign(&prepared.webhook, &mut request, &c.delivery_id.to_string(), Utc::now());
        let timeout = Duration::from_secs(u64::from(prepared.webhook.timeout));
        let started = std::time::Instant::now();
        let (attempt, timed_out) = match self.clients.for_request(&prepared.webhook, &request.url).await {
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
        self.metrics.attempt(
            c.webhook_id,
            crate::metrics::status_class(attempt.response_status, timed_out),
            started.elapsed(),
        );
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
        let outcome = match decide(&policy, c.attempt, &seen, rand::random()) {
            Verdict::Succeeded => Outcome::succeeded(c.delivery_id, attempt, now),
            Verdict::RetryAfter(delay) => Outcome::failed(c.delivery_id, attempt, Some(now + delay), now),
            Verdict::Failed => Outcome::failed(c.delivery_id, attempt, None, now),
        };
        debug!(
            status = outcome.status.as_str(),
            error = outcome.last_error.as_deref(),
            "delivery attempt done"
        );
        outcome
    }
}
