//! The delivery guarantees, each on both backends with real receivers: NetBox's retries taken
//! once, rate limits held by a fleet, per-object order, batches, Standard Webhooks through a
//! secret's rotation, auto-disable with the operator's notices, and a deleted webhook's log.

use crate::common::{process, wait_for, Backend, Behavior, DataDir, Received, TestApp, TestReceiver};
use crate::on_each_backend;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_each_backend!(
    netbox_retries_and_idempotency_keys_are_taken_once,
    an_ordered_webhook_sends_each_objects_changes_in_commit_order,
    a_bulk_create_reaches_a_batched_webhook_as_one_request,
    standard_webhooks_verify_before_during_and_after_a_rotation,
    a_failing_webhook_is_disabled_and_its_operator_told,
    a_deleted_webhooks_deliveries_stay_readable;
    multi_thread: a_rate_limit_spreads_deliveries_across_workers,
);

fn body_of(r: &Received) -> Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

async fn netbox_retries_and_idempotency_keys_are_taken_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let hook = app
        .create_webhook(json!({"content_types": ["dcim.rack", "dcim.site"], "payload_url": rx.url("/")}))
        .await;
    // NetBox's RQ retrying after a timeout posts the very same body again.
    let (s, first) = app.raw("POST", "/api/extras/events/", super::relay::NETBOX_4_6).await;
    assert_eq!(
        (s, &first["duplicate"], &first["deliveries_queued"]),
        (202, &json!(false), &json!(1)),
        "{first}"
    );
    let (s, again) = app.raw("POST", "/api/extras/events/", super::relay::NETBOX_4_6).await;
    assert_eq!(
        (s, &again["duplicate"], &again["deliveries_queued"]),
        (202, &json!(true), &json!(0)),
        "{again}"
    );
    assert_eq!(
        again["event_ids"], first["event_ids"],
        "a duplicate is answered with the first event's ids"
    );

    // Any body, twice with one Idempotency-Key: the second is the first.
    let post = |key: &'static str, name: &'static str| {
        let (client, url, token) = (app.client.clone(), app.url("/api/extras/events/"), app.token.clone());
        async move {
            let resp = client
                .post(url)
                .header("Authorization", format!("Token {token}"))
                .header("Idempotency-Key", key)
                .json(&crate::common::site_event("created", 5, name))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, one) = post("relay-7f3a", "Keyed").await;
    assert_eq!((s, &one["duplicate"]), (202, &json!(false)), "{one}");
    // Another body under the same key is still the first request.
    let (s, two) = post("relay-7f3a", "Changed meanwhile").await;
    assert_eq!(
        (s, &two["duplicate"], &two["event_ids"]),
        (202, &json!(true), &one["event_ids"]),
        "{two}"
    );

    // Deliveries are queued with the events they answer: two in all, sent once each.
    let ids = app.delivery_ids(hook["id"].as_i64().unwrap()).await;
    assert_eq!(ids.len(), 2, "one delivery per distinct event");
    for id in ids {
        assert_eq!(app.wait_delivery_done(id).await["status"]["value"], "succeeded");
    }
    assert_eq!(rx.received().len(), 2);
    // A key that is not visible ASCII is refused, naming the header.
    let resp = app
        .client
        .post(app.url("/api/extras/events/"))
        .header("Authorization", format!("Token {}", app.token))
        .header("Idempotency-Key", "caf\u{e9}".as_bytes())
        .json(&crate::common::site_event("created", 6, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("Idempotency-Key"));
    app.stop().await;
}

/// A site to create through the API.
fn site(name: &str) -> Value {
    json!({"name": name, "slug": name.to_lowercase(), "status": "active"})
}

async fn an_ordered_webhook_sends_each_objects_changes_in_commit_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    // Alpha's create is refused twice; the retries come a second apart.
    rx.set(Behavior::Refuse {
        holding: vec!["\"event\": \"created\"".into(), "\"name\": \"Alpha\"".into()],
        times: 2,
        status: 503,
    });
    let hook = app
        .create_webhook(json!({"payload_url": rx.url("/"), "ordered": true, "type_update": true,
                               "type_delete": true, "retry_schedule": [1, 1, 1]}))
        .await;
    assert_eq!(hook["ordered"], json!(true));
    let (s, alpha) = app.call("POST", "/api/dcim/sites/", Some(site("Alpha"))).await;
    assert_eq!(s, 201, "{alpha}");
    let (s, beta) = app.call("POST", "/api/dcim/sites/", Some(site("Beta"))).await;
    assert_eq!(s, 201, "{beta}");
    let alpha_path = format!("/api/dcim/sites/{}/", alpha["id"]);
    let (s, b) = app
        .call("PATCH", &alpha_path, Some(json!({"description": "moved"})))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.call("DELETE", &alpha_path, None).await;
    assert_eq!(s, 204, "{b}");

    let got = rx.wait_for(6).await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let b = body_of(r);
            (
                b["data"]["name"].as_str().unwrap().to_string(),
                b["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let alpha_seen: Vec<&str> = seen
        .iter()
        .filter(|(n, _)| n == "Alpha")
        .map(|(_, e)| e.as_str())
        .collect();
    assert_eq!(
        alpha_seen,
        ["created", "created", "created", "updated", "deleted"],
        "Alpha's changes in commit order, its create retried first: {seen:?}"
    );
    // Beta did not wait for Alpha's retries.
    let beta_at = seen.iter().position(|(n, _)| n == "Beta").expect("Beta's create");
    let alpha_sent = seen.iter().rposition(|(n, e)| n == "Alpha" && e == "created").unwrap();
    assert!(
        beta_at < alpha_sent,
        "another object's delivery waited behind Alpha's retries: {seen:?}"
    );
    for id in app.delivery_ids(hook["id"].as_i64().unwrap()).await {
        assert_eq!(app.wait_delivery_done(id).await["status"]["value"], "succeeded");
    }
    assert_eq!(rx.received().len(), 6);
    app.stop().await;
}

async fn a_bulk_create_reaches_a_batched_webhook_as_one_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let batched = app
        .create_webhook(json!({"payload_url": rx.url("/batched"), "batch": true}))
        .await;
    assert_eq!(batched["batch"], json!(true));
    // Single-event templates keep working; `events` is the whole list.
    app.create_webhook(json!({"payload_url": rx.url("/templated"), "batch": true, "http_content_type": "text/plain",
                              "body_template": "{{ events|length }} {{ event }} {{ data.name }} {{ events[-1].data.name }}"}))
        .await;
    app.create_webhook(json!({"payload_url": rx.url("/one-by-one")})).await;
    let sites: Vec<Value> = (0..10).map(|i| site(&format!("Bulk{i}"))).collect();
    let (s, b) = app.call("POST", "/api/dcim/sites/", Some(Value::Array(sites))).await;
    assert_eq!(s, 201, "{b}");

    let got = rx.wait_for(12).await;
    let at = |path: &str| -> Vec<&Received> { got.iter().filter(|r| r.path == path).collect() };
    let one = at("/batched");
    assert_eq!(one.len(), 1, "one request for the whole bulk create");
    let list = body_of(one[0]);
    let names: Vec<&str> = list
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|c| c["data"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, (0..10).map(|i| format!("Bulk{i}")).collect::<Vec<_>>());
    // Each item is the context NetBox would have sent alone, as the unbatched webhook got it.
    let mut alone: Vec<Value> = at("/one-by-one").iter().map(|r| body_of(r)).collect();
    alone.sort_by_key(|b| b["data"]["id"].as_i64());
    assert_eq!(alone.len(), 10);
    assert_eq!(list, Value::Array(alone));
    assert_eq!(at("/templated")[0].text(), "10 created Bulk0 Bulk9");
    // The log lists the batch's events.
    let ids = app.delivery_ids(batched["id"].as_i64().unwrap()).await;
    assert_eq!(ids.len(), 1);
    let (_, d) = app
        .call("GET", &format!("/api/extras/deliveries/{}/", ids[0]), None)
        .await;
    assert_eq!(d["batch_event_ids"].as_array().map(Vec::len), Some(10), "{d}");
    app.stop().await;
}

/// Checks each request with Python's `standardwebhooks` (the `webhook-*` headers, by the secrets
/// listed for it) and as a NetBox receiver does (`X-Hook-Signature`, HMAC-SHA512 of the body);
/// the keys a check must fail for are listed too. Prints one line per request.
const VERIFY: &str = r#"
import hashlib, hmac, json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
for case in json.load(sys.stdin):
    body = case["body"].encode()
    for secret in case["standard_ok"]:
        Webhook(secret).verify(body, case["headers"])
    for secret in case["standard_bad"]:
        try:
            Webhook(secret).verify(body, case["headers"])
            sys.exit("the old secret still verifies " + case["name"])
        except WebhookVerificationError:
            pass
    for header, secret in case["netbox"]:
        want = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
        assert hmac.compare_digest(case["headers"][header], want), (case["name"], header)
    print(case["name"], "verified")
"#;

async fn standard_webhooks_verify_before_during_and_after_a_rotation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let (old, new) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    );
    let hook = app
        .create_webhook(json!({"payload_url": rx.url("/"), "signature_scheme": "both", "secret": old}))
        .await;
    let rotate = format!("/api/extras/webhooks/{}/rotate-secret/", hook["id"]);
    let create = |name: &'static str| {
        let app = &app;
        async move {
            let (s, b) = app.call("POST", "/api/dcim/sites/", Some(site(name))).await;
            assert_eq!(s, 201, "{b}");
        }
    };
    create("Before").await;
    rx.wait_for(1).await;
    // The new secret signs beside the old one for the overlap.
    let (s, rotated) = app
        .call("POST", &rotate, Some(json!({"secret": new, "overlap_secs": 3600})))
        .await;
    assert_eq!((s, rotated["secret"].as_str()), (200, Some(new)), "{rotated}");
    create("During").await;
    rx.wait_for(2).await;
    // Overlap 0 with the same secret ends the overlap: only the new secret signs.
    let (s, ended) = app
        .call("POST", &rotate, Some(json!({"secret": new, "overlap_secs": 0})))
        .await;
    assert_eq!(s, 200, "{ended}");
    create("After").await;
    let got = rx.wait_for(3).await;

    let cases: Vec<Value> = got
        .iter()
        .map(|r| {
            let name = body_of(r)["data"]["name"].as_str().unwrap().to_string();
            let headers: serde_json::Map<String, Value> =
                r.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let (ok, bad, netbox) = match name.as_str() {
                "Before" => (vec![old], vec![new], json!([["x-hook-signature", old]])),
                "During" => (
                    vec![old, new],
                    vec![],
                    json!([["x-hook-signature", old], ["x-hook-signature-next", new]]),
                ),
                _ => (vec![new], vec![old], json!([["x-hook-signature", new]])),
            };
            if name == "After" {
                assert_eq!(
                    r.header("x-hook-signature-next"),
                    None,
                    "a signature by the old secret after the overlap"
                );
            }
            assert_eq!(
                r.header("webhook-signature").map(|s| s.split(' ').count()),
                Some(if name == "During" { 2 } else { 1 })
            );
            json!({"name": name, "body": r.text(), "headers": headers, "standard_ok": ok,
                   "standard_bad": bad, "netbox": netbox})
        })
        .collect();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(python)
        .args(["-c", VERIFY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        serde_json::to_string(&cases).unwrap().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    // The webhook-id is the delivery's, the same on every attempt.
    for r in &got {
        assert_eq!(r.header("webhook-id"), r.header("x-herald-delivery"));
    }
    app.stop().await;
}

async fn a_failing_webhook_is_disabled_and_its_operator_told(backend: Backend) {
    let notices = TestReceiver::start().await;
    let url = notices.url("/notices");
    let app = TestApp::spawn_with(backend, |c| {
        c.notices.url = url;
        c.notices.secret = "notice-secret".into();
        c.notices.failing_after = 2;
        c.worker.disable_failing_after_secs = 1.0;
        c.worker.health_interval_secs = 0.1;
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.set(Behavior::Status(500, "down".into()));
    let hook = app.create_webhook(json!({"payload_url": rx.url("/")})).await;
    let path = format!("/api/extras/webhooks/{}/", hook["id"]);
    // Herald's own notices webhook is out of the API's sight.
    let (_, list) = app.call("GET", "/api/extras/webhooks/", None).await;
    assert_eq!(list["count"], json!(1), "{list}");
    for name in ["Down1", "Down2"] {
        let (s, b) = app.call("POST", "/api/dcim/sites/", Some(site(name))).await;
        assert_eq!(s, 201, "{b}");
    }
    let kinds = |notices: &TestReceiver| -> Vec<String> {
        notices
            .received()
            .iter()
            .map(|r| body_of(r)["event"].as_str().unwrap().to_string())
            .collect()
    };
    let disabled = wait_for(
        Duration::from_secs(30),
        "the failing webhook to be disabled",
        || async {
            let (_, w) = app.call("GET", &path, None).await;
            (w["enabled"] == json!(false)).then_some(w)
        },
    )
    .await;
    let reason = disabled["disabled_reason"].as_str().expect("a reason");
    assert!(reason.contains("HTTP 500") || reason.contains("500"), "{reason}");
    wait_for(
        Duration::from_secs(30),
        "webhook.failing and webhook.disabled notices",
        || async {
            let k = kinds(&notices);
            (k.contains(&"webhook.failing".into()) && k.contains(&"webhook.disabled".into())).then_some(())
        },
    )
    .await;
    for r in notices.received() {
        let b = body_of(&r);
        let sig = herald::webhooks::signature::netbox("notice-secret", &r.body);
        assert_eq!(r.header("x-hook-signature"), Some(sig.as_str()), "notices are signed");
        assert_eq!(b["webhook"]["id"], hook["id"], "{b}");
        assert_eq!(b["webhook"]["name"], hook["name"]);
        assert!(b["last_error"].as_str().is_some_and(|e| e.contains("500")), "{b}");
        assert!(b["links"]["webhook"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/extras/webhooks/{}/", hook["id"])));
    }
    // Each delivery failed for good (no retries here), and was noticed.
    assert!(
        kinds(&notices).contains(&"delivery.failed".into()),
        "{:?}",
        kinds(&notices)
    );
    // The pages show why.
    let (pages, _, session) = crate::common::log_in(&app.base, "admin", "admin-password", "/").await;
    let page = pages
        .get(app.url(&format!("/extras/webhooks/{}/", hook["id"])))
        .header("Cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Every delivery attempt failed"),
        "the page does not say why it is disabled"
    );

    // Enabled again and answered: recovered.
    rx.set(Behavior::Status(200, "ok".into()));
    let (s, w) = app.call("PATCH", &path, Some(json!({"enabled": true}))).await;
    assert_eq!((s, &w["disabled_reason"]), (200, &Value::Null), "{w}");
    let (s, b) = app.call("POST", "/api/dcim/sites/", Some(site("Up"))).await;
    assert_eq!(s, 201, "{b}");
    wait_for(Duration::from_secs(30), "a webhook.recovered notice", || async {
        kinds(&notices).contains(&"webhook.recovered".into()).then_some(())
    })
    .await;
    let (_, w) = app.call("GET", &path, None).await;
    assert_eq!(w["enabled"], json!(true), "recovered, it stays enabled");
    let k = kinds(&notices);
    assert_eq!(k.iter().filter(|k| *k == "webhook.disabled").count(), 1, "{k:?}");
    assert_eq!(k.iter().filter(|k| *k == "webhook.failing").count(), 1, "{k:?}");
    app.stop().await;
}

async fn a_deleted_webhooks_deliveries_stay_readable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let hook = app.create_webhook(json!({"payload_url": rx.url("/")})).await;
    let (s, created) = app.call("POST", "/api/dcim/sites/", Some(site("Kept"))).await;
    assert_eq!(s, 201);
    let id = hook["id"].as_i64().unwrap();
    let delivery = app.delivery_ids(id).await[0];
    app.wait_delivery_done(delivery).await;
    let (s, _) = app.call("DELETE", &format!("/api/extras/webhooks/{id}/"), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.call("GET", &format!("/api/extras/webhooks/{id}/"), None).await;
    assert_eq!(s, 404);
    let (s, d) = app
        .call("GET", &format!("/api/extras/deliveries/{delivery}/"), None)
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        (&d["webhook"]["deleted"], &d["status"]["value"]),
        (&json!(true), &json!("succeeded")),
        "{d}"
    );
    assert_eq!(d["attempts"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d["webhook"]["name"], hook["name"], "{d}");
    // Found by the object it is about.
    let (_, by_object) = app
        .call(
            "GET",
            &format!("/api/extras/deliveries/?object_id={}", created["id"]),
            None,
        )
        .await;
    assert_eq!(by_object["count"], json!(1), "{by_object}");
    // A new webhook may take the deleted one's name.
    app.create_webhook(json!({"name": hook["name"], "payload_url": rx.url("/")}))
        .await;
    app.stop().await;
}

/// Twenty deliveries to a webhook limited to 5/s: spread over 2.8 s at least, a burst of one
/// second's worth at most, none failed. On PostgreSQL two `herald worker` processes share the
/// limit; on SQLite the server's own worker keeps it.
async fn a_rate_limit_spreads_deliveries_across_workers(backend: Backend) {
    let rx = TestReceiver::start().await;
    let dir = DataDir::new(backend).await;
    let db = dir.database_url();
    let token = "0123456789abcdef0123456789abcdef01234567";
    let fleet = dir.on_postgres();
    let poll = [("HERALD_WORKER__POLL_INTERVAL_SECS", "0.05")];
    let args: &[&str] = if fleet { &["--no-worker"] } else { &[] };
    let (server, base) = process::serve(&db, token, args, &poll).await;
    let workers: Vec<_> = if fleet {
        (0..2).map(|_| process::worker(&db, &poll)).collect()
    } else {
        Vec::new()
    };
    let client = reqwest::Client::new();
    let call = |method: &str, path: &str, body: Value| {
        let req = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("Authorization", format!("Token {token}"));
        if body.is_null() {
            req.send()
        } else {
            req.json(&body).send()
        }
    };
    let resp = call(
        "POST",
        "/api/extras/webhooks/",
        json!({"name": "limited", "content_types": ["dcim.site"], "type_create": true,
               "payload_url": rx.url("/"), "rate_limit": 5}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let hook: Value = resp.json().await.unwrap();
    assert_eq!(hook["rate_limit"], json!(5.0));
    let sites: Vec<Value> = (0..20).map(|i| site(&format!("Limited{i}"))).collect();
    let started = Instant::now();
    let resp = call("POST", "/api/dcim/sites/", Value::Array(sites)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let got = rx.wait_for(20).await;
    let mut at: Vec<f64> = got.iter().map(|r| r.at.duration_since(started).as_secs_f64()).collect();
    at.sort_by(f64::total_cmp);
    let spread = at[19] - at[0];
    assert!(spread >= 2.8, "20 deliveries at 5/s came within {spread:.2} s: {at:?}");
    // No stretch carries more than a second's burst plus the rate, within 10 %.
    for i in 0..at.len() {
        for j in i + 1..at.len() {
            let allowed = 5.0 + 5.0 * 1.1 * (at[j] - at[i]) + 1.0;
            assert!(
                ((j - i + 1) as f64) <= allowed,
                "{} deliveries in {:.2} s: {at:?}",
                j - i + 1,
                at[j] - at[i]
            );
        }
    }
    // None failed or was counted as an attempt twice.
    let list: Value = call(
        "GET",
        &format!("/api/extras/deliveries/?webhook_id={}&limit=0", hook["id"]),
        json!(null),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let results = list["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    wait_for(
        Duration::from_secs(30),
        "every delivery recorded as succeeded",
        || async {
            let list: Value = call(
                "GET",
                &format!(
                    "/api/extras/deliveries/?webhook_id={}&status=succeeded&limit=0",
                    hook["id"]
                ),
                json!(null),
            )
            .await
            .ok()?
            .json()
            .await
            .ok()?;
            (list["count"] == json!(20)).then_some(())
        },
    )
    .await;
    assert_eq!(rx.received().len(), 20, "sent once each");
    for w in workers {
        herald_testkit::process::stop(w).await;
    }
    herald_testkit::process::stop(server).await;
}
