//! Delivery that never fails silently: retry rules, isolation, manual retry and queue control,
//! retention, test-send and shutdown, against real receivers.

use crate::common::{site_event, wait_for, Backend, Behavior, TestApp, TestReceiver};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::time::Duration;

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Waits until the webhook's first delivery has `n` attempts; returns its detail.
async fn after_attempts(app: &TestApp, webhook: &Value, n: usize) -> Value {
    let id = webhook["id"].as_i64().unwrap();
    wait_for(Duration::from_secs(30), &format!("{n} attempts"), || async {
        let ids = app.delivery_ids(id).await;
        let (_, d) = app
            .call("GET", &format!("/api/extras/deliveries/{}/", ids.first()?), None)
            .await;
        (d["attempts"].as_array()?.len() >= n && d["status"]["value"] != "in_flight").then_some(d)
    })
    .await
}

async fn retry_after_throttling_and_gone_follow_the_rules(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.worker.retry_schedule = vec![0.01, 0.01, 0.01];
        c.worker.retry_jitter = 0.0;
        c.worker.throttle_backoff_secs = 0.5;
        c.worker.retry_after_max_secs = 30.0;
    })
    .await;
    let asked = TestReceiver::start().await;
    asked.set(Behavior::Status(429, String::new()));
    let throttled = TestReceiver::start().await;
    throttled.set(Behavior::Status(503, "busy".into()));
    let gone = TestReceiver::start().await;
    gone.set(Behavior::Status(410, "gone".into()));
    let plain = TestReceiver::start().await;
    plain.set(Behavior::Status(500, "oops".into()));

    // The receiver's Retry-After (2 s) outweighs the schedule and the throttle minimum.
    let w_asked = app.create_webhook(json!({"payload_url": asked.url("/")})).await;
    let w_throttled = app.create_webhook(json!({"payload_url": throttled.url("/")})).await;
    let w_gone = app.create_webhook(json!({"payload_url": gone.url("/")})).await;
    let w_once = app
        .create_webhook(json!({"payload_url": plain.url("/"), "retry_schedule": []}))
        .await;
    assert_eq!(w_once["retry_schedule"], json!([]));
    asked.set_header("Retry-After", "2");
    app.send_events(site_event("created", 1, "A")).await;

    let d = after_attempts(&app, &w_asked, 1).await;
    assert_eq!(d["status"]["value"], "retrying", "{d}");
    let wait = time(&d["next_attempt_at"]) - time(&d["attempts"][0]["started"]);
    assert!(
        wait >= chrono::Duration::milliseconds(1900),
        "Retry-After ignored: {wait}: {d}"
    );

    let d = after_attempts(&app, &w_throttled, 1).await;
    assert_eq!(d["status"]["value"], "retrying");
    let wait = time(&d["next_attempt_at"]) - time(&d["attempts"][0]["started"]);
    assert!(wait >= chrono::Duration::milliseconds(450), "503 not throttled: {wait}");

    let d = after_attempts(&app, &w_gone, 1).await;
    assert_eq!(d["status"]["value"], "failed", "410 must fail at once: {d}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);

    let d = after_attempts(&app, &w_once, 1).await;
    assert_eq!(
        d["status"]["value"], "failed",
        "an empty per-webhook schedule sends once: {d}"
    );
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn a_receiver_down_for_a_while_gets_everything_when_back(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.worker.retry_schedule = vec![0.05; 40];
        c.worker.retry_jitter = 0.0;
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Close);
    let hook = app.create_webhook(json!({"payload_url": rx.url("/")})).await;
    let events: Vec<Value> = (1..=20).map(|i| site_event("created", i, &format!("S{i}"))).collect();
    app.send_events(Value::Array(events)).await;
    // Down: every event is tried and fails at least once.
    rx.wait_for(40).await;
    rx.set(Behavior::Status(200, "ok".into()));
    let ids = app.delivery_ids(hook["id"].as_i64().unwrap()).await;
    assert_eq!(ids.len(), 20);
    for id in ids {
        let d = app.wait_delivery_done(id).await;
        assert_eq!(d["status"]["value"], "succeeded", "{d}");
        assert!(d["attempt_count"].as_i64().unwrap() >= 2);
    }
    let mut got = rx.event_ids();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    app.stop().await;
}

