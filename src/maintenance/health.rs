//! Webhooks' health, looked at every `worker.health_interval_secs` by each worker: a webhook
//! failing `notices.failing_after` attempts in a row is noticed (`webhook.failing`), one failing
//! without a success for `worker.disable_failing_after_secs` is disabled (`webhook.disabled`),
//! and one noticed that succeeds again is noticed too (`webhook.recovered`). Each change is one
//! statement that only one worker of a fleet wins, in the transaction that queues its notice.

use super::notices::{About, Notices};
use crate::store::{in_write_tx, Store, StoreError, WriteError};
use crate::webhooks::health::{actions, Action, Thresholds, Trouble};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Looks every `interval` until cancelled.
pub async fn run(
    store: Arc<dyn Store>,
    notices: Option<Arc<Notices>>,
    limits: Thresholds,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(e) = check_once(store.as_ref(), notices.as_ref(), limits, Utc::now()).await {
            warn!(error = ?e, "looking at the webhooks' health failed");
        }
    }
}

/// One look: acts on what each troubled webhook's health calls for.
pub async fn check_once(
    store: &dyn Store,
    notices: Option<&Arc<Notices>>,
    limits: Thresholds,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let dialect = store.dialect();
    for t in store.troubled_webhooks().await? {
        // The notices' own webhook failing is not noticed (nor disabled) by notices.
        if notices.is_some_and(|n| n.sends_by(t.webhook_id)) {
            continue;
        }
        for action in actions(&t, limits, now) {
            let about = about(&t);
            match action {
                Action::Disable => {
                    let since = t.failing_since.unwrap_or(now);
                    let reason = format!(
                        "Every delivery attempt failed for over {} s (since {}, {} in a row); the last error: {}",
                        limits.disable_after.num_seconds(),
                        crate::events::netbox_timestamp(since),
                        t.consecutive_failures,
                        t.last_error.as_deref().unwrap_or("none recorded"),
                    );
                    let q = crate::store::statements::disable_failing(
                        dialect,
                        t.webhook_id,
                        now - limits.disable_after,
                        &reason,
                        now,
                    );
                    let done = match notices {
                        Some(n) => {
                            n.send(store, "webhook.disabled", about, json!({"reason": reason}), Some(q))
                                .await?
                        }
                        None => exec_alone(store, q).await?,
                    };
                    if done {
                        info!(webhook_id = t.webhook_id, reason, "disabled a failing webhook");
                    }
                }
                Action::NoticeFailing => {
                    if let Some(n) = notices {
                        let q = crate::store::statements::failing_noticed(dialect, t.webhook_id, true);
                        n.send(store, "webhook.failing", about, json!({}), Some(q)).await?;
                    }
                }
                Action::NoticeRecovered => {
                    if let Some(n) = notices {
                        let q = crate::store::statements::failing_noticed(dialect, t.webhook_id, false);
                        n.send(store, "webhook.recovered", about, json!({}), Some(q)).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn about(t: &Trouble) -> About {
    About {
        webhook_id: t.webhook_id,
        name: t.name.clone(),
        last_error: t.last_error.clone(),
        consecutive_failures: Some(t.consecutive_failures),
        failing_since: t.failing_since,
    }
}

/// Runs `q` in a write transaction of its own; whether it touched a row.
async fn exec_alone(store: &dyn Store, q: crate::store::sql::Sql) -> Result<bool, StoreError> {
    let q = Arc::new(q);
    let done = in_write_tx(store, move |tx| {
        let q = q.clone();
        Box::pin(async move {
            let st: &mut dyn crate::store::exec::Tx = tx;
            Ok(st.exec(&q).await? > 0)
        })
    })
    .await;
    done.map_err(|e| match e {
        WriteError::Store(e) => e,
        other => StoreError::Other(anyhow::anyhow!("{other}")),
    })
}
