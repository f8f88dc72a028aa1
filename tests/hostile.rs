//! Herald attacked as someone with a token (or none) would: templates that build huge values,
//! oversized and endless requests, destinations that should not be reached, headers smuggled
//! through object data, files that are not CA files, paths past one's permissions, a database
//! swapped under Herald, password guessing. Each test runs the real `herald` binary and checks
//! that it never crashes, that its peak RSS stays under 200 MiB, that the API keeps answering,
//! and that every refusal is a clear 4xx in NetBox's shape.

mod common;

use common::{site_event, wait_for, Behavior, TestReceiver};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tokio::process::Child;

const TOKEN: &str = "4a7c1e0b9f3d2a68c5e4b7f1a0d9c8e2b3f6a5d4";
const MAX_RSS_MIB: u64 = 200;

/// A running `herald serve`.
struct Herald {
    child: Child,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Herald {
    async fn start(env: &[(&str, &str)]) -> Herald {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("herald.db").display());
        let mut all = vec![
            ("HERALD_WORKER__RETRY_SCHEDULE", "[]"),
            ("HERALD_API__HEADER_READ_TIMEOUT_SECS", "1"),
            ("HERALD_API__BODY_READ_TIMEOUT_SECS", "2"),
            ("HERALD_TEMPLATES__TIMEOUT_SECS", "3"),
        ];
        all.extend_from_slice(env);
        let (child, base) = common::process::serve(&db, TOKEN, &[], &all).await;
        // No pooled connections: Herald lets idle ones go after a second here, and a request
        // sent on one as it goes would fail for reasons of the test's own making.
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        Herald {
            child,
            base,
            client,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("herald runs")
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(TOKEN, method, path, body).await
    }

    async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("Authorization", format!("Token {token}"));
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("Herald answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("Herald answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The answer to a POST of `body` whose writing may be cut short: Herald may answer and
    /// close before the body is all sent (as it should for a body over its bound), so the body
    /// is written on its own thread, its errors ignored, while the answer is read here.
    async fn refused_early(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let addr = self.base.trim_start_matches("http://").to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut w = s.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                let _ = w.write_all(head.as_bytes()).and_then(|_| w.write_all(&body));
            });
            let mut answer = Vec::new();
            let mut buf = [0u8; 8192];
            // Until Herald closes, or the answer's head and body are in.
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !answer.is_empty() => break,
                    Err(e) => panic!("reading Herald's answer: {e}"),
                }
                if complete_answer(&answer) {
                    break;
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Both);
            writer.join().unwrap();
            answer
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Herald is up and answers at once; its peak RSS is under the bound.
    async fn assert_well(&self) {
        let started = Instant::now();
        let (s, _) = self.call("GET", "/api/status/", None).await;
        assert_eq!(s, 200, "the API answers");
        assert!(started.elapsed() < Duration::from_secs(5), "and promptly");
        let hwm = peak_rss_mib(self.pid());
        assert!(hwm < MAX_RSS_MIB, "peak RSS {hwm} MiB");
    }

