//! What one Herald process measures, in Prometheus's text format (`GET /metrics`): deliveries
//! and attempts per webhook, latencies, the queue as the database holds it, the worker's send
//! slots, HTTP requests by route, template rendering, events taken in, the PostgreSQL pool.
//!
//! Each process has its own recorder (no global one), so processes, and the Heralds of one test
//! program, never mix their figures. Label values are bounded: webhook ids, route patterns,
//! status classes, never URLs or raw paths.

use metrics::{Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const DELIVERIES: &str = "herald_deliveries_total";
pub const ATTEMPTS: &str = "herald_attempts_total";
pub const DELIVERY_LATENCY: &str = "herald_delivery_latency_seconds";
pub const ATTEMPT_DURATION: &str = "herald_attempt_duration_seconds";
pub const QUEUE: &str = "herald_queue_deliveries";
pub const QUEUE_OLDEST_DUE: &str = "herald_queue_oldest_due_seconds";
pub const SENDS_IN_FLIGHT: &str = "herald_worker_sends_in_flight";
pub const DESTINATION_SLOTS: &str = "herald_worker_destination_slots_in_use";
pub const HTTP_REQUESTS: &str = "herald_http_requests_total";
pub const HTTP_DURATION: &str = "herald_http_request_duration_seconds";
pub const TEMPLATE_RENDER: &str = "herald_template_render_seconds";
pub const EVENTS_INGESTED: &str = "herald_events_ingested_total";
pub const POOL: &str = "herald_postgres_pool_connections";
pub const SQLITE_COMMITS: &str = "herald_sqlite_commits_total";
pub const SQLITE_WRITES: &str = "herald_sqlite_writes_total";
pub const BUILD_INFO: &str = "herald_build_info";

/// How often the histograms' samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How often the queue's gauges are read from the database, at most.
pub const QUEUE_READ_EVERY: Duration = Duration::from_secs(5);

const SECONDS_SHORT: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SECONDS_SEND: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const SECONDS_LATENCY: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0,
];
const SECONDS_RENDER: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

static META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// How a delivery's attempt ended, as `herald_attempts_total` counts it.
pub fn status_class(status: Option<u16>, timed_out: bool) -> &'static str {
    match (status, timed_out) {
        (_, true) => "timeout",
        (Some(200..=299), _) => "2xx",
        (Some(300..=399), _) => "3xx",
        (Some(400..=499), _) => "4xx",
        (Some(500..=599), _) => "5xx",
        _ => "error",
    }
}