async fn a_hanging_receiver_does_not_hold_up_a_healthy_one(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.worker.concurrency = 8;
        c.worker.per_destination_concurrency = 3;
    })
    .await;
    let hanging = TestReceiver::start().await;
    hanging.set(Behavior::Hang);
    let healthy = TestReceiver::start().await;
    let slow = app
        .create_webhook(json!({"payload_url": hanging.url("/"), "timeout": 5}))
        .await;
    app.create_webhook(json!({"payload_url": healthy.url("/")})).await;
    let events: Vec<Value> = (1..=30).map(|i| site_event("created", i, &format!("S{i}"))).collect();
    app.send_events(Value::Array(events)).await;
    healthy.wait_for(30).await;
    // Every healthy delivery arrived while the hanging ones were still waiting on their timeout.
    let (_, list) = app
        .call(
            "GET",
            &format!(
                "/api/extras/deliveries/?webhook_id={}&status=failed&status=succeeded",
                slow["id"]
            ),
            None,
        )
        .await;
    assert_eq!(list["count"], 0, "the healthy receiver waited for the hanging one");
    assert!(
        hanging.received().len() <= 3,
        "more than the per-destination cap in flight"
    );
    hanging.set(Behavior::Status(200, String::new()));
    app.stop().await;
}

async fn manual_retry_delete_queue_stats_and_test_send(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Status(500, "down".into()));
    let hook = app
        .create_webhook(json!({"payload_url": rx.url("/"), "secret": "k"}))
        .await;
    app.send_events(json!([site_event("created", 1, "A"), site_event("created", 2, "B")]))
        .await;
    let ids = app.delivery_ids(hook["id"].as_i64().unwrap()).await;
    for id in &ids {
        assert_eq!(app.wait_delivery_done(*id).await["status"]["value"], "failed");
    }
    let (_, q) = app.call("GET", "/api/extras/queue/", None).await;
    assert_eq!(q["counts"]["failed"], 2);
    assert_eq!(q["failed_attempts_last_hour"], 2);
    assert!(q["oldest_waiting"].is_null());
    // The last hour, minute by minute, and the webhooks failing most.
    let minutes = q["last_hour"].as_array().unwrap();
    assert!((60..=61).contains(&minutes.len()), "{}", minutes.len());
    let failed: i64 = minutes.iter().map(|m| m["failed"].as_i64().unwrap()).sum();
    let succeeded: i64 = minutes.iter().map(|m| m["succeeded"].as_i64().unwrap()).sum();
    assert_eq!((failed, succeeded), (2, 0));
    assert_eq!(
        q["failing_webhooks"],
        json!([{"id": hook["id"], "name": hook["name"], "failed_attempts": 2}])
    );

    // One retry, by hand: a new attempt of the same delivery with the same body.
    rx.set(Behavior::Status(200, "ok".into()));
    let (s, d) = app
        .call("POST", &format!("/api/extras/deliveries/{}/retry/", ids[0]), None)
        .await;
    assert_eq!(s, 200, "{d}");
    let d = wait_for(Duration::from_secs(30), "the retried delivery", || async {
        let (_, d) = app
            .call("GET", &format!("/api/extras/deliveries/{}/", ids[0]), None)
            .await;
        (d["status"]["value"] == "succeeded").then_some(d)
    })
    .await;
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["request"]["body"], attempts[1]["request"]["body"]);
    assert_eq!(attempts[1]["response"]["status"], 200);
    // A succeeded delivery cannot be deleted; the failed one can.
    let (s, _) = app
        .call("DELETE", &format!("/api/extras/deliveries/{}/", ids[0]), None)
        .await;
    assert_eq!(s, 409);
    let (s, _) = app
        .call("DELETE", &format!("/api/extras/deliveries/{}/", ids[1]), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call("GET", &format!("/api/extras/deliveries/{}/", ids[1]), None)
        .await;
    assert_eq!(s, 404);

    // Bulk retry by filter.
    rx.set(Behavior::Status(500, "down again".into()));
    app.send_events(json!([site_event("created", 3, "C"), site_event("created", 4, "D")]))
        .await;
    let (_, list) = wait_for(Duration::from_secs(30), "two more failures", || async {
        let r = app.call("GET", "/api/extras/deliveries/?status=failed", None).await;
        (r.1["count"] == 2).then_some(r)
    })
    .await;
    assert_eq!(list["count"], 2);
    rx.set(Behavior::Status(204, String::new()));
    let (s, r) = app
        .call(
            "POST",
            "/api/extras/deliveries/retry/",
            Some(json!({"webhook_id": hook["id"]})),
        )
        .await;
    assert_eq!((s, r), (200, json!({"retried": 2})));
    wait_for(Duration::from_secs(30), "the bulk retry", || async {
        let (_, l) = app.call("GET", "/api/extras/deliveries/?status=succeeded", None).await;
        (l["count"] == 3).then_some(())
    })
    .await;
    let (s, b) = app
        .call("POST", "/api/extras/deliveries/retry/", Some(json!({"status": "lost"})))
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = app.call("DELETE", "/api/extras/deliveries/", Some(json!({}))).await;
    assert_eq!(s, 400);

    // Test-send: sent now, shown, not queued.
    let (s, t) = app
        .call("POST", &format!("/api/extras/webhooks/{}/test/", hook["id"]), None)
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["succeeded"], true);
    assert_eq!(t["response"]["status"], 204);
    assert_eq!(t["request"]["url"], rx.url("/"));
    let sent = rx.received().last().cloned().unwrap();
    assert_eq!(
        sent.header("x-hook-signature").unwrap(),
        herald::webhooks::signature::netbox("k", &sent.body)
    );
    let (_, all) = app.call("GET", "/api/extras/deliveries/", None).await;
    assert_eq!(all["count"], 3);
    app.stop().await;
}

