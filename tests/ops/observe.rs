//! Watching Herald from outside: `/metrics` after known work (checked value by value, and by
//! Debian's `promtool`), on one process and on a PostgreSQL fleet where an API node and a
//! worker each expose their own; `/healthz` and `/readyz` while the SQLite file is moved away
//! and back and while PostgreSQL is unreachable and back; `herald receiver` judging a signed
//! delivery and a tampered request; `herald backup` of a Herald taking writes.

use crate::common::postgres::{scratch_db, server_url};
use crate::common::{site_event, wait_for, Backend, Behavior, TestApp, TestReceiver};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const METRICS_TOKEN: &str = "metrics-token-0123456789";
const TOKEN: &str = "0b5e7e0b5e7e0b5e7e0b5e7e0b5e7e0b5e7e0b5e";

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

async fn get(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
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
    let created_sites: f64 = s
        .iter()
        .filter(|x| x.name == "herald_http_requests_total" && x.labels["route"].contains("sites"))
        .filter(|x| x.labels["method"] == "POST" && x.labels["status"] == "201")
        .map(|x| x.value)
        .sum();
    assert_eq!(created_sites, 2.0);
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
    let posted: f64 = s
        .iter()
        .filter(|x| x.name == "herald_http_requests_total" && x.labels["route"].contains("sites"))
        .filter(|x| x.labels["method"] == "POST" && x.labels["status"] == "201")
        .map(|x| x.value)
        .sum();
    assert_eq!(posted, 2.0);
    assert!(!has(&s, "herald_deliveries_total"), "the node has no worker");
    assert!(value(&s, "herald_postgres_pool_connections", &[("state", "size")]) >= 1.0);
    promtool_passes(&text).await;

    for child in [node, worker] {
        herald_testkit::process::stop(child).await;
    }
    drop(db);
}

/// The SQLite file moved away under a running Herald, then put back.
#[tokio::test]
async fn readiness_follows_the_sqlite_file_moved_away_and_back() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    let ready = app.url("/readyz");
    let (status, _, body) = get(&client, &ready, None).await;
    assert_eq!(status, 200, "{body}");
    let file = app.dir.path().join("herald.db");
    let aside = app.dir.path().join("herald.db.aside");
    std::fs::rename(&file, &aside).unwrap();
    let (status, _, body) = get(&client, &ready, None).await;
    assert_eq!(status, 503, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "not ready");
    assert!(
        answer["problems"][0].as_str().unwrap().contains("was deleted"),
        "{answer}"
    );
    assert_eq!(
        get(&client, &app.url("/healthz"), None).await.0,
        200,
        "the process still answers"
    );
    std::fs::rename(&aside, &file).unwrap();
    // Ready again once the worker's next claim works (it waits a second after a failed one).
    wait_for(Duration::from_secs(10), "/readyz to answer 200 again", || async {
        (get(&client, &ready, None).await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = app
        .call(
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "Back", "slug": "back"})),
        )
        .await;
    assert_eq!(status, 201, "writes go on once the file is back: {body}");
    app.stop().await;
}

