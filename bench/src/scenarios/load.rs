//! The delivery engine under load: many webhooks, a deep backlog, a hanging receiver.

use super::Bench;
use crate::process::post_events;
use crate::report::Report;
use std::time::{Duration, Instant};

impl Bench {
    /// Each event matches 100 webhooks.
    pub async fn fanout(&self, r: &mut Report) -> anyhow::Result<()> {
        let db = self.database().await?;
        let h = self.herald(&db, true).await?;
        let rx = crate::receiver::start(false).await;
        for i in 0..100 {
            h.create_webhook(&format!("fanout-{i}"), &rx.url(), 15).await?;
        }
        let events = if self.quick { 20 } else { 500 };
        let want = events * 100;
        let t0 = Instant::now();
        post_events(&h, 1, events + 1, 10, 4).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while rx.received() < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let last = rx.counts.last.lock().unwrap().unwrap_or_else(Instant::now);
        r.target(
            "fanout",
            "deliveries arriving",
            rx.received() as f64 / (last - t0).as_secs_f64(),
            "/s",
            10_000.0,
            true,
        );
        r.add("fanout", "Herald RSS peak", h.rss_kib().1 as f64 / 1024.0, "MiB");
        r.check_arrivals(
            "fanout",
            &format!("{} of {want} deliveries arrived", rx.received()),
            rx.received() >= want,
            &rx,
        );
        h.stop().await;
        Ok(())
    }

    /// A large queue built with no worker running, then drained.
    pub async fn backlog(&self, r: &mut Report, deliver_rate: Option<f64>) -> anyhow::Result<()> {
        let db = self.database().await?;
        let rx = crate::receiver::start(false).await;
        let n = self.backlog;
        let h = self.herald(&db, false).await?;
        h.create_webhook("backlog", &rx.url(), 15).await?;
        let t0 = Instant::now();
        post_events(&h, 1, n + 1, 1000, 4).await?;
        r.add(
            "backlog",
            "queued (no worker)",
            n as f64 / t0.elapsed().as_secs_f64(),
            "deliveries/s",
        );
        r.add(
            "backlog",
            "database size",
            db.bytes().await? as f64 / (1024.0 * 1024.0),
            "MiB",
        );
        let (rss, peak) = h.rss_kib();
        r.target(
            "backlog",
            "Herald RSS with the queue full",
            rss as f64 / 1024.0,
            "MiB",
            150.0,
            false,
        );
        r.add("backlog", "Herald RSS peak while queueing", peak as f64 / 1024.0, "MiB");
        h.stop().await;

        let h = self.herald(&db, true).await?;
        let t0 = Instant::now();
        let complete = rx
            .wait_unique(n as usize, Duration::from_secs(if self.quick { 60 } else { 400 }))
            .await;
        let last = rx.counts.last.lock().unwrap().unwrap_or_else(Instant::now);
        let rate = rx.unique() as f64 / (last - t0).as_secs_f64();
        match deliver_rate {
            Some(d) => r.target("backlog", "drain", rate, "/s", d, true),
            None => r.add("backlog", "drain", rate, "/s"),
        }
        r.target(
            "backlog",
            "Herald RSS peak while draining",
            h.rss_kib().1 as f64 / 1024.0,
            "MiB",
            150.0,
            false,
        );
        r.check_arrivals(
            "backlog",
            &format!("{} of {n} deliveries arrived", rx.unique()),
            complete,
            &rx,
        );
        h.stop().await;
        Ok(())
    }

    /// A healthy receiver's rate alone, then next to one that hangs until the timeout.
    pub async fn isolation(&self, r: &mut Report) -> anyhow::Result<()> {
        let n = if self.quick { 500 } else { 5_000 };
        let window = Duration::from_secs(if self.quick { 10 } else { 60 });
        let mut rates = Vec::new();
        for with_hang in [false, true] {
            let db = self.database().await?;
            let h = self.herald(&db, true).await?;
            let healthy = crate::receiver::start(false).await;
            let hanging = crate::receiver::start(true).await;
            h.create_webhook("healthy", &healthy.url(), 15).await?;
            if with_hang {
                h.create_webhook("hanging", &hanging.url(), 2).await?;
            }
            let t0 = Instant::now();
            post_events(&h, 1, n + 1, 500, 4).await?;
            healthy.wait_unique(n as usize, window).await;
            let end = if healthy.unique() as u64 >= n {
                healthy.counts.last.lock().unwrap().unwrap_or_else(Instant::now)
            } else {
                Instant::now()
            };
            rates.push(healthy.unique() as f64 / (end - t0).as_secs_f64());
            hanging.stop_hanging();
            h.stop().await;
        }
        r.add("isolation", "healthy alone", rates[0], "/s");
        r.add("isolation", "healthy next to a hanging receiver", rates[1], "/s");
        r.target("isolation", "ratio", rates[1] / rates[0], "", 0.9, true);
        Ok(())
    }
}