async fn old_deliveries_are_purged(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.retention.succeeded_days = 0.0;
        c.retention.interval_secs = 0.05;
    })
    .await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({"payload_url": rx.url("/")})).await;
    app.send_events(json!([site_event("created", 1, "A"), site_event("created", 2, "B")]))
        .await;
    rx.wait_for(2).await;
    wait_for(
        Duration::from_secs(30),
        "retention to purge succeeded deliveries",
        || async {
            let (_, q) = app.call("GET", "/api/extras/queue/", None).await;
            let total: i64 = q["counts"].as_object()?.values().filter_map(Value::as_i64).sum();
            (total == 0).then_some(())
        },
    )
    .await;
    app.stop().await;
}

async fn stopping_returns_unfinished_deliveries_to_the_queue(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.worker.shutdown_grace_secs = 0.2).await;
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Hang);
    app.create_webhook(json!({"payload_url": rx.url("/"), "timeout": 30}))
        .await;
    app.send_events(site_event("created", 1, "A")).await;
    rx.wait_for(1).await;
    let dir = app.stop().await;
    let reopened = herald::server::App::open(dir.config()).await.unwrap();
    let d = reopened.store().delivery(1).await.unwrap();
    assert_eq!(d.status, herald::queue::Status::Queued);
    assert_eq!(d.attempts, 0);
}

