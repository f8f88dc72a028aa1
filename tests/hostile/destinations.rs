//! Where deliveries may go, and what object data may put in them.

use super::{assert_refused, Herald, TOKEN};
use crate::common::{site_event, Behavior, TestReceiver};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn destinations_are_policed_on_resolved_addresses() {
    let h = Herald::start(&[]).await;
    let port = h.base.rsplit(':').next().unwrap().to_string();
    let refused = [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:169.254.169.254]/".into(),
        // IPv4 carried in IPv6: compatible, NAT64, 6to4.
        "http://[::169.254.169.254]/".into(),
        "http://[64:ff9b::a9fe:a9fe]/".into(),
        "http://[2002:a9fe:a9fe::1]/".into(),
        format!("http://[::127.0.0.1]:{port}/api/status/"),
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

#[tokio::test]
async fn a_worker_of_its_own_refuses_the_api_nodes_real_port() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let env = [("HERALD_WORKER__RETRY_SCHEDULE", "[]")];
    // The API alone, on a port only it knows; the worker is told nothing of it.
    let (api, base) = crate::common::process::serve(&db, TOKEN, &["--no-worker"], &env).await;
    let mut worker = crate::common::process::worker(&db, &env);
    let h = Herald::attach(api, base);
    let rx = TestReceiver::start().await;
    let (_, own) = h
        .webhook(json!({"payload_url": format!("{}/api/status/", h.base)}))
        .await;
    let (_, other) = h.webhook(json!({"payload_url": rx.url("/fine")})).await;
    h.call("POST", "/api/extras/events/", Some(site_event("created", 1, "A")))
        .await;
    let refused = h.delivery_of(own["id"].as_i64().unwrap()).await;
    assert_eq!(refused["status"]["value"], "failed");
    let error = refused["last_error"].as_str().unwrap();
    assert!(error.contains("Herald's own API"), "{error}");
    let fine = h.delivery_of(other["id"].as_i64().unwrap()).await;
    assert_eq!(fine["status"]["value"], "succeeded", "{fine}");
    h.assert_well().await;
    super::assert_processes_bounded(worker.id().unwrap());
    worker.kill().await.unwrap();
}
