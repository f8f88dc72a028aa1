//! `herald-bench`: starts the real `herald` binary on a fresh database for each scenario, with
//! its own signature-checking receiver, and measures. Every scenario is bounded in count and
//! time. Exits non-zero if a signature is invalid or a delivery is missing.

mod process;
mod receiver;

use anyhow::Context;
use clap::Parser;
use process::{database_bytes, database_url, post_events, Herald};
use receiver::Receiver;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "herald-bench", about = "Measure Herald end to end")]
struct Args {
    /// all, deliver, baseline, latency, fanout, backlog, isolation, api
    #[arg(default_value = "all")]
    scenario: String,
    /// Small counts: a smoke run of a few seconds.
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The herald binary (default: next to this one).
    #[arg(long)]
    herald: Option<PathBuf>,
    /// Database backend.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Events in the deliver and baseline scenarios.
    #[arg(long)]
    events: Option<u64>,
    /// Deliveries queued in the backlog scenario.
    #[arg(long)]
    backlog: Option<u64>,
}

/// One measured figure.
struct Row {
    scenario: &'static str,
    metric: String,
    value: f64,
    unit: &'static str,
    target: Option<(f64, bool)>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Report {
    fn add(&mut self, scenario: &'static str, metric: &str, value: f64, unit: &'static str) {
        self.rows.push(Row {
            scenario,
            metric: metric.into(),
            value,
            unit,
            target: None,
        });
    }

    /// A figure with a target: `at_least` true for ≥, false for ≤.
    fn target(
        &mut self,
        scenario: &'static str,
        metric: &str,
        value: f64,
        unit: &'static str,
        goal: f64,
        at_least: bool,
    ) {
        let met = if at_least { value >= goal } else { value <= goal };
        self.rows.push(Row {
            scenario,
            metric: metric.into(),
            value,
            unit,
            target: Some((goal, at_least)),
        });
        let _ = met;
    }

    /// Whether everything arrived, and every signature was valid.
    fn check_arrivals(&mut self, scenario: &str, what: &str, complete: bool, rx: &Receiver) {
        self.check(scenario, what, complete);
        self.check(
            scenario,
            "every signature valid",
            rx.counts.bad_signatures.load(Ordering::Relaxed) == 0,
        );
    }

    fn check(&mut self, scenario: &str, what: &str, ok: bool) {
        if !ok {
            self.failures.push(format!("{scenario}: {what}"));
        }
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| scenario | metric | value | target |\n|---|---|---|---|\n");
        for r in &self.rows {
            let target = match r.target {
                Some((goal, at_least)) => {
                    let met = if at_least { r.value >= goal } else { r.value <= goal };
                    format!(
                        "{} {} {}",
                        if at_least { "≥" } else { "≤" },
                        fmt(goal),
                        if met { "met" } else { "**missed**" }
                    )
                }
                None => String::new(),
            };
            out.push_str(&format!(
                "| {} | {} | {} {} | {} |\n",
                r.scenario,
                r.metric,
                fmt(r.value),
                r.unit,
                target
            ));
        }
        out
    }

    fn json(&self) -> Value {
        json!({
            "rows": self.rows.iter().map(|r| json!({
                "scenario": r.scenario, "metric": r.metric, "value": r.value, "unit": r.unit,
                "target": r.target.map(|(g, at_least)| json!({"value": g, "at_least": at_least})),
            })).collect::<Vec<_>>(),
            "failures": self.failures,
        })
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

struct Bench {
    exe: PathBuf,
    quick: bool,
    events: u64,
    backlog: u64,
}

impl Bench {
    async fn herald(&self, dir: &tempfile::TempDir, worker: bool) -> anyhow::Result<Herald> {
        Herald::start(&self.exe, &database_url(dir.path()), worker).await
    }

    /// A `serve` with its worker on a fresh database, a receiver, and one webhook to it (its
    /// folder is returned to keep it alive).
    async fn with_webhook(&self, name: &str) -> anyhow::Result<(tempfile::TempDir, Herald, Receiver)> {
        let dir = tempfile::tempdir()?;
        let h = self.herald(&dir, true).await?;
        let rx = Receiver::start(false).await;
        h.create_webhook(name, &rx.url(), 15).await?;
        Ok((dir, h, rx))
    }

    /// Events posted, deliveries timed from the first post to the last arrival.
    async fn deliver(&self, r: &mut Report) -> anyhow::Result<f64> {
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
    async fn baseline(&self, r: &mut Report) -> anyhow::Result<f64> {
        let rx = Receiver::start(false).await;
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
            now: chrono::Utc::now(),
            request_id: "fdbca812-3142-4783-b364-2e2bd5c16c6a",
        };
        let mut requests = Vec::with_capacity(n as usize);
        for i in 1..=n {
            let events = herald::events::ingest::parse(process::event(i), &catalog, &defaults)
                .map_err(|e| anyhow::anyhow!("bad bench event: {e}"))?;
            let body = events[0].default_body();
            let sig = herald::webhooks::request::sign(receiver::SECRET, body.as_bytes());
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
    async fn latency(&self, r: &mut Report) -> anyhow::Result<()> {
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
            h.post("/api/extras/events/", &process::event(i)).await?;
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

    /// Each event matches 100 webhooks.
    async fn fanout(&self, r: &mut Report) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let h = self.herald(&dir, true).await?;
        let rx = Receiver::start(false).await;
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
    async fn backlog(&self, r: &mut Report, deliver_rate: Option<f64>) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let rx = Receiver::start(false).await;
        let n = self.backlog;
        let h = self.herald(&dir, false).await?;
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
            database_bytes(dir.path()) as f64 / (1024.0 * 1024.0),
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

        let h = self.herald(&dir, true).await?;
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
    async fn isolation(&self, r: &mut Report) -> anyhow::Result<()> {
        let n = if self.quick { 500 } else { 5_000 };
        let window = Duration::from_secs(if self.quick { 10 } else { 60 });
        let mut rates = Vec::new();
        for with_hang in [false, true] {
            let dir = tempfile::tempdir()?;
            let h = self.herald(&dir, true).await?;
            let healthy = Receiver::start(false).await;
            let hanging = Receiver::start(true).await;
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

    /// The inventory API: single-object creates per second (one client, then eight at once,
    /// while the worker delivers), and 1,000-object bulk creates, each change with one matching
    /// webhook; every change must arrive at the receiver, signed.
    async fn api(&self, r: &mut Report) -> anyhow::Result<()> {
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
                        .header("Authorization", format!("Token {}", process::TOKEN))
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.database == "sqlite", "only the sqlite backend exists so far");
    let exe = match args.herald {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("herald"),
    };
    anyhow::ensure!(
        exe.exists(),
        "{} not found: build it first (cargo build --release --bins)",
        exe.display()
    );
    let bench = Bench {
        exe,
        quick: args.quick,
        events: args.events.unwrap_or(if args.quick { 2_000 } else { 50_000 }),
        backlog: args.backlog.unwrap_or(if args.quick { 10_000 } else { 1_000_000 }),
    };
    let all = args.scenario == "all";
    let wants = |s: &str| all || args.scenario == s;
    let known = [
        "all",
        "deliver",
        "baseline",
        "latency",
        "fanout",
        "backlog",
        "isolation",
        "api",
    ];
    anyhow::ensure!(
        known.contains(&args.scenario.as_str()),
        "unknown scenario {:?}: one of {known:?}",
        args.scenario
    );

    let started = Instant::now();
    let mut report = Report::default();
    let mut shown = 0;
    let mut progress = |report: &Report, name: &str| {
        eprintln!("herald-bench: {name} done at {:.0} s", started.elapsed().as_secs_f64());
        for r in &report.rows[shown..] {
            eprintln!("  {} {}: {} {}", r.scenario, r.metric, fmt(r.value), r.unit);
        }
        shown = report.rows.len();
    };
    let mut deliver_rate = None;
    if wants("deliver") {
        deliver_rate = Some(bench.deliver(&mut report).await.context("deliver")?);
        progress(&report, "deliver");
    }
    if wants("baseline") {
        let base = bench.baseline(&mut report).await.context("baseline")?;
        if let Some(d) = deliver_rate {
            report.target("baseline", "deliver ÷ baseline", d / base, "", 0.5, true);
        }
        progress(&report, "baseline");
    }
    if wants("latency") {
        bench.latency(&mut report).await.context("latency")?;
        progress(&report, "latency");
    }
    if wants("fanout") {
        bench.fanout(&mut report).await.context("fanout")?;
        progress(&report, "fanout");
    }
    if wants("backlog") {
        bench.backlog(&mut report, deliver_rate).await.context("backlog")?;
        progress(&report, "backlog");
    }
    if wants("isolation") {
        bench.isolation(&mut report).await.context("isolation")?;
        progress(&report, "isolation");
    }
    if wants("api") {
        bench.api(&mut report).await.context("api")?;
        progress(&report, "api");
    }
    println!("{}", report.markdown());
    println!(
        "SQLite: WAL, synchronous=NORMAL (commits survive a process crash). {} run in {:.0} s.",
        if bench.quick { "Quick" } else { "Full" },
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report.json())?)?;
    }
    if !report.failures.is_empty() {
        for f in &report.failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
    Ok(())
}