async fn deleting_a_webhook_mid_send_loses_no_other_outcome(backend: Backend) {
    use herald::queue::{attach_events, Attempt, ClaimLimits, ClaimPlan, Outcome, Status};
    let dir = crate::common::DataDir::new(backend).await;
    let app = herald::server::App::open(dir.config()).await.unwrap();
    let svc = app.services();
    let store = app.store().clone();
    let mut hooks = Vec::new();
    for name in ["doomed", "kept"] {
        let body = json!({"name": name, "content_types": ["dcim.site"], "type_create": true, "payload_url": "http://127.0.0.1:9/"});
        hooks.push(body);
    }
    let hooks = svc
        .create_webhooks(&herald::auth::Actor::system(), hooks, true)
        .await
        .unwrap();
    svc.record_events(
        &herald::auth::Actor::system(),
        site_event("created", 1, "A"),
        site_event("created", 1, "A").to_string().as_bytes(),
        "fdbca812-3142-4783-b364-2e2bd5c16c6a",
    )
    .await
    .unwrap();
    let limits = ClaimLimits::total(10, hooks.iter().map(|h| h.id).collect());
    let plan = ClaimPlan::new(&limits, Utc::now(), std::time::Duration::from_secs(30), |_| {
        Some(std::time::Duration::from_secs(15))
    });
    let batch = store.claim(&plan).await.unwrap();
    let claimed = attach_events(batch.rows, batch.events);
    assert_eq!(claimed.len(), 2);
    // The doomed webhook goes while both are in flight: its delivery stays in the log.
    store.delete_webhooks(&[hooks[0].id], chrono::Utc::now()).await.unwrap();
    let doomed = claimed.iter().find(|c| c.webhook_id == hooks[0].id).unwrap();
    let kept_in_log = store.delivery(doomed.delivery_id).await.unwrap();
    assert!(kept_in_log.webhook_deleted && kept_in_log.webhook_name == "doomed");
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|c| {
            let attempt = Attempt {
                delivery_id: c.delivery_id,
                started: Utc::now(),
                duration_ms: 1.0,
                request_method: "POST".into(),
                request_url: "http://127.0.0.1:9/".into(),
                request_headers: Vec::new(),
                request_body: Some("{}".into()),
                response_status: Some(200),
                response_headers: Vec::new(),
                response_body: Some(String::new()),
                error: None,
            };
            Outcome::succeeded(c.delivery_id, attempt, Utc::now())
        })
        .collect();
    // The surviving outcome is recorded.
    herald::delivery::record_outcomes(store.as_ref(), outcomes.into()).await;
    let kept = claimed.iter().find(|c| c.webhook_id == hooks[1].id).unwrap();
    let d = store.delivery(kept.delivery_id).await.unwrap();
    assert_eq!(d.status, Status::Succeeded);
    assert_eq!(store.attempts(kept.delivery_id).await.unwrap().len(), 1);
    // The deleted webhook's one too: its attempt is in the log.
    assert_eq!(store.attempts(doomed.delivery_id).await.unwrap().len(), 1);
}

async fn webhooks_sharing_a_hanging_destination_share_its_slots(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.worker.concurrency = 8;
        c.worker.per_destination_concurrency = 3;
    })
    .await;
    let hanging = TestReceiver::start().await;
    hanging.set(Behavior::Hang);
    let healthy = TestReceiver::start().await;
    // Four webhooks on one slow host: together they may hold its 3 slots, no more.
    let mut slow = Vec::new();
    for path in ["/a", "/b", "/c", "/d"] {
        slow.push(
            app.create_webhook(json!({"payload_url": hanging.url(path), "timeout": 5}))
                .await,
        );
    }
    app.create_webhook(json!({"payload_url": healthy.url("/")})).await;
    let events: Vec<Value> = (1..=20).map(|i| site_event("created", i, &format!("S{i}"))).collect();
    app.send_events(Value::Array(events)).await;
    healthy.wait_for(20).await;
    for hook in &slow {
        let (_, list) = app
            .call(
                "GET",
                &format!(
                    "/api/extras/deliveries/?webhook_id={}&status=failed&status=succeeded",
                    hook["id"]
                ),
                None,
            )
            .await;
        assert_eq!(list["count"], 0, "the healthy receiver waited for the hanging one");
    }
    assert!(
        hanging.received().len() <= 3,
        "more than the destination's cap sent at once"
    );
    // Claims never took more for that host than it had free slots: no worker slot sits idle
    // waiting behind it.
    let ids: Vec<String> = slow.iter().map(|h| format!("webhook_id={}", h["id"])).collect();
    let (_, claimed) = app
        .call(
            "GET",
            &format!("/api/extras/deliveries/?status=in_flight&{}", ids.join("&")),
            None,
        )
        .await;
    assert!(
        claimed["count"].as_i64().unwrap() <= 3,
        "claimed beyond the cap: {}",
        claimed["count"]
    );
    app.stop().await;
}

