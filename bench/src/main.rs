//! `herald-bench`: starts the real `herald` binary on a fresh database for each scenario, with
//! its own signature-checking receiver, and measures. Every scenario is bounded in count and
//! time. Exits non-zero if a signature is invalid or a delivery is missing.

mod process;
mod receiver;
mod report;
mod scenarios;

use anyhow::Context;
use clap::Parser;
use report::{fmt, Report};
use scenarios::Bench;
use std::path::PathBuf;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    All,
    Deliver,
    Baseline,
    Latency,
    OpenLoop,
    Fanout,
    Backlog,
    Isolation,
    Api,
    Workers,
    Guarantees,
    Storage,
    Inventory,
    Ui,
}

#[derive(Parser, Debug)]
#[command(name = "herald-bench", about = "Measure Herald end to end")]
struct Args {
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Small counts: a smoke run of a few seconds.
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The herald binary (default: next to this one).
    #[arg(long)]
    herald: Option<PathBuf>,
    /// Database backend: `sqlite`, or a PostgreSQL server URL (`postgres://user@host/db`)
    /// on which each scenario makes a database of its own and drops it after.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Events in the deliver and baseline scenarios.
    #[arg(long)]
    events: Option<u64>,
    /// Deliveries queued in the backlog scenario.
    #[arg(long)]
    backlog: Option<u64>,
    /// IP addresses made in the inventory scenario (1,000,000; 20,000 with --quick).
    #[arg(long)]
    objects: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let postgres = match args.database.as_str() {
        "sqlite" => None,
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => Some(url.to_string()),
        other => anyhow::bail!("--database {other:?}: expected sqlite or postgres://USER@HOST/DB"),
    };
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
        objects: args.objects.unwrap_or(if args.quick { 20_000 } else { 1_000_000 }),
        postgres,
    };
    let started = Instant::now();
    let report = run(&bench, args.scenario, started).await?;
    println!("{}", report.markdown());
    let backend = match &bench.postgres {
        Some(_) => "PostgreSQL: a database per scenario, the server's own settings (each commit flushed)",
        None => "SQLite: WAL, synchronous=NORMAL (commits survive a process crash)",
    };
    println!(
        "{backend}. {} run in {:.0} s.",
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

/// Runs `which` (every scenario for `All`), printing each one's figures as it ends.
async fn run(bench: &Bench, which: Scenario, started: Instant) -> anyhow::Result<Report> {
    let wants = |s: Scenario| which == Scenario::All || which == s;
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
    if wants(Scenario::Deliver) {
        deliver_rate = Some(bench.deliver(&mut report).await.context("deliver")?);
        progress(&report, "deliver");
    }
    if wants(Scenario::Baseline) {
        let base = bench.baseline(&mut report).await.context("baseline")?;
        if let Some(d) = deliver_rate {
            report.target("baseline", "deliver ÷ baseline", d / base, "", 0.5, true);
        }
        progress(&report, "baseline");
    }
    if wants(Scenario::Latency) {
        bench.latency(&mut report).await.context("latency")?;
        progress(&report, "latency");
    }
    if wants(Scenario::OpenLoop) {
        bench.open_loop(&mut report).await.context("open-loop")?;
        progress(&report, "open-loop");
    }
    if wants(Scenario::Fanout) {
        bench.fanout(&mut report).await.context("fanout")?;
        progress(&report, "fanout");
    }
    if wants(Scenario::Backlog) {
        bench.backlog(&mut report, deliver_rate).await.context("backlog")?;
        progress(&report, "backlog");
    }
    if wants(Scenario::Isolation) {
        bench.isolation(&mut report).await.context("isolation")?;
        progress(&report, "isolation");
    }
    if wants(Scenario::Api) {
        bench.api(&mut report).await.context("api")?;
        progress(&report, "api");
    }
    if wants(Scenario::Workers) {
        bench.workers(&mut report).await.context("workers")?;
        progress(&report, "workers");
    }
    if wants(Scenario::Guarantees) {
        bench.guarantees(&mut report).await.context("guarantees")?;
        progress(&report, "guarantees");
    }
    if wants(Scenario::Storage) {
        bench.storage(&mut report).await.context("storage")?;
        progress(&report, "storage");
    }
    if wants(Scenario::Inventory) {
        bench.inventory(&mut report).await.context("inventory")?;
        progress(&report, "inventory");
    }
    if wants(Scenario::Ui) {
        bench.ui(&mut report).await.context("ui")?;
        progress(&report, "ui");
    }
    Ok(report)
}
