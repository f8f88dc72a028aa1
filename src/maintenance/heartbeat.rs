//! Worker heartbeats: each worker notes itself in the database every few seconds, so
//! `/api/status/` counts the workers running anywhere on the same database.

use crate::store::Store;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often a worker reports.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A worker silent for this long (three reports missed) is not counted.
pub fn stale_after() -> chrono::Duration {
    chrono::Duration::seconds(15)
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Reports every `INTERVAL` until cancelled, then removes the worker's entry.
pub async fn run(store: Arc<dyn Store>, cancel: CancellationToken) {
    let id = uuid::Uuid::new_v4().to_string();
    let (host, pid) = (host(), std::process::id());
    loop {
        if let Err(e) = store.worker_heartbeat(&id, &host, pid, Utc::now()).await {
            warn!(error = ?e, "worker heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => break,
        }
    }
    if let Err(e) = store.worker_gone(&id).await {
        warn!(error = ?e, "removing the worker's heartbeat failed");
    }
}