/// A TCP relay to PostgreSQL that can be cut (every connection closed, new ones refused)
/// and restored.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (u, p) = (up.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                p.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Relay {
            addr,
            up,
            pipes,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// PostgreSQL unreachable under a running Herald (every connection cut), then back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_postgres_going_away_and_back() {
    let Some(server) = server_url("readiness on PostgreSQL is not checked") else {
        return;
    };
    let server = reqwest::Url::parse(&server).unwrap();
    let target = format!("{}:{}", server.host_str().unwrap(), server.port().unwrap_or(5432));
    let relay = Relay::start(target).await;
    let port = relay.addr.port();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        let mut url = reqwest::Url::parse(&c.database_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        c.database_url = url.to_string();
        c.postgres.connect_timeout_secs = 2.0;
        c.postgres.acquire_timeout_secs = 2.0;
    })
    .await;
    let client = reqwest::Client::new();
    let ready = app.url("/readyz");
    assert_eq!(get(&client, &ready, None).await.0, 200);
    relay.cut();
    let problems = wait_for(Duration::from_secs(20), "/readyz to answer 503", || async {
        let (status, _, body) = get(&client, &ready, None).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(problems.contains("the database"), "{problems}");
    assert_eq!(get(&client, &app.url("/healthz"), None).await.0, 200);
    relay.restore();
    wait_for(Duration::from_secs(30), "/readyz to answer 200 again", || async {
        (get(&client, &ready, None).await.0 == 200).then_some(())
    })
    .await;
    app.stop().await;
    drop(relay);
}

/// `herald receiver`, started as an operator would, with its output collected.
struct Receiver {
    child: tokio::process::Child,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(args: &[&str]) -> Receiver {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["receiver", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start herald receiver");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), out.next_line())
            .await
            .expect("the receiver says where it listens")
            .unwrap()
            .unwrap();
        let url = first
            .strip_prefix("Receiving on ")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let keep = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        Receiver { child, url, lines }
    }

    /// Waits until a printed line is `line`; returns everything printed so far.
    async fn wait_line(&self, line: &str) -> Vec<String> {
        wait_for(
            Duration::from_secs(30),
            &format!("the receiver to print {line:?}"),
            || async {
                let lines = self.lines.lock().unwrap().clone();
                lines.iter().any(|l| l == line).then_some(lines)
            },
        )
        .await
    }
}

#[tokio::test]
async fn the_receiver_tells_a_signed_delivery_from_a_tampered_request() {
    let secret = "receiver-secret-42";
    let rx = Receiver::start(&["--secret", secret, "--status", "202"]).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let hook = app
        .create_webhook(json!({"payload_url": format!("{}hook", rx.url), "secret": secret, "signature_scheme": "both"}))
        .await;
    let (status, _) = app
        .call(
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "Seen", "slug": "seen"})),
        )
        .await;
    assert_eq!(status, 201);
    let id = app.delivery_ids(hook["id"].as_i64().unwrap()).await[0];
    let done = app.wait_delivery_done(id).await;
    assert_eq!(done["status"]["value"], "succeeded", "answered 202: {done}");
    let lines = rx.wait_line("webhook-signature: valid").await;
    assert!(lines.iter().any(|l| l == "X-Hook-Signature: valid"), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("POST /hook from 127.0.0.1:")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l == r#"  "event": "created","#),
        "the body, pretty: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l == "answered 202"), "{lines:#?}");

    // The same kind of request with its body changed after signing.
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(br#"{"event": "created"}"#);
    let resp = reqwest::Client::new()
        .post(format!("{}tampered", rx.url))
        .header("X-Hook-Signature", hex::encode(mac.finalize().into_bytes()))
        .header("Content-Type", "application/json")
        .body(r#"{"event": "deleted"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let lines = rx.wait_line("X-Hook-Signature: INVALID for this secret").await;
    assert!(lines.iter().any(|l| l.starts_with("POST /tampered from")), "{lines:#?}");
    app.stop().await;
    herald_testkit::process::stop(rx.child).await;
}

/// The ids of every site a Herald at `base` holds.
async fn site_ids(client: &reqwest::Client, base: &str) -> std::collections::HashSet<i64> {
    let mut ids = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page: Value = client
            .get(format!("{base}/api/dcim/sites/?limit=1000&offset={offset}&brief=1"))
            .header("Authorization", format!("Token {TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let results = page["results"].as_array().unwrap();
        ids.extend(results.iter().map(|s| s["id"].as_i64().unwrap()));
        offset += 1000;
        if results.len() < 1000 {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_herald_taking_writes_holds_every_write_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let (herald, base) = crate::common::process::serve(&db, TOKEN, &["--no-worker"], &[]).await;
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, base, acked, stop) = (client.clone(), base.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(60);
            for i in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) || Instant::now() > until {
                    break;
                }
                let resp = client
                    .post(format!("{base}/api/dcim/sites/"))
                    .header("Authorization", format!("Token {TOKEN}"))
                    .json(&json!({"name": format!("Site {i}"), "slug": format!("site-{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
                let id = resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
                acked.lock().unwrap().push((id, Instant::now()));
            }
        })
    };
    wait_for(Duration::from_secs(30), "a first hundred writes", || async {
        (acked.lock().unwrap().len() >= 100).then_some(())
    })
    .await;
    let copy = dir.path().join("copy.db");
    let began = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["backup", copy.to_str().unwrap(), "--database", &db])
            .env("RUST_LOG", "error")
            .output(),
    )
    .await
    .expect("the backup ends within 60 s")
    .unwrap();
    let ended = Instant::now();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("To restore: stop Herald"), "{said}");
    wait_for(Duration::from_secs(30), "writes after the backup", || async {
        acked.lock().unwrap().iter().any(|(_, at)| *at > ended).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let before: Vec<i64> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| *id)
        .collect();
    assert!(before.len() >= 100);
    assert!(
        dir.path().join("copy.db.id").exists(),
        "the identity travels with the copy"
    );

    // Again into the same file: refused, the copy untouched.
    let again = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["backup", copy.to_str().unwrap(), "--database", &db])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let pg = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "backup",
            "/nonexistent/x.db",
            "--database",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .output()
        .await
        .unwrap();
    assert!(!pg.status.success());
    assert!(String::from_utf8_lossy(&pg.stderr).contains("pg_dump"));

    herald_testkit::process::stop(herald).await;
    let copy_url = format!("sqlite://{}", copy.display());
    let (restored, base) = crate::common::process::serve(&copy_url, TOKEN, &["--no-worker"], &[]).await;
    let held = site_ids(&client, &base).await;
    let lost: Vec<&i64> = before.iter().filter(|id| !held.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} writes acknowledged before the backup are missing",
        lost.len(),
        before.len()
    );
    let total = acked.lock().unwrap().len();
    assert!(
        held.len() < total,
        "the copy is of its moment: {} of {total}",
        held.len()
    );
    herald_testkit::process::stop(restored).await;
}

crate::on_each_backend!(metrics_count_what_happened);