    async fn webhook(&self, fields: Value) -> (u16, Value) {
        let mut body = json!({"name": format!("hook-{}", uuid::Uuid::new_v4()), "content_types": ["dcim.site"],
                              "type_create": true, "payload_url": "http://127.0.0.1:9/"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.call("POST", "/api/extras/webhooks/", Some(body)).await
    }

    /// The final state of the first delivery of `webhook_id`.
    async fn delivery_of(&self, webhook_id: i64) -> Value {
        wait_for(Duration::from_secs(30), "the delivery to end", || async {
            let (_, list) = self
                .call("GET", &format!("/api/extras/deliveries/?webhook_id={webhook_id}"), None)
                .await;
            let id = list["results"][0]["id"].as_i64()?;
            let (_, d) = self.call("GET", &format!("/api/extras/deliveries/{id}/"), None).await;
            matches!(d["status"]["value"].as_str(), Some("succeeded" | "failed")).then_some(d)
        })
        .await
    }
}

/// Whether `answer` holds an HTTP head and the whole body its Content-Length announces.
fn complete_answer(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

/// VmHWM of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process exists");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// NetBox's error shape: `{"detail": "..."}`, or field errors (an object of message lists, or
/// a list of those).
fn netbox_error(body: &Value) -> bool {
    match body {
        Value::Object(m) if m.len() == 1 && m.get("detail").is_some_and(Value::is_string) => true,
        Value::Object(m) => {
            !m.is_empty()
                && m.values()
                    .all(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) || v.is_object())
        }
        Value::Array(items) => items.iter().all(|i| i.is_object()),
        _ => false,
    }
}

fn assert_refused(status: u16, body: &Value, want: u16, mentions: &str) {
    assert_eq!(status, want, "{body}");
    assert!(netbox_error(body), "not NetBox's shape: {body}");
    assert!(
        body.to_string().contains(mentions),
        "{body} should mention {mentions:?}"
    );
}

#[tokio::test]
async fn templates_cannot_exhaust_memory_or_time() {
    let h = Herald::start(&[]).await;
    let bombs = [
        "{% for i in range(100) %}{% set x = 'x' * 90000000 %}{% endfor %}",
        "{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "{{ ([1] * 1000000000)|join(',') }}",
        "{{ data|tojson(indent=1000000000) }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ '%1000000000s'|format('x') }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    ];
    for bomb in bombs {
        // Refused when saved: it would go past the bounds on any event.
        let (s, b) = h.webhook(json!({"body_template": bomb})).await;
        assert_refused(s, &b, 400, "body_template");
        // And when previewed, with the same message.
        let (s, b) = h
            .call(
                "POST",
                "/api/extras/webhooks/preview/",
                Some(json!({"webhook": {
                "name": "p", "content_types": ["dcim.site"], "type_create": true,
                "payload_url": "http://127.0.0.1:9/", "body_template": bomb}})),
            )
            .await;
        assert_refused(s, &b, 400, "body_template");
        h.assert_well().await;
    }
    // One that passes on the sample and blows up on real data fails its delivery, not Herald.
    let sneaky = "{% if data.name == 'boom' %}{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}\
                  {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}{% else %}ok{% endif %}";
    let (s, w) = h.webhook(json!({"body_template": sneaky})).await;
    assert_eq!(s, 201, "{w}");
    let (s, _) = h
        .call("POST", "/api/extras/events/", Some(site_event("created", 7, "boom")))
        .await;
    assert_eq!(s, 202);
    let d = h.delivery_of(w["id"].as_i64().unwrap()).await;
    assert_eq!(d["status"]["value"], "failed");
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .contains("more memory than the sandbox allows"),
        "{d}"
    );
    // Two heavy previews at once do not stall the API.
    let heavy = json!({"webhook": {"name": "h", "content_types": ["dcim.site"], "type_create": true,
        "payload_url": "http://127.0.0.1:9/", "body_template": "{% for i in range(2000) %}{{ i }}{% endfor %}"}});
    let previews = futures_join(&h, heavy).await;
    assert!(previews.iter().all(|s| *s == 200), "{previews:?}");
    h.assert_well().await;
}

/// Two previews at once while the status is asked for.
async fn futures_join(h: &Herald, body: Value) -> Vec<u16> {
    let (a, b, status) = tokio::join!(
        h.call("POST", "/api/extras/webhooks/preview/", Some(body.clone())),
        h.call("POST", "/api/extras/webhooks/preview/", Some(body.clone())),
        h.call("GET", "/api/status/", None),
    );
    vec![a.0, b.0, status.0]
}

#[tokio::test]
async fn request_bodies_and_connections_are_bounded() {
    let h = Herald::start(&[("HERALD_API__MAX_CONNECTIONS", "64")]).await;
    // 2,000,000 empty objects (6 MB): over the body bound, refused without being read.
    let mut huge = b"[".to_vec();
    for i in 0..2_000_000 {
        huge.extend_from_slice(if i == 0 { b"{}" } else { b",{}" });
    }
    huge.push(b']');
    let (s, b) = h.refused_early("/api/dcim/sites/", huge).await;
    assert_refused(s, &b, 413, "larger than");
    // Under the byte bound but over the item bound.
    let items: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    let (s, b) = h.call("POST", "/api/dcim/sites/", Some(Value::Array(items))).await;
    assert_refused(s, &b, 413, "at most 1000 items");
    // Many values in one object.
    let tags: Vec<Value> = (0..300_000).map(Value::from).collect();
    let (s, b) = h
        .call(
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "x", "slug": "x", "tags": tags})),
        )
        .await;
    assert_refused(s, &b, 413, "JSON values");
    // Deep nesting.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (s, b) = h.raw("POST", "/api/dcim/sites/", deep.into_bytes()).await;
    assert_refused(s, &b, 400, "JSON parse error");
    // 1,000 invalid items: one error each, nothing written.
    let items: Vec<Value> = (0..1000).map(|_| json!({})).collect();
    let (s, b) = h.call("POST", "/api/dcim/sites/", Some(Value::Array(items))).await;
    assert_eq!((s, b.as_array().map(Vec::len)), (400, Some(1000)));
    // 40,000 ids in bulk delivery operations.
    let ids: Vec<i64> = (1..=40_000).collect();
    let (s, b) = h
        .call("POST", "/api/extras/deliveries/retry/", Some(json!({"id": ids})))
        .await;
    assert_eq!((s, &b), (200, &json!({"retried": 0})));
    let (s, b) = h
        .call("DELETE", "/api/extras/deliveries/", Some(json!({"id": ids})))
        .await;
    assert_eq!((s, &b), (200, &json!({"deleted": 0})));
    // A bulk filter with a key it does not know widens nothing.
    let (s, b) = h
        .call("POST", "/api/extras/deliveries/retry/", Some(json!({"webhook": 3})))
        .await;
    assert_refused(s, &b, 400, "webhook");
    // Paths, pages, methods and URIs.
    let (s, b) = h.call("GET", "/api/dcim/sites/+1/", None).await;
    assert_refused(s, &b, 404, "Not found");
    let (s, b) = h
        .call("GET", "/api/dcim/sites/?offset=9223372036854775800&limit=1000", None)
        .await;
    assert_eq!((s, &b["next"]), (200, &Value::Null), "{b}");
    let (s, b) = h.call("PATCH", "/api/extras/queue/", Some(json!({}))).await;
    assert_refused(s, &b, 405, "Method not allowed");
    let long = format!("/api/dcim/sites/?name={}", "a".repeat(20_000));
    let (s, b) = h.call("GET", &long, None).await;
    assert_refused(s, &b, 414, "too long");
    // A client that never finishes its headers, or sits idle, is let go.
    for partial in ["GET /api/status/ HTTP/1.1\r\nHost: x\r\n", ""] {
        let addr = h.base.trim_start_matches("http://").to_string();
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(partial.as_bytes()).unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 1024];
            // Closed (or answered and closed) by Herald; a read that times out means it held on.
            let closed = match s.read(&mut buf) {
                Ok(_) => true,
                Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            };
            (closed, started.elapsed())
        })
        .await
        .unwrap();
        assert!(closed.0 && closed.1 < Duration::from_secs(5), "held for {:?}", closed.1);
    }
    // A body that trickles in is cut after its timeout.
    let addr = h.base.trim_start_matches("http://").to_string();
    let held = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let head = format!(
            "POST /api/dcim/sites/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
        );
        s.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf);
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(held < Duration::from_secs(8), "a slow body held a connection {held:?}");
    // Many idle connections at once, and the API still answers.
    let addr = h.base.trim_start_matches("http://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    wait_for(Duration::from_secs(10), "the API through idle connections", || async {
        let (s, _) = h.call("GET", "/api/status/", None).await;
        (s == 200).then_some(())
    })
    .await;
    drop(idle);
    h.assert_well().await;
}

