//! `/metrics` after known work, checked value by value and by Debian's `promtool`: on one
//! process (both backends), and on a PostgreSQL fleet where an API node and a worker each
//! expose their own.

use crate::common::postgres::{scratch_db, server_url};
use crate::common::{site_event, wait_for, Backend, Behavior, TestApp, TestReceiver};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const METRICS_TOKEN: &str = "metrics-token-0123456789";
pub(crate) const TOKEN: &str = "0b5e7e0b5e7e0b5e7e0b5e7e0b5e7e0b5e7e0b5e";

/// One series of a scrape: its labels and value.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a Prometheus text scrape (comments skipped).
fn parse(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (head, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut map = BTreeMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number in {line:?}")),
        };
        out.push(Series {
            name: name.to_string(),
            labels: map,
            value,
        });
    }
    out
}

/// The sum of the series named `name` whose labels include all of `want`.
fn value(series: &[Series], name: &str, want: &[(&str, &str)]) -> f64 {
    series
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Sites created through the API, as `herald_http_requests_total` counts them.
fn sites_created(series: &[Series]) -> f64 {
    series
        .iter()
        .filter(|x| x.name == "herald_http_requests_total" && x.labels["route"] == "/api/dcim/sites/")
        .filter(|x| x.labels["method"] == "POST" && x.labels["status"] == "201")
        .map(|x| x.value)
        .sum()
}

fn has(series: &[Series], name: &str) -> bool {
    series.iter().any(|s| s.name == name)
}

/// `promtool check metrics` passes on `text`.
async fn promtool_passes(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; tests/setup.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("promtool answers within 30 s")
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) async fn get(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client.get(url);
    if let Some(t) = bearer {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

async fn scrape(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> String {
    let (status, headers, text) = get(client, url, bearer).await;
    assert_eq!(status, 200, "{url}: {text}");
    assert_eq!(
        headers["content-type"], "text/plain; version=0.0.4; charset=utf-8",
        "the Prometheus text format"
    );
    text
}

async fn metrics_count_what_happened(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.metrics.token = METRICS_TOKEN.into()).await;
    let ok = TestReceiver::start().await;
    let bad = TestReceiver::start().await;
    bad.set(Behavior::Status(500, "down".into()));
    let a = app
        .create_webhook(json!({"payload_url": ok.url("/a"), "body_template": "{{ data.name }}"}))
        .await;
    let b = app
        .create_webhook(json!({"payload_url": bad.url("/b"), "content_types": ["dcim.region"],
                               "retry_schedule": [0.1, 0.1]}))
        .await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    for name in ["Site 1", "Site 2"] {
        let slug = name.to_lowercase().replace(' ', "-");
        let (status, body) = app
            .call("POST", "/api/dcim/sites/", Some(json!({"name": name, "slug": slug})))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = app
        .call(
            "POST",
            "/api/dcim/regions/",
            Some(json!({"name": "Europe", "slug": "europe"})),
        )
        .await;
    assert_eq!(status, 201);
    // A NetBox event relayed, then posted again: one event, one duplicate.
    let relayed = site_event("created", 77, "Relayed");
    assert_eq!(app.send_events(relayed.clone()).await["duplicate"], false);
    assert_eq!(app.send_events(relayed).await["duplicate"], true);
    let (status, _) = app.call("GET", "/api/dcim/sites/999999/", None).await;
    assert_eq!(status, 404);
    ok.wait_for(3).await;
    for id in app.delivery_ids(b).await.into_iter().chain(app.delivery_ids(a).await) {
        app.wait_delivery_done(id).await;
    }

    let client = reqwest::Client::new();
    let metrics = app.url("/metrics");
    let (status, headers, body) = get(&client, &metrics, None).await;
    assert_eq!(status, 401, "closed to anonymous callers: {body}");
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(get(&client, &metrics, Some("wrong-token-0123456789")).await.0, 401);
    let text = scrape(&client, &metrics, Some(METRICS_TOKEN)).await;
    let s = parse(&text);
    let (a, b) = (a.to_string(), b.to_string());
    let (a, b) = (a.as_str(), b.as_str());
    assert_eq!(
        value(
            &s,
            "herald_deliveries_total",
            &[("webhook", a), ("outcome", "succeeded")]
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        value(&s, "herald_deliveries_total", &[("webhook", b), ("outcome", "retried")]),
        2.0
    );
    assert_eq!(
        value(&s, "herald_deliveries_total", &[("webhook", b), ("outcome", "failed")]),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "herald_deliveries_total",
            &[("webhook", b), ("outcome", "succeeded")]
        ),
        0.0
    );
    assert_eq!(
        value(&s, "herald_attempts_total", &[("webhook", a), ("status_class", "2xx")]),
        3.0
    );
    assert_eq!(
        value(&s, "herald_attempts_total", &[("webhook", b), ("status_class", "5xx")]),
        3.0
    );
    assert_eq!(
        value(&s, "herald_attempt_duration_seconds_count", &[("webhook", a)]),
        3.0
    );
    assert_eq!(
        value(&s, "herald_attempt_duration_seconds_count", &[("webhook", b)]),
        3.0
    );
    assert_eq!(value(&s, "herald_delivery_latency_seconds_count", &[]), 3.0);
    // Only A renders templates: once per attempt.
    assert_eq!(value(&s, "herald_template_render_seconds_count", &[]), 3.0);
    assert_eq!(value(&s, "herald_events_ingested_total", &[("source", "api")]), 3.0);
    assert_eq!(value(&s, "herald_events_ingested_total", &[("source", "relay")]), 1.0);
    assert_eq!(
        value(&s, "herald_events_ingested_total", &[("source", "duplicate")]),
        1.0
    );
    let events = [("route", "/api/extras/events/"), ("method", "POST"), ("status", "202")];
    assert_eq!(value(&s, "herald_http_requests_total", &events), 2.0);
    assert_eq!(
        value(
            &s,
            "herald_http_request_duration_seconds_count",
            &[("route", "/api/extras/events/")]
        ),
        2.0
    );
    assert_eq!(sites_created(&s), 2.0);
    let missing = s
        .iter()
        .find(|x| x.name == "herald_http_requests_total" && x.labels["status"] == "404")
        .expect("the 404 is counted");
    assert!(
        !missing.labels["route"].contains("999999"),
        "routes are patterns, never raw paths: {missing:?}"
    );
    for (status, n) in [
        ("succeeded", 3.0),
        ("failed", 1.0),
        ("queued", 0.0),
        ("retrying", 0.0),
        ("in_flight", 0.0),
    ] {
        assert_eq!(
            value(&s, "herald_queue_deliveries", &[("status", status)]),
            n,
            "{status}"
        );
    }
    assert_eq!(value(&s, "herald_queue_oldest_due_seconds", &[]), 0.0);
    assert_eq!(value(&s, "herald_worker_sends_in_flight", &[]), 0.0);
    assert_eq!(value(&s, "herald_worker_destination_slots_in_use", &[]), 0.0);
    assert_eq!(
        value(&s, "herald_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert_eq!(
        has(&s, "herald_postgres_pool_connections"),
        backend == Backend::Postgres
    );
    assert!(!text.contains("127.0.0.1"), "no URL is a label value");
    promtool_passes(&text).await;

    let (status, _, body) = get(&client, &app.url("/healthz"), None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _, body) = get(&client, &app.url("/readyz"), None).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

/// A PostgreSQL fleet: an API node and a worker process, each with its own `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleets_api_node_and_worker_each_expose_their_own_metrics() {
    let Some(server) = server_url("the fleet's metrics are not checked") else {
        return;
    };
    let db = scratch_db(&server).await;
    let env = [
        ("HERALD_POSTGRES__POOL_SIZE", "3"),
        ("HERALD_METRICS__TOKEN", METRICS_TOKEN),
    ];
    let (node, base) = crate::common::process::serve(&db.url, TOKEN, &["--no-worker"], &env).await;
    let (worker, worker_base) = crate::common::process::watched_worker(&db.url, &env[..1]).await;
    let client = reqwest::Client::new();
    let call = |method: &str, path: &str, body: Value| {
        client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("Authorization", format!("Token {TOKEN}"))
            .json(&body)
            .send()
    };
    let ok = TestReceiver::start().await;
    let hook = call(
        "POST",
        "/api/extras/webhooks/",
        json!({"name": "fleet", "content_types": ["dcim.site"], "type_create": true, "payload_url": ok.url("/")}),
    )
    .await
    .unwrap();
    assert_eq!(hook.status(), 201);
    let hook = hook.json::<Value>().await.unwrap()["id"].as_i64().unwrap().to_string();
    for i in 1..=2 {
        let resp = call(
            "POST",
            "/api/dcim/sites/",
            json!({"name": format!("S{i}"), "slug": format!("s{i}")}),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 201);
    }
    ok.wait_for(2).await;

    // The worker's own listener is open, and counts what it sent.
    let worker_metrics = format!("{worker_base}/metrics");
    let text = wait_for(
        Duration::from_secs(30),
        "the worker to count and read both deliveries",
        || async {
            let text = scrape(&client, &worker_metrics, None).await;
            let s = parse(&text);
            let sent = value(
                &s,
                "herald_deliveries_total",
                &[("webhook", hook.as_str()), ("outcome", "succeeded")],
            );
            let stored = value(&s, "herald_queue_deliveries", &[("status", "succeeded")]);
            (sent == 2.0 && stored == 2.0).then_some(text)
        },
    )
    .await;
    let s = parse(&text);
    assert_eq!(
        value(
            &s,
            "herald_attempts_total",
            &[("webhook", hook.as_str()), ("status_class", "2xx")]
        ),
        2.0
    );
    assert!(
        value(&s, "herald_postgres_pool_connections", &[("state", "size")]) >= 1.0,
        "{text}"
    );
    assert!(!has(&s, "herald_http_requests_total"), "the worker answers no API");
    assert!(!has(&s, "herald_events_ingested_total"), "nor takes in events");
    promtool_passes(&text).await;
    assert_eq!(get(&client, &format!("{worker_base}/readyz"), None).await.0, 200);
    assert_eq!(get(&client, &format!("{worker_base}/healthz"), None).await.0, 200);

    // The API node counts requests and events, and sends nothing.
    let text = scrape(&client, &format!("{base}/metrics"), Some(METRICS_TOKEN)).await;
    let s = parse(&text);
    assert_eq!(
        value(&s, "herald_events_ingested_total", &[("source", "api")]),
        2.0,
        "{text}"
    );
    assert_eq!(sites_created(&s), 2.0);
    assert!(!has(&s, "herald_deliveries_total"), "the node has no worker");
    assert!(value(&s, "herald_postgres_pool_connections", &[("state", "size")]) >= 1.0);
    promtool_passes(&text).await;

    for child in [node, worker] {
        herald_testkit::process::stop(child).await;
    }
    drop(db);
}

crate::on_each_backend!(metrics_count_what_happened);
