//! End to end: webhooks defined over the API, events posted, real requests arriving at real
//! HTTP and HTTPS receivers, every attempt recorded.

use crate::common::{site_event, Backend, Behavior, TestApp, TestReceiver};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha512;

async fn seed_slack_example_renders_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({
        "content_types": ["ipam.ipaddress"],
        "payload_url": rx.url("/services/T000/B000/XXX"),
        "body_template": "{\"text\": \"IP address {{ data['address'] }} was created by {{ username }}!\"}",
    }))
    .await;
    let queued = app
        .send_events(
            json!({"event": "created", "object_type": "ipam.ipaddress", "username": "jstretch",
                            "data": {"id": 1, "address": "192.0.2.1/24"}}),
        )
        .await;
    assert_eq!(queued["deliveries_queued"], 1);
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/services/T000/B000/XXX");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(
        got[0].text(),
        r#"{"text": "IP address 192.0.2.1/24 was created by jstretch!"}"#
    );
    app.stop().await;
}

async fn default_body_matches_netbox_key_for_key_and_signature_verifies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({"payload_url": rx.url("/hook"), "secret": "s3cr3t", "content_types": ["dcim.site"]}))
        .await;
    // Posted as NetBox writes it (`json.dumps`), and so re-sent byte for byte.
    let expected = concat!(
        r#"{"event": "created", "timestamp": "2020-02-25T15:10:26.010582+00:00", "model": "site", "#,
        r#""object_type": "dcim.site", "username": "jstretch", "request_id": "fdbca812-3142-4783-b364-2e2bd5c16c6a", "#,
        r#""data": {"id": 19, "url": "/api/dcim/sites/19/", "name": "Site 1", "slug": "site-1", "#,
        r#""status": {"value": "active", "label": "Active"}, "region": null, "tags": [], "description": "Z\u00fcrich \u2713"}, "#,
        r#""snapshots": {"prechange": null, "postchange": {"name": "Site 1", "status": "active"}}}"#
    );
    let (status, answer) = app.raw("POST", "/api/extras/events/", expected).await;
    assert_eq!(status, 202, "{answer}");
    let got = rx.wait_for(1).await;
    let body = got[0].text();
    assert_eq!(body, expected);

    let mut mac = Hmac::<Sha512>::new_from_slice(b"s3cr3t").unwrap();
    mac.update(body.as_bytes());
    let signature = got[0].header("x-hook-signature").expect("signature header");
    assert_eq!(signature, hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        got[0].header("user-agent"),
        Some(concat!("herald/", env!("CARGO_PKG_VERSION")))
    );
    app.stop().await;
}

async fn headers_are_templated_and_override_defaults_but_not_the_signature(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({
        "payload_url": rx.url("/{{ model }}/{{ data.id }}"),
        "http_content_type": "application/x-www-form-urlencoded",
        "additional_headers": "Content-Type: text/plain\nX-Event: {{ event|upper }}\n\nnot a header\nX-Hook-Signature: forged\nX-User: {{ username }}",
        "body_template": "{{ data.name }}",
        "secret": "k",
    }))
    .await;
    app.send_events(site_event("created", 7, "Edge")).await;
    let got = rx.wait_for(1).await;
    let r = &got[0];
    assert_eq!(r.path, "/site/7");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-event"), Some("CREATED"));
    assert_eq!(r.header("x-user"), Some("jstretch"));
    assert_eq!(r.body, b"Edge");
    let sigs: Vec<_> = r.headers.iter().filter(|(n, _)| n == "x-hook-signature").collect();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].1, herald_sign("k", b"Edge"));
    app.stop().await;
}

fn herald_sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn each_http_method_is_used(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        app.create_webhook(json!({"payload_url": rx.url(&format!("/{method}")), "http_method": method}))
            .await;
    }
    let queued = app.send_events(site_event("created", 1, "A")).await;
    assert_eq!(queued["deliveries_queued"], 5);
    let got = rx.wait_for(5).await;
    let mut seen: Vec<(String, String)> = got.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    seen.sort();
    let mut want: Vec<(String, String)> = ["DELETE", "GET", "PATCH", "POST", "PUT"]
        .iter()
        .map(|m| (m.to_string(), format!("/{m}")))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    assert!(got
        .iter()
        .all(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["event"] == "created"));
    app.stop().await;
}