#[tokio::test]
async fn destinations_are_policed_on_resolved_addresses() {
    let h = Herald::start(&[]).await;
    let port = h.base.rsplit(':').next().unwrap().to_string();
    let refused = [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:169.254.169.254]/".into(),
        "http://2852039166/".into(),
        "http://[fe80::1]/".into(),
        "http://0.0.0.0/".into(),
        format!("http://127.0.0.1:{port}/api/users/tokens/"),
        format!("http://localhost:{port}/api/status/"),
        format!("http://2130706433:{port}/api/"),
    ];
    for url in &refused {
        let (s, w) = h.webhook(json!({"payload_url": url})).await;
        assert_eq!(s, 201, "{w}");
        let id = w["id"].as_i64().unwrap();
        let (s, t) = h
            .call("POST", &format!("/api/extras/webhooks/{id}/test/"), Some(json!({})))
            .await;
        assert_eq!(s, 200, "{t}");
        assert_eq!(t["response"], Value::Null, "{url} was reached: {t}");
        assert!(
            t["error"]
                .as_str()
                .unwrap()
                .contains("refused by the destination policy"),
            "{url}: {t}"
        );
    }
    // A preview says so.
    let (s, pv) = h
        .call(
            "POST",
            "/api/extras/webhooks/preview/",
            Some(json!({"webhook": {"name": "m", "content_types": ["dcim.site"],
            "type_create": true, "payload_url": "http://169.254.169.254/x"}})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        pv["destination_refused"].as_str().unwrap().contains("169.254.0.0/16"),
        "{pv}"
    );
    // A templated host goes the same way, decided on the rendered URL's address.
    let (_, w) = h
        .webhook(json!({"payload_url": "http://{{ data.description }}/x"}))
        .await;
    let mut ev = site_event("created", 1, "A");
    ev["data"]["description"] = json!("169.254.169.254");
    let (s, _) = h.call("POST", "/api/extras/events/", Some(ev)).await;
    assert_eq!(s, 202);
    let d = h.delivery_of(w["id"].as_i64().unwrap()).await;
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .contains("refused by the destination policy"),
        "{d}"
    );
    // A receiver that answers a lot is shown in part.
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Status(200, "s".repeat(100_000)));
    let (_, w) = h.webhook(json!({"payload_url": rx.url("/x")})).await;
    let (_, t) = h
        .call(
            "POST",
            &format!("/api/extras/webhooks/{}/test/", w["id"]),
            Some(json!({})),
        )
        .await;
    assert_eq!(t["response"]["status"], 200);
    assert!(t["response"]["body"].as_str().unwrap().len() <= 256, "{t}");
    h.assert_well().await;
}

