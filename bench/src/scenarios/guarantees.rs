//! What the delivery guarantees cost: intake de-duplication off, ordered webhooks (over distinct
//! objects, and over 100 objects that each go one at a time), a rate limit, and batches of
//! 1,000 events. Each runs on a fresh database against the signature-checking receiver.

use super::Bench;
use crate::process::{post_made, Herald};
use crate::report::Report;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Objects the "ordered, few objects" run spreads its events over.
const OBJECTS: u64 = 100;

/// Event `n`, about site `n % OBJECTS + 1` (a request id of its own, so none is a repeat).
fn event_about_few(n: u64) -> Value {
    let mut e = crate::process::event(n % OBJECTS + 1);
    e["request_id"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
    e["data"]["description"] = json!(format!("change {n}"));
    e
}

impl Bench {
    /// A serve with its worker, more settings in `env`, and one webhook with `fields`.
    async fn run_with(
        &self,
        env: &[(&str, &str)],
        fields: Value,
    ) -> anyhow::Result<(crate::process::Database, Herald, crate::receiver::Receiver)> {
        let db = self.database().await?;
        let h = Herald::start_with(&self.exe, &db.url(), true, env).await?;
        let rx = crate::receiver::start(false).await;
        h.create_webhook_with("guarantee", &rx.url(), 15, fields).await?;
        Ok((db, h, rx))
    }

    pub async fn guarantees(&self, r: &mut Report) -> anyhow::Result<()> {
        let n = self.events;
        let within = Duration::from_secs(300);
        let rate = |count: u64, t0: Instant, rx: &crate::receiver::Receiver| {
            let last = rx.counts.last.lock().unwrap().unwrap_or_else(Instant::now);
            count as f64 / (last - t0).as_secs_f64()
        };

        // Intake de-duplication off (ingest.dedup_window_secs = 0): what remembering keys costs.
        let (_db, h, rx) = self
            .run_with(&[("HERALD_INGEST__DEDUP_WINDOW_SECS", "0")], json!({}))
            .await?;
        let t0 = Instant::now();
        post_made(&h, 1, n + 1, 500, 4, crate::process::event).await?;
        let accepted = n as f64 / t0.elapsed().as_secs_f64();
        let complete = rx.wait_unique(n as usize, within).await;
        r.add("guarantees", "intake dedup off: events accepted", accepted, "events/s");
        r.add(
            "guarantees",
            "intake dedup off: deliveries arriving",
            rate(n, t0, &rx),
            "/s",
        );
        r.check_arrivals(
            "guarantees",
            &format!("dedup off: {} of {n} arrived", rx.unique()),
            complete,
            &rx,
        );
        h.stop().await;

        // Ordered, every event about another object: the cost of the check alone.
        let (_db, h, rx) = self.run_with(&[], json!({"ordered": true})).await?;
        let t0 = Instant::now();
        post_made(&h, 1, n + 1, 500, 4, crate::process::event).await?;
        let complete = rx.wait_unique(n as usize, within).await;
        r.add(
            "guarantees",
            "ordered, distinct objects: deliveries arriving",
            rate(n, t0, &rx),
            "/s",
        );
        r.check_arrivals(
            "guarantees",
            &format!("ordered: {} of {n} arrived", rx.unique()),
            complete,
            &rx,
        );
        h.stop().await;

        // Ordered over 100 objects: each object's deliveries one at a time.
        let few = n / 5;
        let (_db, h, rx) = self.run_with(&[], json!({"ordered": true})).await?;
        let t0 = Instant::now();
        post_made(&h, 1, few + 1, 500, 4, event_about_few).await?;
        let deadline = Instant::now() + within;
        while rx.received() < few && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r.add(
            "guarantees",
            "ordered, 100 objects: deliveries arriving",
            rate(few, t0, &rx),
            "/s",
        );
        r.check(
            "guarantees",
            &format!("ordered over 100 objects: {} of {few} arrived", rx.received()),
            rx.received() >= few,
        );
        h.stop().await;

        // A rate limit of 1,000/s: kept, and what it lets through.
        let limited = if self.quick { 1_000 } else { 10_000 };
        let (_db, h, rx) = self.run_with(&[], json!({"rate_limit": 1000})).await?;
        let t0 = Instant::now();
        post_made(&h, 1, limited + 1, 500, 4, crate::process::event).await?;
        let complete = rx.wait_unique(limited as usize, within).await;
        r.add(
            "guarantees",
            "rate_limit 1000/s: deliveries arriving",
            rate(limited, t0, &rx),
            "/s",
        );
        r.check_arrivals(
            "guarantees",
            &format!("rate limited: {} of {limited} arrived", rx.unique()),
            complete,
            &rx,
        );
        h.stop().await;

        // Batches: requests of 1,000 events, one delivery each.
        let batches = if self.quick { 5 } else { 50 };
        let events = batches * 1000;
        let (_db, h, rx) = self.run_with(&[], json!({"batch": true})).await?;
        let t0 = Instant::now();
        post_made(&h, 1, events + 1, 1000, 2, crate::process::event).await?;
        let complete = rx.wait_unique(events as usize, within).await;
        r.add(
            "guarantees",
            "batch of 1,000: events arriving",
            rate(events, t0, &rx),
            "events/s",
        );
        r.add("guarantees", "batch of 1,000: requests", rx.received() as f64, "");
        r.check("guarantees", "one request per batch", rx.received() == batches);
        r.check_arrivals(
            "guarantees",
            &format!("batched: {} of {events} arrived", rx.unique()),
            complete,
            &rx,
        );
        r.add("guarantees", "Herald RSS peak", h.rss_kib().1 as f64 / 1024.0, "MiB");
        h.stop().await;
        Ok(())
    }
}
