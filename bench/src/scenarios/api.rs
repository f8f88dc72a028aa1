//! The inventory API: creates one by one, from several clients, and in bulk.

use super::Bench;
use crate::report::Report;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

impl Bench {
    /// The inventory API: single-object creates per second (one client, then eight at once,
    /// while the worker delivers), and 1,000-object bulk creates, each change with one matching
    /// webhook; every change must arrive at the receiver, signed.
    pub async fn api(&self, r: &mut Report) -> anyhow::Result<()> {
        let (_dir, h, rx) = self.with_webhook("api").await?;
        h.post("/api/dcim/regions/", &json!({"name": "Europe", "slug": "europe"}))
            .await?;
        h.post("/api/extras/tags/", &json!({"name": "core", "slug": "core"}))
            .await?;
        let site = |n: u64| {
            json!({"name": format!("Site {n}"), "slug": format!("site-{n}"), "region": 1, "status": "active",
                   "facility": "DC-1", "time_zone": "Europe/Zurich", "tags": [{"slug": "core"}]})
        };
        let singles: u64 = if self.quick { 200 } else { 5_000 };
        let deadline = Duration::from_secs(120);

        // One client, one site per request.
        let t0 = Instant::now();
        for n in 1..=singles {
            h.post("/api/dcim/sites/", &site(n)).await?;
            anyhow::ensure!(t0.elapsed() < deadline, "single creates took over {deadline:?}");
        }
        let one = singles as f64 / t0.elapsed().as_secs_f64();
        r.add("api", "single creates, 1 client", one, "/s");

        // Eight clients.
        let lanes = 8u64;
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..lanes {
            let (client, base) = (h.client.clone(), h.base.clone());
            let bodies: Vec<Value> = (0..singles / lanes)
                .map(|i| site(singles + 1 + lane + i * lanes))
                .collect();
            tasks.spawn(async move {
                for body in bodies {
                    let resp = client
                        .post(format!("{base}/api/dcim/sites/"))
                        .header("Authorization", format!("Token {}", crate::process::TOKEN))
                        .json(&body)
                        .send()
                        .await?;
                    anyhow::ensure!(resp.status().as_u16() == 201, "create: {}", resp.status());
                }
                Ok(())
            });
        }
        while let Some(t) = tasks.join_next().await {
            t??;
        }
        let eight = (singles / lanes * lanes) as f64 / t0.elapsed().as_secs_f64();
        r.add("api", "single creates, 8 clients", eight, "/s");
        let mut total = singles + singles / lanes * lanes;

        // Bulk creates of 1,000 sites, one request each, timed with the worker idle (the
        // deliveries of what came before have arrived).
        let rounds = if self.quick { 2 } else { 5 };
        let mut times = Vec::new();
        for round in 0..rounds {
            let caught_up = rx.wait_unique(total as usize, Duration::from_secs(120)).await;
            anyhow::ensure!(
                caught_up,
                "{} of {total} changes delivered before bulk round {round}",
                rx.unique()
            );
            let first = 1_000_000 + round * 1_000;
            let body = Value::Array((first..first + 1_000).map(site).collect());
            let t0 = Instant::now();
            let created = h.post("/api/dcim/sites/", &body).await?;
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                created.as_array().map(Vec::len) == Some(1_000),
                "bulk create answered {created}"
            );
            total += 1_000;
        }
        times.sort_by(f64::total_cmp);
        r.add("api", "1,000-object bulk create, median", times[times.len() / 2], "ms");
        r.add("api", "1,000-object bulk create, slowest", times[times.len() - 1], "ms");

        let complete = rx.wait_unique(total as usize, Duration::from_secs(120)).await;
        r.check_arrivals(
            "api",
            &format!("{} of {total} changes delivered", rx.unique()),
            complete,
            &rx,
        );
        r.add("api", "Herald RSS peak", h.rss_kib().1 as f64 / 1024.0, "MiB");
        h.stop().await;
        Ok(())
    }
}
