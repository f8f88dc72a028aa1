//! Delivery by worker processes apart from the API, as a fleet runs: one `serve --no-worker`
//! takes the events, then 1, 2 and 4 `herald worker` processes share the queue.

use super::Bench;
use crate::process::{post_events, start_worker, stop};
use crate::report::Report;
use std::time::{Duration, Instant};

/// End to end on PostgreSQL, on this 2-core machine.
const POSTGRES_TARGET: f64 = 5_000.0;

impl Bench {
    pub async fn workers(&self, r: &mut Report) -> anyhow::Result<()> {
        for n in [1usize, 2, 4] {
            let db = self.database().await?;
            let h = self.herald(&db, false).await?;
            let rx = crate::receiver::start(false).await;
            h.create_webhook("workers", &rx.url(), 15).await?;
            let workers = (0..n)
                .map(|_| start_worker(&self.exe, &db.url()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let events = self.events;
            let t0 = Instant::now();
            post_events(&h, 1, events + 1, 500, 4).await?;
            let complete = rx.wait_unique(events as usize, Duration::from_secs(300)).await;
            let last = rx.counts.last.lock().unwrap().unwrap_or_else(Instant::now);
            let rate = rx.unique() as f64 / (last - t0).as_secs_f64();
            let metric = format!(
                "{n} worker process{}: deliveries arriving",
                if n == 1 { "" } else { "es" }
            );
            match self.postgres {
                Some(_) => r.target("workers", &metric, rate, "/s", POSTGRES_TARGET, true),
                None => r.add("workers", &metric, rate, "/s"),
            }
            r.check_arrivals(
                "workers",
                &format!("{n} workers: {} of {events} events arrived", rx.unique()),
                complete,
                &rx,
            );
            for w in workers {
                stop(w).await;
            }
            h.stop().await;
        }
        Ok(())
    }
}