#[tokio::test]
async fn object_data_cannot_add_headers_and_framing_headers_cannot_be_set() {
    let h = Herald::start(&[]).await;
    let rx = TestReceiver::start().await;
    let (s, w) = h
        .webhook(
            json!({"payload_url": rx.url("/h"), "additional_headers": "X-Name: {{ data.name }}\nX-Id: {{ data.id }}"}),
        )
        .await;
    assert_eq!(s, 201, "{w}");
    let (s, _) = h
        .call(
            "POST",
            "/api/extras/events/",
            Some(site_event("created", 1, "x\r\nX-Evil: 1")),
        )
        .await;
    assert_eq!(s, 202);
    let d = h.delivery_of(w["id"].as_i64().unwrap()).await;
    assert_eq!(d["status"]["value"], "failed");
    assert!(d["last_error"].as_str().unwrap().contains("line break"), "{d}");
    assert!(rx.received().is_empty(), "nothing was sent");
    for framing in [
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
        "Host: evil",
        "Connection: close",
    ] {
        let (s, b) = h.webhook(json!({"additional_headers": framing})).await;
        assert_refused(s, &b, 400, "additional_headers");
    }
    let (s, b) = h.webhook(json!({"additional_headers": "Bad Name: 1"})).await;
    assert_refused(s, &b, 400, "not a valid header name");
    // A templated name that renders to a framing header fails the delivery.
    let rx2 = TestReceiver::start().await;
    let (_, w) = h
        .webhook(json!({"payload_url": rx2.url("/h"), "additional_headers": "{{ 'Content' ~ '-Length' }}: 1"}))
        .await;
    h.call("POST", "/api/extras/events/", Some(site_event("created", 2, "B")))
        .await;
    let d = h.delivery_of(w["id"].as_i64().unwrap()).await;
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .contains("Content-Length cannot be set"),
        "{d}"
    );
    assert!(rx2.received().is_empty());
    h.assert_well().await;
}