async fn https_with_verification_off_with_ca_file_and_failing_without_either(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tls = crate::common::Tls::generate();
    let rx = TestReceiver::start_tls(&tls).await;
    let ca_path = app.dir.path().join("ca.pem");
    std::fs::write(&ca_path, &tls.ca_pem).unwrap();

    let insecure = app
        .create_webhook(json!({"payload_url": rx.url("/insecure"), "ssl_verification": false}))
        .await;
    let with_ca = app
        .create_webhook(json!({"payload_url": rx.url("/ca"), "ca_file_path": ca_path.to_str().unwrap()}))
        .await;
    let strict = app.create_webhook(json!({"payload_url": rx.url("/strict")})).await;
    app.send_events(site_event("created", 1, "A")).await;

    for (hook, want) in [(&insecure, "succeeded"), (&with_ca, "succeeded"), (&strict, "failed")] {
        let ids = app.delivery_ids(hook["id"].as_i64().unwrap()).await;
        assert_eq!(ids.len(), 1);
        let d = app.wait_delivery_done(ids[0]).await;
        assert_eq!(d["status"]["value"], want, "{}: {d}", hook["payload_url"]);
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
        if want == "failed" {
            let err = d["attempts"][0]["error"].as_str().unwrap();
            assert_eq!(err, "TLS: invalid peer certificate: UnknownIssuer");
            assert_eq!(d["last_error"], err);
        }
    }
    let mut paths: Vec<String> = rx.received().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/ca", "/insecure"]);
    app.stop().await;
}

async fn server_error_timeout_refused_and_closed_are_recorded_as_failed_attempts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let failing = TestReceiver::start().await;
    failing.set(Behavior::Status(500, "boom: database on fire".into()));
    let hanging = TestReceiver::start().await;
    hanging.set(Behavior::Hang);
    let closing = TestReceiver::start().await;
    closing.set(Behavior::Close);
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    let cases = [
        (
            app.create_webhook(json!({"payload_url": failing.url("/")})).await,
            "status 500: boom: database on fire",
        ),
        (
            app.create_webhook(json!({"payload_url": hanging.url("/"), "timeout": 1}))
                .await,
            "timed out after 1s",
        ),
        (
            app.create_webhook(json!({"payload_url": format!("http://127.0.0.1:{refused_port}/")}))
                .await,
            "connection refused",
        ),
        (
            app.create_webhook(json!({"payload_url": closing.url("/")})).await,
            "connection closed by the receiver before a response",
        ),
    ];
    app.send_events(site_event("created", 3, "C")).await;
    for (hook, want) in &cases {
        let ids = app.delivery_ids(hook["id"].as_i64().unwrap()).await;
        let d = app.wait_delivery_done(ids[0]).await;
        assert_eq!(d["status"]["value"], "failed", "{d}");
        let attempt = &d["attempts"][0];
        assert_eq!(attempt["error"], *want, "{d}");
        assert_eq!(attempt["request"]["method"], "POST");
    }
    let first = app.delivery_ids(cases[0].0["id"].as_i64().unwrap()).await;
    let (_, d) = app
        .call("GET", &format!("/api/extras/deliveries/{}/", first[0]), None)
        .await;
    assert_eq!(d["attempts"][0]["response"]["status"], 500);
    assert_eq!(d["attempts"][0]["response"]["body"], "boom: database on fire");
    assert_eq!(d["last_status_code"], 500);
    app.stop().await;
}

async fn failed_attempts_are_retried_on_the_schedule(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.worker.retry_schedule = vec![0.05, 0.05];
        c.worker.retry_jitter = 0.0;
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Status(503, "later".into()));
    let hook = app.create_webhook(json!({"payload_url": rx.url("/")})).await;
    app.send_events(site_event("created", 1, "A")).await;
    rx.wait_for(2).await;
    rx.set(Behavior::Status(204, String::new()));
    let ids = app.delivery_ids(hook["id"].as_i64().unwrap()).await;
    let d = app.wait_delivery_done(ids[0]).await;
    assert_eq!(d["status"]["value"], "succeeded");
    assert_eq!(d["attempt_count"], 3);
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["error"], "status 503: later");
    assert_eq!(attempts[2]["error"], serde_json::Value::Null);
    assert_eq!(attempts[0]["request"]["body"], attempts[2]["request"]["body"]);
    // The event's own body is kept once, by the event; each attempt shows it as it was sent.
    let sent = String::from_utf8(rx.received()[0].body.clone()).unwrap();
    assert_eq!(attempts[0]["request"]["body"].as_str(), Some(sent.as_str()));
    app.stop().await;
}

async fn disabled_webhooks_and_non_matching_events_produce_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({"payload_url": rx.url("/disabled"), "enabled": false}))
        .await;
    app.create_webhook(
        json!({"payload_url": rx.url("/devices"), "content_types": ["dcim.device"], "type_create": true}),
    )
    .await;
    app.create_webhook(json!({"payload_url": rx.url("/deletes"), "type_create": false, "type_delete": true}))
        .await;
    // A site created matches none of them.
    let queued = app.send_events(site_event("created", 1, "A")).await;
    assert_eq!(queued["deliveries_queued"], 0);
    let (_, list) = app.call("GET", "/api/extras/deliveries/", None).await;
    assert_eq!(list["count"], 0);
    // A control webhook proves the worker ran after those events.
    app.create_webhook(json!({"payload_url": rx.url("/control")})).await;
    app.send_events(site_event("created", 2, "B")).await;
    rx.wait_for(1).await;
    let paths: Vec<String> = rx.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/control"]);
    app.stop().await;
}

