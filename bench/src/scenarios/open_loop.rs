//! Single events at a fixed rate, each sent when it is due whatever the answers before it
//! (an open loop, as changes arrive from many clients): from the API's answer to arrival.

use super::Bench;
use crate::process::TOKEN;
use crate::report::Report;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rates measured, events per second.
const RATES: [u64; 3] = [1_000, 5_000, 10_000];

/// Clients posting, each on a keep-alive connection of its own.
const CLIENTS: usize = 32;

impl Bench {
    pub async fn open_loop(&self, r: &mut Report) -> anyhow::Result<()> {
        let (rates, secs): (&[u64], f64) = if self.quick { (&RATES[..1], 1.0) } else { (&RATES, 5.0) };
        for &rate in rates {
            let scenario: &'static str = match rate {
                1_000 => "open loop 1,000/s",
                5_000 => "open loop 5,000/s",
                _ => "open loop 10,000/s",
            };
            let (_db, h, rx) = self.with_webhook("open-loop").await?;
            let n = (rate as f64 * secs) as u64;
            let answered: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
            let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
            // Clients with a keep-alive connection each take the events as they fall due; when
            // every one is busy, an event waits for the first free (as behind a client's pool).
            let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let due_rx = Arc::new(tokio::sync::Mutex::new(due_rx));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CLIENTS {
                let (client, url) = (h.client.clone(), format!("{}/api/extras/events/", h.base));
                let (answered, refused, due_rx) = (answered.clone(), refused.clone(), due_rx.clone());
                tasks.spawn(async move {
                    loop {
                        let Some(i) = due_rx.lock().await.recv().await else {
                            return;
                        };
                        let sent = client
                            .post(&url)
                            .header("Authorization", format!("Token {TOKEN}"))
                            .header("Content-Type", "application/json")
                            .body(crate::process::event(i).to_string())
                            .timeout(Duration::from_secs(30))
                            .send()
                            .await;
                        match sent {
                            Ok(resp) if resp.status().is_success() => {
                                answered.lock().unwrap().insert(i, Instant::now());
                            }
                            _ => {
                                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
            let t0 = Instant::now();
            for i in 1..=n {
                let due = t0 + Duration::from_secs_f64((i - 1) as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let _ = due_tx.send(i);
            }
            drop(due_tx);
            let offered = n as f64 / t0.elapsed().as_secs_f64();
            while tasks.join_next().await.is_some() {}
            let complete = rx.wait_unique(n as usize, Duration::from_secs(60)).await;
            let arrivals = rx.counts.arrivals.lock().unwrap().clone();
            let answered = answered.lock().unwrap().clone();
            let mut waits: Vec<f64> = answered
                .iter()
                .filter_map(|(i, at)| {
                    arrivals
                        .get(i)
                        .map(|a| a.saturating_duration_since(*at).as_secs_f64() * 1000.0)
                })
                .collect();
            waits.sort_by(f64::total_cmp);
            let pct = |p: f64| {
                waits
                    .get(((waits.len() as f64 - 1.0) * p).round() as usize)
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            let goal = if rate <= 1_000 { 1.0 } else { 10.0 };
            r.add(scenario, "offered", offered, "events/s");
            r.add(scenario, "answer → arrival p50", pct(0.5), "ms");
            r.target(scenario, "answer → arrival p99", pct(0.99), "ms", goal, false);
            r.add(scenario, "answer → arrival max", pct(1.0), "ms");
            r.add(
                scenario,
                "refused or unanswered",
                refused.load(std::sync::atomic::Ordering::Relaxed) as f64,
                "",
            );
            r.check_arrivals(
                scenario,
                &format!("{} of {n} events arrived within 60 s of the last post", arrivals.len()),
                complete,
                &rx,
            );
            h.stop().await;
        }
        Ok(())
    }
}