/// One process's measurements.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// When the queue's gauges were last read from the database.
    queue_read: Mutex<Option<Instant>>,
    /// The delivery worker of this process, if it runs one: whether its last claim worked.
    claims: Mutex<Option<Result<(), String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (DELIVERY_LATENCY, SECONDS_LATENCY),
            (ATTEMPT_DURATION, SECONDS_SEND),
            (HTTP_DURATION, SECONDS_SHORT),
            (TEMPLATE_RENDER, SECONDS_RENDER),
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                .expect("bucket lists are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder,
            handle,
            queue_read: Mutex::new(None),
            claims: Mutex::new(None),
        };
        m.describe();
        m.gauge(BUILD_INFO, vec![Label::new("version", env!("CARGO_PKG_VERSION"))])
            .set(1.0);
        for name in [SENDS_IN_FLIGHT, DESTINATION_SLOTS] {
            m.gauge(name, vec![]).set(0.0);
        }
        m
    }

    fn describe(&self) {
        let r = &self.recorder;
        let counters = [
            (DELIVERIES, "Delivery outcomes recorded by this process, by webhook id and outcome (succeeded, failed, retried)."),
            (ATTEMPTS, "Attempts sent by this process, by webhook id and status class (2xx, 3xx, 4xx, 5xx, timeout, error)."),
            (HTTP_REQUESTS, "HTTP requests answered, by route pattern, method and status."),
            (SQLITE_COMMITS, "Write transactions this process committed (or rolled back) on SQLite; writes sent together share one."),
            (SQLITE_WRITES, "Write jobs (requests' transactions, claims, outcome batches) in those transactions."),
            (EVENTS_INGESTED, "Events taken in: api (changes made through Herald's API), relay (posted NetBox events), duplicate (posted again within the intake window, not queued)."),
        ];
        for (name, help) in counters {
            r.describe_counter(name.into(), None, help.into());
        }
        let gauges = [
            (QUEUE, "Deliveries in the database by status, read every few seconds at most."),
            (QUEUE_OLDEST_DUE, "How long the longest-waiting due delivery has been due (0 when none is), read every few seconds at most."),
            (SENDS_IN_FLIGHT, "Requests this process's worker is sending now."),
            (DESTINATION_SLOTS, "Per-destination send slots this process's worker holds now."),
            (POOL, "PostgreSQL connections of this process's pool, by state (size, available, waiting)."),
            (BUILD_INFO, "Herald's version; always 1."),
        ];
        for (name, help) in gauges {
            r.describe_gauge(name.into(), None, help.into());
        }
        let histograms = [
            (
                DELIVERY_LATENCY,
                "From the change to its delivery's successful arrival.",
            ),
            (
                ATTEMPT_DURATION,
                "How long each attempt took to send and answer, by webhook id.",
            ),
            (
                HTTP_DURATION,
                "How long HTTP requests took to answer, by route pattern.",
            ),
            (
                TEMPLATE_RENDER,
                "How long rendering a webhook's templates took, in the sandbox.",
            ),
        ];
        for (name, help) in histograms {
            r.describe_histogram(name.into(), Some(Unit::Seconds), help.into());
        }
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        self.recorder.register_counter(&Key::from_parts(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> metrics::Gauge {
        self.recorder.register_gauge(&Key::from_parts(name, labels), &META)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> metrics::Histogram {
        self.recorder.register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// Folds the histograms' recent samples into their buckets every few seconds, until
    /// `shutdown`: what keeps a process nobody scrapes from holding every sample.
    pub async fn keep_up(self: std::sync::Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(UPKEEP_EVERY) => self.handle.run_upkeep(),
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// A delivery's outcome: `succeeded`, `failed` (for good) or `retried`.
    pub fn outcome(&self, webhook_id: i64, outcome: &'static str) {
        self.counter(
            DELIVERIES,
            vec![
                Label::new("webhook", webhook_id.to_string()),
                Label::new("outcome", outcome),
            ],
        )
        .increment(1);
    }

    /// An attempt sent (or that could not be): its class and how long it took.
    pub fn attempt(&self, webhook_id: i64, class: &'static str, took: Duration) {
        let webhook = webhook_id.to_string();
        self.counter(
            ATTEMPTS,
            vec![
                Label::new("webhook", webhook.clone()),
                Label::new("status_class", class),
            ],
        )
        .increment(1);
        self.histogram(ATTEMPT_DURATION, vec![Label::new("webhook", webhook)])
            .record(took.as_secs_f64());
    }

    /// A delivery arrived, `seconds` after its change.
    pub fn delivered(&self, seconds: f64) {
        self.histogram(DELIVERY_LATENCY, vec![]).record(seconds.max(0.0));
    }

    pub fn rendered(&self, took: Duration) {
        self.histogram(TEMPLATE_RENDER, vec![]).record(took.as_secs_f64());
    }

    /// `n` events taken in from `source` (api, relay, duplicate).
    pub fn ingested(&self, source: &'static str, n: usize) {
        if n > 0 {
            self.counter(EVENTS_INGESTED, vec![Label::new("source", source)])
                .increment(n as u64);
        }
    }

    /// One HTTP request answered.
    pub fn http(&self, route: String, method: &'static str, status: u16, took: Duration) {
        self.counter(
            HTTP_REQUESTS,
            vec![
                Label::new("route", route.clone()),
                Label::new("method", method),
                Label::new("status", status.to_string()),
            ],
        )
        .increment(1);
        self.histogram(HTTP_DURATION, vec![Label::new("route", route)])
            .record(took.as_secs_f64());
    }

    /// A send starts; it ends when the guard is dropped.
    pub fn sending(&self) -> Held {
        Held::new(self.gauge(SENDS_IN_FLIGHT, vec![]))
    }

    /// A per-destination slot is taken; it is given back when the guard is dropped.
    pub fn destination_slot(&self) -> Held {
        Held::new(self.gauge(DESTINATION_SLOTS, vec![]))
    }

    /// Whether the queue's gauges are due a read from the database (and if so, marks them read).
    pub fn queue_read_due(&self) -> bool {
        let mut last = crate::sync::lock(&self.queue_read);
        if last.is_some_and(|t| t.elapsed() < QUEUE_READ_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The queue as read: deliveries per status, and how long the oldest due one has waited.
    pub fn set_queue(&self, counts: &[(&'static str, i64)], oldest_due_secs: f64) {
        for (status, n) in counts {
            self.gauge(QUEUE, vec![Label::new("status", *status)]).set(*n as f64);
        }
        self.gauge(QUEUE_OLDEST_DUE, vec![]).set(oldest_due_secs.max(0.0));
    }

    /// The PostgreSQL pool: its size, idle connections and callers waiting for one.
    pub fn set_pool(&self, size: usize, available: usize, waiting: usize) {
        for (state, n) in [("size", size), ("available", available), ("waiting", waiting)] {
            self.gauge(POOL, vec![Label::new("state", state)]).set(n as f64);
        }
    }

    /// SQLite's group commit: transactions so far, and the write jobs they held.
    pub fn set_write_groups(&self, commits: u64, writes: u64) {
        self.counter(SQLITE_COMMITS, vec![]).absolute(commits);
        self.counter(SQLITE_WRITES, vec![]).absolute(writes);
    }

    /// What this process's worker's last claim did.
    pub fn claimed(&self, result: Result<(), String>) {
        *crate::sync::lock(&self.claims) = Some(result);
    }

    /// Why this process's worker cannot claim work, if it runs one and its last claim failed.
    pub fn claim_problem(&self) -> Option<String> {
        match &*crate::sync::lock(&self.claims) {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

/// One unit of a gauge, held until dropped.
pub struct Held(metrics::Gauge);

impl Held {
    fn new(gauge: metrics::Gauge) -> Held {
        gauge.increment(1.0);
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn families_render_with_help_types_and_bounded_labels() {
        let m = Metrics::new();
        m.outcome(7, "succeeded");
        m.outcome(7, "succeeded");
        m.attempt(7, status_class(Some(503), false), Duration::from_millis(20));
        m.delivered(0.3);
        {
            let _a = m.sending();
            let _b = m.sending();
            assert_eq!(sample(&m.render(), SENDS_IN_FLIGHT), Some(2.0));
        }
        let text = m.render();
        assert_eq!(sample(&text, SENDS_IN_FLIGHT), Some(0.0));
        assert_eq!(
            sample(&text, "herald_deliveries_total{webhook=\"7\",outcome=\"succeeded\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "herald_attempts_total{webhook=\"7\",status_class=\"5xx\"}"),
            Some(1.0)
        );
        assert!(
            text.contains("# TYPE herald_delivery_latency_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "herald_delivery_latency_seconds_bucket{le=\"0.25\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "herald_delivery_latency_seconds_bucket{le=\"0.5\"}"),
            Some(1.0)
        );
        assert!(text.contains("# HELP herald_deliveries_total "), "{text}");
        assert_eq!(sample(&text, "herald_build_info{version="), Some(1.0));
    }

    #[test]
    fn attempts_are_classed() {
        assert_eq!(status_class(Some(204), false), "2xx");
        assert_eq!(status_class(Some(302), false), "3xx");
        assert_eq!(status_class(Some(429), false), "4xx");
        assert_eq!(status_class(None, true), "timeout");
        assert_eq!(status_class(None, false), "error");
        assert_eq!(status_class(Some(99), false), "error");
    }
}
