//! What operators' tools ask of a process: is it ready (`/readyz`), and what it has measured
//! (`/metrics`), with the queue's figures read from the database every few seconds at most.

use super::Services;
use chrono::Utc;
use serde::Serialize;
use std::time::Duration;

/// Each status's count stops here: the queue's gauges cost a bounded read however long the
/// queue grows.
pub const QUEUE_COUNT_AT_MOST: i64 = 1_000_000;

/// How long readiness waits for the database before calling it unreachable.
const READY_WITHIN: Duration = Duration::from_secs(3);

/// `/readyz`'s answer: ready, or the reasons it is not.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub problems: Vec<String>,
}

impl Services {
    /// Whether this process can do its work now: the database answers, within a few seconds,
    /// with the schema this build expects; the SQLite file is still the one opened; and the
    /// worker of this process, if it runs one, claims work.
    pub async fn readiness(&self) -> Readiness {
        let mut problems = Vec::new();
        if let Some(why) = self.store.lost() {
            problems.push(why);
        }
        match tokio::time::timeout(READY_WITHIN, self.store.schema_version()).await {
            Err(_) => problems.push(format!(
                "the database did not answer within {} s",
                READY_WITHIN.as_secs()
            )),
            Ok(Err(e)) => problems.push(format!("the database does not answer: {e}")),
            Ok(Ok((applied, expected))) if applied < expected => problems.push(format!(
                "the database's schema is at version {applied}, this build needs {expected}: run `herald migrate`"
            )),
            Ok(Ok((applied, expected))) if applied > expected => problems.push(format!(
                "the database's schema is at version {applied}, newer than this build knows ({expected}): upgrade Herald"
            )),
            Ok(Ok(_)) => {}
        }
        if let Some(why) = self.metrics.claim_problem() {
            problems.push(format!("the delivery worker cannot claim deliveries: {why}"));
        }
        Readiness {
            ready: problems.is_empty(),
            problems,
        }
    }

    /// The text of a scrape of `/metrics`. The queue's gauges are read again when the last
    /// read is a few seconds old; a read that fails leaves them as they were.
    pub async fn scrape(&self) -> String {
        if self.metrics.queue_read_due() {
            let read = async {
                let counts = self.store.status_counts_at_most(QUEUE_COUNT_AT_MOST).await?;
                let due = self.store.next_due().await?;
                Ok::<_, crate::store::StoreError>((counts, due))
            };
            match tokio::time::timeout(READY_WITHIN, read).await {
                Ok(Ok((counts, due))) => {
                    let counts: Vec<(&'static str, i64)> = crate::queue::all_counts(&counts)
                        .into_iter()
                        .map(|(s, n)| (s.as_str(), n))
                        .collect();
                    let waited = due.map_or(0.0, |d| (Utc::now() - d).num_milliseconds() as f64 / 1000.0);
                    self.metrics.set_queue(&counts, waited);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the queue for /metrics failed"),
                Err(_) => tracing::warn!("reading the queue for /metrics took too long"),
            }
        }
        if let Some((size, available, waiting)) = self.store.pool_status() {
            self.metrics.set_pool(size, available, waiting);
        }
        if let Some((commits, writes)) = self.store.write_groups() {
            self.metrics.set_write_groups(commits, writes);
        }
        self.metrics.render()
    }
}