async fn a_worker_run_until_idle_sends_every_due_retry_and_records_it(backend: Backend) {
    use herald::queue::{DeliveryFilter, Status};
    let dir = crate::common::DataDir::new(backend).await;
    let mut config = dir.config();
    config.worker.retry_schedule = vec![0.0, 0.0];
    config.worker.retry_jitter = 0.0;
    let app = herald::server::App::open(config).await.unwrap();
    let svc = app.services();
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Status(503, "later".into()));
    let body = json!({"name": "idle", "content_types": ["dcim.site"], "type_create": true, "payload_url": rx.url("/")});
    svc.create_webhooks(&herald::auth::Actor::system(), vec![body], false)
        .await
        .unwrap();
    for i in 1..=3 {
        svc.record_events(
            &herald::auth::Actor::system(),
            site_event("created", i, "A"),
            site_event("created", i, "A").to_string().as_bytes(),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await
        .unwrap();
    }
    // No wall-clock waits: the worker runs until nothing is due and every outcome is written.
    let worker = app.worker();
    assert_eq!(
        worker.run_until_idle().await.unwrap(),
        9,
        "3 deliveries, 3 attempts each"
    );
    assert_eq!(rx.received().len(), 9);
    let failed = DeliveryFilter {
        status: vec![Status::Failed],
        ..Default::default()
    };
    let page = svc
        .deliveries(&herald::auth::Actor::system(), &failed, 10, 0, None)
        .await
        .unwrap();
    assert_eq!(page.count, 3);
    for d in &page.items {
        assert_eq!(d.attempts, 3);
        assert_eq!(
            svc.delivery(&herald::auth::Actor::system(), d.id)
                .await
                .unwrap()
                .attempts
                .len(),
            3
        );
    }
    rx.set(Behavior::Status(204, String::new()));
    assert_eq!(
        svc.retry_deliveries(&herald::auth::Actor::system(), &DeliveryFilter::default())
            .await
            .unwrap(),
        3
    );
    assert_eq!(worker.run_until_idle().await.unwrap(), 3);
    let ok = DeliveryFilter {
        status: vec![Status::Succeeded],
        ..Default::default()
    };
    assert_eq!(
        svc.deliveries(&herald::auth::Actor::system(), &ok, 10, 0, None)
            .await
            .unwrap()
            .count,
        3
    );
    assert_eq!(worker.run_until_idle().await.unwrap(), 0, "idle stays idle");
    worker.drain().await;
}

async fn a_delivery_claimed_again_and_again_without_an_outcome_fails_instead_of_forever(backend: Backend) {
    use herald::auth::Actor;
    use herald::queue::{ClaimLimits, ClaimPlan, DeliveryFilter, Status};
    let dir = crate::common::DataDir::new(backend).await;
    let app = herald::server::App::open(dir.config()).await.unwrap();
    let svc = app.services();
    let rx = TestReceiver::start().await;
    let body =
        json!({"name": "crashy", "content_types": ["dcim.site"], "type_create": true, "payload_url": rx.url("/")});
    let hooks = svc.create_webhooks(&Actor::system(), vec![body], false).await.unwrap();
    svc.record_events(
        &Actor::system(),
        site_event("created", 1, "A"),
        site_event("created", 1, "A").to_string().as_bytes(),
        &uuid::Uuid::new_v4().to_string(),
    )
    .await
    .unwrap();
    // Three workers each claimed it and died before recording anything: their (instant)
    // leases ran out.
    let limits = ClaimLimits::total(10, vec![hooks[0].id]);
    for _ in 0..3 {
        let plan = ClaimPlan::new(&limits, Utc::now(), Duration::ZERO, |_| Some(Duration::ZERO));
        assert_eq!(app.store().claim(&plan).await.unwrap().rows.len(), 1);
    }
    let worker = app.worker();
    assert_eq!(worker.run_until_idle().await.unwrap(), 1);
    worker.drain().await;
    let page = svc
        .deliveries(&Actor::system(), &DeliveryFilter::default(), 10, 0, None)
        .await
        .unwrap();
    let d = &page.items[0];
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("claimed 3 times without an outcome"),
        "{:?}",
        d.last_error
    );
    assert!(rx.received().is_empty(), "not sent a fourth time");
}

crate::on_each_backend!(
    retry_after_throttling_and_gone_follow_the_rules,
    a_receiver_down_for_a_while_gets_everything_when_back,
    a_hanging_receiver_does_not_hold_up_a_healthy_one,
    manual_retry_delete_queue_stats_and_test_send,
    old_deliveries_are_purged,
    stopping_returns_unfinished_deliveries_to_the_queue,
    deleting_a_webhook_mid_send_loses_no_other_outcome,
    webhooks_sharing_a_hanging_destination_share_its_slots,
    a_worker_run_until_idle_sends_every_due_retry_and_records_it,
    a_delivery_claimed_again_and_again_without_an_outcome_fails_instead_of_forever
);
