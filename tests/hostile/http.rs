//! Requests that are too big, too slow or never finished.

use super::{assert_refused, Herald, TOKEN};
use crate::common::wait_for;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

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
async fn half_open_connections_cannot_keep_honest_clients_out() {
    // A long head timeout: only taking the slots of unfinished heads keeps the API open.
    let h = Herald::start(&[("HERALD_API__HEADER_READ_TIMEOUT_SECS", "60")]).await;
    let addr = h.base.trim_start_matches("http://").to_string();
    // 1,100 connections, each with a request head that never ends: more than Herald's 1,024
    // slots.
    let attackers = tokio::task::spawn_blocking(move || {
        (0..1100)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.write_all(b"GET /api/status/ HTTP/1.1\r\nHost: x\r\n").unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // An honest request from the same address is answered at once, and again while the
    // attack goes on.
    for _ in 0..3 {
        let started = Instant::now();
        let (s, _) = h.call("GET", "/api/status/", None).await;
        assert_eq!(s, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered in {:?}",
            started.elapsed()
        );
    }
    // The attackers' heads that lost their slots were closed, not left hanging.
    let closed = tokio::task::spawn_blocking(move || {
        attackers
            .into_iter()
            .filter(|mut s| {
                s.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 1];
                match s.read(&mut buf) {
                    // Closed (0) or answered: the head is not left hanging either way.
                    Ok(_n) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                }
            })
            .count()
    })
    .await
    .unwrap();
    assert!(closed >= 76, "only {closed} of the heads were closed");
    h.assert_well().await;
}

#[tokio::test]
async fn login_goes_on_only_to_local_paths() {
    let h = Herald::start(&[]).await;
    for (next, to) in [
        ("/extras/webhooks/?q=a", "/extras/webhooks/?q=a"),
        ("/\t/evil.example", "/"),
        ("/\r\n/evil.example", "/"),
        ("/\n\\evil.example", "/"),
        ("/\\evil.example", "/"),
        ("\\/evil.example", "/"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/login/", "/"),
    ] {
        let (_, location, _) = super::log_in(&h, "admin", super::ADMIN_PASSWORD, next).await;
        assert_eq!(location, to, "next={next:?}");
    }
    // The login page keeps only a local path in its form, too.
    let page = h
        .client
        .get(format!("{}/login/?next=%2F%09%2Fevil.example", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("evil.example"), "{page}");
    h.assert_well().await;
}

#[tokio::test]
async fn repeated_entries_of_a_set_are_kept_once() {
    let h = Herald::start(&[]).await;
    let many = vec!["dcim.site"; 100_000];
    let (s, w) = h
        .webhook(json!({"content_types": many.iter().chain(&["dcim.device", "dcim.site"]).collect::<Vec<_>>()}))
        .await;
    assert_eq!(s, 201, "{w}");
    assert_eq!(w["content_types"], json!(["dcim.site", "dcim.device"]));
    let (s, r) = h
        .call(
            "POST",
            "/api/extras/event-rules/",
            Some(json!({"name": "r", "object_types": vec!["dcim.site"; 50_000], "event_types": ["object_created", "object_created"],
                        "action_type": "webhook", "action_object_type": "extras.webhook", "action_object_id": w["id"]})),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (r["object_types"].clone(), r["event_types"].clone()),
        (json!(["dcim.site"]), json!(["object_created"]))
    );
    h.assert_well().await;
}