#[tokio::test]
async fn ca_files_are_read_with_care() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_dir_path = ca_dir.path().to_str().unwrap().to_string();
    let h = Herald::start(&[("HERALD_WEBHOOKS__CA_DIR", &ca_dir_path)]).await;
    let fifo = ca_dir.path().join("fifo.pem");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let other = tempfile::tempdir().unwrap();
    let outside = other.path().join("ca.pem");
    std::fs::write(
        &outside,
        "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut messages = Vec::new();
    for path in [
        fifo.to_str().unwrap(),
        "/dev/zero",
        "/etc/shadow",
        "/nonexistent/ca.pem",
        outside.to_str().unwrap(),
        "relative.pem",
    ] {
        let started = Instant::now();
        let (s, b) = h
            .webhook(json!({"payload_url": "https://127.0.0.1:9/", "ca_file_path": path}))
            .await;
        assert!(started.elapsed() < Duration::from_secs(5), "{path} held the request");
        assert_refused(s, &b, 400, "ca_file_path");
        messages.push(b["ca_file_path"][0].as_str().unwrap().to_string());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one message whatever the file: {messages:?}");
    h.assert_well().await;
}

#[tokio::test]
async fn permissions_decide_every_path() {
    let h = Herald::start(&[]).await;
    let rx = TestReceiver::start().await;
    // A viewer of webhooks and deliveries, and nothing else.
    let (s, u) = h
        .call(
            "POST",
            "/api/users/users/",
            Some(json!({"username": "viewer", "password": "pw-viewer-1"})),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let (s, p) = h
        .call(
            "POST",
            "/api/users/permissions/",
            Some(
                json!({"name": "watch", "object_types": ["extras.webhook", "extras.delivery"],
            "actions": ["view"], "users": [u["id"]]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["users"][0]["username"], "viewer");
    let (s, t) = h
        .call("POST", "/api/users/tokens/", Some(json!({"user": u["id"]})))
        .await;
    assert_eq!(s, 201, "{t}");
    let viewer = t["key"].as_str().unwrap().to_string();
    let (_, w) = h
        .webhook(json!({"payload_url": rx.url("/p"), "secret": "s3cr3t", "additional_headers": "Authorization: Bearer hidden"}))
        .await;
    let wid = w["id"].as_i64().unwrap();
    h.call("POST", "/api/extras/events/", Some(site_event("created", 1, "A")))
        .await;
    let d = h.delivery_of(wid).await;
    let did = d["id"].as_i64().unwrap();

    let (s, _) = h.call_as(&viewer, "GET", "/api/extras/webhooks/", None).await;
    assert_eq!(s, 200);
    for (method, path, body) in [
        (
            "PATCH",
            format!("/api/extras/webhooks/{wid}/"),
            json!({"enabled": false}),
        ),
        ("POST", "/api/extras/webhooks/".into(), json!({"name": "n"})),
        ("DELETE", format!("/api/extras/webhooks/{wid}/"), Value::Null),
        ("POST", format!("/api/extras/webhooks/{wid}/test/"), json!({})),
        ("POST", format!("/api/extras/deliveries/{did}/retry/"), json!({})),
        ("GET", "/api/dcim/sites/".into(), Value::Null),
        ("POST", "/api/dcim/sites/".into(), json!({"name": "x", "slug": "x"})),
        ("POST", "/api/extras/events/".into(), site_event("created", 2, "B")),
        ("GET", "/api/extras/object-changes/".into(), Value::Null),
        ("GET", "/api/users/permissions/".into(), Value::Null),
        (
            "POST",
            "/api/users/permissions/".into(),
            json!({"name": "mine", "object_types": ["dcim.site"], "actions": ["view"]}),
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (s, b) = h.call_as(&viewer, method, &path, body).await;
        assert_refused(s, &b, 403, "permission");
    }
    // The viewer's preview has no signature; an attempt's secrets are masked; the event's
    // object data is not theirs to see.
    let (s, pv) = h
        .call_as(
            &viewer,
            "POST",
            &format!("/api/extras/webhooks/{wid}/preview/"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{pv}");
    assert!(pv["headers"].get("X-Hook-Signature").is_none(), "{pv}");
    let (_, mine) = h
        .call("POST", &format!("/api/extras/webhooks/{wid}/preview/"), Some(json!({})))
        .await;
    assert!(mine["headers"].get("X-Hook-Signature").is_some());
    let (s, seen) = h
        .call_as(&viewer, "GET", &format!("/api/extras/deliveries/{did}/"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(seen["attempts"][0]["request"]["headers"]["Authorization"], "********");
    assert_eq!(
        seen["attempts"][0]["request"]["headers"]["X-Hook-Signature"],
        "********"
    );
    assert_eq!(seen["context"]["data"], Value::Null);
    let (_, full) = h.call("GET", &format!("/api/extras/deliveries/{did}/"), None).await;
    assert_eq!(
        full["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer hidden"
    );
    // Permissions through a group; constraints are refused, not ignored.
    let (s, g) = h
        .call("POST", "/api/users/groups/", Some(json!({"name": "site-admins"})))
        .await;
    assert_eq!(s, 201, "{g}");
    let (s, b) = h
        .call(
            "POST",
            "/api/users/permissions/",
            Some(json!({"name": "c", "object_types": ["dcim.site"], "actions": ["view"],
            "constraints": {"status": "active"}})),
        )
        .await;
    assert_refused(s, &b, 400, "constraints");
    let (s, b) = h
        .call(
            "POST",
            "/api/users/permissions/",
            Some(json!({"name": "c", "object_types": ["dcim.nothing"], "actions": ["fly"]})),
        )
        .await;
    assert_refused(s, &b, 400, "object_types");
    assert!(b.get("actions").is_some(), "{b}");
    h.call(
        "POST",
        "/api/users/permissions/",
        Some(json!({"name": "sites", "object_types": ["dcim.site"],
        "actions": ["view", "add"], "groups": [g["id"]]})),
    )
    .await;
    h.call(
        "PATCH",
        &format!("/api/users/users/{}/", u["id"]),
        Some(json!({"groups": [g["id"]]})),
    )
    .await;
    let (s, _) = h
        .call_as(
            &viewer,
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "V", "slug": "v"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = h.call_as(&viewer, "DELETE", "/api/dcim/sites/1/", None).await;
    assert_eq!(s, 403);
    // Nobody but a superuser makes a superuser.
    h.call(
        "POST",
        "/api/users/permissions/",
        Some(json!({"name": "users", "object_types": ["users.user"],
        "actions": ["view", "add", "change"], "users": [u["id"]]})),
    )
    .await;
    let (s, b) = h
        .call_as(
            &viewer,
            "PATCH",
            &format!("/api/users/users/{}/", u["id"]),
            Some(json!({"is_superuser": true})),
        )
        .await;
    assert_refused(s, &b, 403, "permission");
    h.assert_well().await;
}

#[tokio::test]
async fn a_database_is_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.db");
    let db = format!("sqlite://{}", file.display());
    let (mut first, _) = common::process::serve(&db, TOKEN, &[], &[]).await;
    first.kill().await.unwrap();
    first.wait().await.unwrap();
    // The file goes (with its journal): Herald refuses to make an empty one in its place.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let herald = env!("CARGO_BIN_EXE_herald");
    let out = refused(herald, &["serve", "--listen", "127.0.0.1:0", "--database", &db]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is gone") && err.contains("Restore"), "{err}");
    assert!(!file.exists(), "no empty database was made");
    // Another database put in its place is refused too.
    std::fs::remove_file(format!("{}.id", file.display())).unwrap();
    let (mut second, _) = common::process::serve(&db, TOKEN, &[], &[]).await;
    second.kill().await.unwrap();
    second.wait().await.unwrap();
    std::fs::write(format!("{}.id", file.display()), "not-this-one\n").unwrap();
    let out = refused(herald, &["serve", "--listen", "127.0.0.1:0", "--database", &db]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the database Herald kept here"));
    // A file Herald may not write is refused at start, not with 500s later.
    std::fs::remove_file(format!("{}.id", file.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = refused(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            herald,
            "migrate",
            "--database",
            &db,
        ],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is read-only"), "{err}");
}

/// Runs a command that must refuse to start: it ends on its own, unsuccessfully, within 30 s.
async fn refused(program: &str, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(program)
        .args(args)
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("it stops by itself instead of serving")
        .unwrap();
    assert!(!out.status.success(), "{program} {args:?} started");
    out
}

#[tokio::test]
async fn password_checks_are_throttled_and_take_as_long_for_unknown_users() {
    let h = Herald::start(&[]).await;
    h.call(
        "POST",
        "/api/users/users/",
        Some(json!({"username": "known", "password": "right-pw"})),
    )
    .await;
    let time = |username: &'static str| {
        let client = h.client.clone();
        let url = format!("{}/api/users/tokens/provision/", h.base);
        async move {
            let started = Instant::now();
            let resp = client
                .post(url)
                .json(&json!({"username": username, "password": "wrong"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403);
            started.elapsed()
        }
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        known.push(time("known").await);
        unknown.push(time(name).await);
    }
    known.sort();
    unknown.sort();
    let ratio = unknown[2].as_secs_f64() / known[2].as_secs_f64();
    assert!(
        (0.3..3.0).contains(&ratio),
        "unknown users answer in {:?}, known in {:?}",
        unknown[2],
        known[2]
    );
    // Past ten attempts a minute for one user: 429 with Retry-After, NetBox's shape.
    let mut last = (0, Value::Null, None);
    for _ in 0..8 {
        let resp = h
            .client
            .post(format!("{}/api/users/tokens/provision/", h.base))
            .json(&json!({"username": "known", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("Retry-After")
            .map(|v| v.to_str().unwrap().to_string());
        last = (resp.status().as_u16(), resp.json().await.unwrap(), retry);
    }
    assert_refused(last.0, &last.1, 429, "throttled");
    assert!(last.2.is_some());
    h.assert_well().await;
}

#[tokio::test]
async fn every_attempt_of_a_delivery_carries_its_id() {
    let h = Herald::start(&[
        ("HERALD_WORKER__RETRY_SCHEDULE", "[0.05]"),
        ("HERALD_WORKER__THROTTLE_BACKOFF_SECS", "0"),
    ])
    .await;
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Status(500, "again".into()));
    let (_, w) = h.webhook(json!({"payload_url": rx.url("/d")})).await;
    h.call("POST", "/api/extras/events/", Some(site_event("created", 1, "A")))
        .await;
    let got = rx.wait_for(2).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("X-Herald-Delivery").unwrap()).collect();
    let d = h.delivery_of(w["id"].as_i64().unwrap()).await;
    assert_eq!(ids, vec![d["id"].to_string().as_str(); 2]);
    h.assert_well().await;
}
