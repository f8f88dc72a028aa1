//! The delivery engine alone: throughput, the machine's ceiling, latency.

use super::Bench;
use crate::process::post_events;
use crate::report::Report;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Bench {
    /// Events posted, deliveries timed from the first post to the last arrival.
    pub async fn deliver(&self, r: &mut Report) -> anyhow::Result<f64> {
        let (_dir, h, rx) = self.with_webhook("bench").await?;
        let idle = h.rss_kib().0;
        let n = self.events;
        let t0 = Instant::now();
        post_events(&h, 1, n + 1, 500, 4).await?;
        let accepted = t0.elapsed();
        let complete = rx.wait_unique(n as usize, Duration::from_secs(300)).await;
        let last = rx.counts.last.lock().unwrap().unwrap_or_else(Instant::now);
        let rate = n as f64 / (last - t0).as_secs_f64();
        r.add(
            "deliver",
            "events accepted",
            n as f64 / accepted.as_secs_f64(),
            "events/s",
        );
        r.target("deliver", "deliveries arriving", rate, "/s", 10_000.0, true);
        r.add(
            "deliver",
            "signatures invalid",
            rx.counts.bad_signatures.load(Ordering::Relaxed) as f64,
            "",
        );
        r.add(
            "deliver",
            "duplicates",
            rx.counts.duplicates.load(Ordering::Relaxed) as f64,
            "",
        );
        r.target("deliver", "Herald RSS idle", idle as f64 / 1024.0, "MiB", 30.0, false);
        r.add("deliver", "Herald RSS peak", h.rss_kib().1 as f64 / 1024.0, "MiB");
        r.check_arrivals(
            "deliver",
            &format!("{} of {n} events arrived", rx.unique()),
            complete,
            &rx,
        );
        h.stop().await;
        Ok(rate)
    }

    /// The same bodies, signatures and concurrency, sent by a bare keep-alive client.
    pub async fn baseline(&self, r: &mut Report) -> anyhow::Result<f64> {
        let rx = crate::receiver::start(false).await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        let n = self.events;
        let concurrency = herald::config::Config::defaults().worker.concurrency as u64;
        let url = rx.url();
        // Bodies and signatures as Herald makes them, prepared before the clock starts.
        let catalog = herald::catalog::Catalog::builtin();
        let defaults = herald::events::ingest::Defaults {
            username: "bench",
            now: std::time::SystemTime::now().into(),
            request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a",
        };
        let mut requests = Vec::with_capacity(n as usize);
        for i in 1..=n {
            let event = crate::process::event(i);
            let raw = event.to_string();
            let events = herald::events::ingest::parse(event, raw.as_bytes(), &catalog, &defaults)
                .map_err(|e| anyhow::anyhow!("bad bench event: {e}"))?;
            let body = events[0].default_body();
            let sig = herald::webhooks::signature::netbox(crate::receiver::SECRET, body.as_bytes());
            requests.push((body, sig));
        }
        let requests = std::sync::Arc::new(requests);
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..concurrency {
            let (client, url, requests) = (client.clone(), url.clone(), requests.clone());
            tasks.spawn(async move {
                let mut i = lane as usize;
                while let Some((body, sig)) = requests.get(i) {
                    client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("User-Agent", "herald-bench")
                        .header("X-Hook-Signature", sig.as_str())
                        .body(body.clone())
                        .send()
                        .await?;
                    i += concurrency as usize;
                }
                Ok::<_, anyhow::Error>(())
            });
        }
        while let Some(t) = tasks.join_next().await {
            t??;
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        r.add("baseline", "bare client requests", rate, "/s");
        r.check("baseline", "every request arrived", rx.unique() as u64 == n);
        Ok(rate)
    }

    /// A steady 100 events/s; from the API's answer (the commit) to arrival.
    pub async fn latency(&self, r: &mut Report) -> anyhow::Result<()> {
        let (_dir, h, rx) = self.with_webhook("latency").await?;
        let (rate, secs) = if self.quick { (100u64, 2u64) } else { (100, 20) };
        let n = rate * secs;
        let mut answered = Vec::with_capacity(n as usize);
        let mut sent = Vec::with_capacity(n as usize);
        let t0 = Instant::now();
        for i in 1..=n {
            let due = t0 + Duration::from_secs_f64((i - 1) as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            let start = Instant::now();
            h.post("/api/extras/events/", &crate::process::event(i)).await?;
            sent.push(start);
            answered.push(Instant::now());
        }
        let complete = rx.wait_unique(n as usize, Duration::from_secs(60)).await;
        let arrivals = rx.counts.arrivals.lock().unwrap().clone();
        let mut after_answer = Vec::new();
        let mut after_send = Vec::new();
        for i in 1..=n {
            if let Some(at) = arrivals.get(&i) {
                after_answer.push(at.saturating_duration_since(answered[(i - 1) as usize]).as_secs_f64() * 1000.0);
                after_send.push(at.saturating_duration_since(sent[(i - 1) as usize]).as_secs_f64() * 1000.0);
            }
        }
        after_answer.sort_by(f64::total_cmp);
        after_send.sort_by(f64::total_cmp);
        let pct = |v: &[f64], p: f64| {
            v.get(((v.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        r.target(
            "latency",
            "answer → arrival p50",
            pct(&after_answer, 0.5),
            "ms",
            0.5,
            false,
        );
        r.add("latency", "answer → arrival p95", pct(&after_answer, 0.95), "ms");
        r.target(
            "latency",
            "answer → arrival p99",
            pct(&after_answer, 0.99),
            "ms",
            2.0,
            false,
        );
        r.add("latency", "answer → arrival max", pct(&after_answer, 1.0), "ms");
        r.add("latency", "request sent → arrival p50", pct(&after_send, 0.5), "ms");
        r.add("latency", "request sent → arrival p99", pct(&after_send, 0.99), "ms");
        r.check_arrivals(
            "latency",
            &format!("{} of {n} events arrived", arrivals.len()),
            complete,
            &rx,
        );
        h.stop().await;
        Ok(())
    }
}
