//! The delivery worker: claim due deliveries with a lease, commit, render and send each, then
//! record the outcomes in groups. No transaction is held across an HTTP call.

pub mod send;

use crate::config::WorkerConfig;
use crate::queue::next_delay;
use crate::store::{Claimed, Outcome, Status, Store};
use crate::webhooks::request::Compiled;
use crate::webhooks::Webhook;
use chrono::Utc;
use send::Clients;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, Instrument};

/// A webhook with its templates compiled (or the compile error).
struct Prepared {
    webhook: Webhook,
    compiled: Result<Compiled, crate::webhooks::request::BuildError>,
}

/// Sends deliveries until cancelled.
pub struct Worker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    wake: Arc<Notify>,
    running: Arc<AtomicBool>,
    clients: Clients,
    cache: Mutex<HashMap<i64, Arc<Prepared>>>,
}

impl Worker {
    /// `wake` is notified whenever deliveries are committed; `running` is set while `run` runs.
    pub fn new(
        store: Arc<dyn Store>,
        config: WorkerConfig,
        wake: Arc<Notify>,
        running: Arc<AtomicBool>,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            store,
            config,
            wake,
            running,
            clients: Clients::default(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Claims and sends until `cancel` fires; then stops claiming, lets in-flight sends finish
    /// (each is bounded by its webhook's timeout) and records them.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.running.store(true, Ordering::SeqCst);
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let tracker = TaskTracker::new();
        let (tx, rx) = mpsc::unbounded_channel::<Outcome>();
        let recorder = tokio::spawn(record(self.store.clone(), rx));
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
            let wanted = held.len();
            let claimed = match self
                .store
                .claim(Utc::now(), wanted, self.config.lease_margin_secs)
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
                let prepared = self.prepare(&claimed).await;
                for c in claimed {
                    let permit = held.pop().expect("one permit per claimed delivery");
                    let worker = self.clone();
                    let tx = tx.clone();
                    let webhook = prepared.get(&c.webhook_id).cloned();
                    let span = tracing::info_span!("deliver", delivery_id = c.delivery_id, webhook_id = c.webhook_id);
                    tracker.spawn(
                        async move {
                            let outcome = worker.deliver(c, webhook).await;
                            let _ = tx.send(outcome);
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
            }
            drop(held);
            if got < wanted {
                let wait = self.idle_wait().await;
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }

        info!("delivery worker stopping: finishing in-flight deliveries");
        tracker.close();
        tracker.wait().await;
        drop(tx);
        let _ = recorder.await;
        self.running.store(false, Ordering::SeqCst);
        info!("delivery worker stopped");
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

    /// The claimed deliveries' webhooks, compiled once per version.
    async fn prepare(&self, claimed: &[Claimed]) -> HashMap<i64, Arc<Prepared>> {
        let mut ids: Vec<i64> = claimed.iter().map(|c| c.webhook_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let webhooks = match self.store.webhooks_by_id(&ids).await {
            Ok(w) => w,
            Err(e) => {
                error!(error = ?e, "loading webhooks failed");
                Vec::new()
            }
        };
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
                let compiled = Compiled::new(&w);
                let p = Arc::new(Prepared { webhook: w, compiled });
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
        let compiled = match &prepared.compiled {
            Ok(c) => c,
            Err(e) => return failed(format!("template error: {e}")),
        };
        let request = match compiled.build(&prepared.webhook, &c.event) {
            Ok(r) => r,
            Err(e) => return failed(format!("template error: {e}")),
        };
        let timeout = Duration::from_secs(u64::from(prepared.webhook.timeout));
        let attempt = match self.clients.for_webhook(&prepared.webhook) {
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
                a
            }
        };
        let (status, next_attempt_at) = match attempt.error {
            None => (Status::Succeeded, None),
            Some(_) => {
                let unit: f64 = rand::random();
                match next_delay(&self.config.retry_schedule, c.attempt, self.config.retry_jitter, unit) {
                    Some(delay) => (Status::Retrying, Some(Utc::now() + delay)),
                    None => (Status::Failed, None),
                }
            }
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