async fn a_template_error_at_render_time_fails_that_delivery_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let bad = app
        .create_webhook(json!({"payload_url": rx.url("/bad"), "body_template": "{{ data.name.nope() }}"}))
        .await;
    app.create_webhook(json!({"payload_url": rx.url("/good")})).await;
    app.send_events(site_event("created", 1, "A")).await;
    rx.wait_for(1).await;
    let ids = app.delivery_ids(bad["id"].as_i64().unwrap()).await;
    let d = app.wait_delivery_done(ids[0]).await;
    assert_eq!(d["status"]["value"], "failed");
    let err = d["last_error"].as_str().unwrap();
    assert!(err.starts_with("template error: body_template:"), "{err}");
    assert_eq!(rx.received().len(), 1);
    assert_eq!(rx.received()[0].path, "/good");
    app.stop().await;
}

async fn redirects_are_not_followed_and_response_bodies_are_capped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = TestReceiver::start().await;
    let redirecting = TestReceiver::start().await;
    redirecting.set(Behavior::Status(302, String::new()));
    redirecting.set_header("Location", &target.url("/moved"));
    let big = TestReceiver::start().await;
    big.set(Behavior::Status(200, "x".repeat(100_000)));
    let moved = app.create_webhook(json!({"payload_url": redirecting.url("/")})).await;
    let chatty = app.create_webhook(json!({"payload_url": big.url("/")})).await;
    app.send_events(site_event("created", 1, "A")).await;

    let d = app
        .wait_delivery_done(app.delivery_ids(moved["id"].as_i64().unwrap()).await[0])
        .await;
    assert_eq!(d["status"]["value"], "failed");
    assert_eq!(d["attempts"][0]["error"], "status 302");
    assert!(target.received().is_empty(), "the redirect was followed");

    let d = app
        .wait_delivery_done(app.delivery_ids(chatty["id"].as_i64().unwrap()).await[0])
        .await;
    assert_eq!(d["status"]["value"], "succeeded");
    assert_eq!(d["attempts"][0]["response"]["body"].as_str().unwrap().len(), 65_536);
    app.stop().await;
}

async fn conditions_decide_what_is_queued(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let conditions = json!({"and": [
        {"attr": "status.value", "value": "active"},
        {"or": [
            {"attr": "tags.slug", "value": "core", "op": "contains"},
            {"attr": "name", "value": "^edge-", "op": "regex"}
        ]}
    ]});
    let hook = app
        .create_webhook(json!({"payload_url": rx.url("/c"), "conditions": conditions, "type_update": true}))
        .await;
    assert_eq!(hook["conditions"], conditions);
    let moved = app
        .create_webhook(
            json!({"payload_url": rx.url("/moved"), "type_create": false, "type_update": true,
                               "conditions": {"attr": "status", "op": "changed"}}),
        )
        .await;

    let mut matching = site_event("created", 1, "edge-1");
    let mut planned = site_event("created", 2, "edge-2");
    planned["data"]["status"] = json!({"value": "planned", "label": "Planned"});
    let mut other = site_event("created", 3, "core-3");
    other["data"]["tags"] = json!([{"slug": "edge"}]);
    matching["data"]["tags"] = json!([]);
    let r = app.send_events(json!([matching, planned, other])).await;
    assert_eq!(r["deliveries_queued"], 1, "only the active edge site matches: {r}");

    let mut changed = site_event("updated", 4, "Four");
    changed["snapshots"] = json!({"prechange": {"status": "planned"}, "postchange": {"status": "active"}});
    let mut same = site_event("updated", 5, "Five");
    same["snapshots"] = json!({"prechange": {"status": "active"}, "postchange": {"status": "active"}});
    let r = app.send_events(json!([changed, same])).await;
    assert_eq!(
        r["deliveries_queued"], 1,
        "only the status change matches `changed`: {r}"
    );
    assert_eq!(app.delivery_ids(moved["id"].as_i64().unwrap()).await.len(), 1);

    let got = rx.wait_for(2).await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/c", "/moved"]);
    // Conditions can be cleared.
    let (s, w) = app
        .call(
            "PATCH",
            &format!("/api/extras/webhooks/{}/", hook["id"]),
            Some(json!({"conditions": null})),
        )
        .await;
    assert_eq!((s, w["conditions"].clone()), (200, serde_json::Value::Null));
    app.stop().await;
}

crate::on_each_backend!(
    seed_slack_example_renders_exactly,
    default_body_matches_netbox_key_for_key_and_signature_verifies,
    headers_are_templated_and_override_defaults_but_not_the_signature,
    each_http_method_is_used,
    https_with_verification_off_with_ca_file_and_failing_without_either,
    server_error_timeout_refused_and_closed_are_recorded_as_failed_attempts,
    failed_attempts_are_retried_on_the_schedule,
    disabled_webhooks_and_non_matching_events_produce_nothing,
    a_template_error_at_render_time_fails_that_delivery_only,
    redirects_are_not_followed_and_response_bodies_are_capped,
    conditions_decide_what_is_queued
);
