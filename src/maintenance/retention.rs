//! Retention: finished deliveries (then events left without any), object changes and ended
//! browser sessions are purged after their age, in small batches, so the purge never holds
//! the database for long.

use crate::config::RetentionConfig;
use crate::store::Store;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Rows deleted per transaction.
const BATCH: i64 = 1000;

fn days(d: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((d * 86_400_000.0) as i64)
}

/// Purges once; returns the rows deleted.
pub async fn purge_once(
    store: &dyn Store,
    config: &RetentionConfig,
    intake_window: u64,
    cancel: &CancellationToken,
) -> u64 {
    let now = Utc::now();
    let (succeeded_before, failed_before) = (now - days(config.succeeded_days), now - days(config.failed_days));
    let mut total = 0;
    if config.changelog_days > 0.0 {
        let before = now - days(config.changelog_days);
        total += in_batches("object changes", cancel, || store.purge_changes(before, BATCH)).await;
    }
    total += in_batches("deliveries", cancel, || {
        store.purge_deliveries(succeeded_before, failed_before, BATCH)
    })
    .await;
    // Events go once no delivery needs them, and not before a succeeded delivery of theirs
    // would have gone.
    total += in_batches("events", cancel, || store.purge_events(succeeded_before, BATCH)).await;
    total += in_batches("sessions", cancel, || store.purge_sessions(now, BATCH)).await;
    total += in_batches("intake keys", cancel, || {
        store.purge_intake_keys(now - chrono::Duration::seconds(intake_window as i64), BATCH)
    })
    .await;
    total += in_batches("deleted webhooks", cancel, || {
        store.purge_deleted_webhooks(failed_before.min(succeeded_before), BATCH)
    })
    .await;
    total
}

/// Runs `purge` until a batch comes back short (or on error, or cancelled); returns the rows.
async fn in_batches<F, Fut>(what: &str, cancel: &CancellationToken, mut purge: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, crate::store::StoreError>>,
{
    let mut total = 0;
    while !cancel.is_cancelled() {
        match purge().await {
            Ok(n) => {
                total += n;
                if n < BATCH as u64 {
                    break;
                }
                // Let deliveries through between batches.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                error!(error = ?e, "purging old {what} failed");
                break;
            }
        }
    }
    total
}

/// Purges every `interval_secs` until cancelled.
pub async fn run(store: Arc<dyn Store>, config: RetentionConfig, intake_window: u64, cancel: CancellationToken) {
    let interval = Duration::from_secs_f64(config.interval_secs);
    loop {
        let n = purge_once(store.as_ref(), &config, intake_window, &cancel).await;
        if n > 0 {
            info!(rows = n, "purged old deliveries");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
