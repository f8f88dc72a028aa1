//! The REST API: auth, webhook CRUD with NetBox's conventions, preview, and bad input that
//! gets a 400 naming the field, never a 500.

use crate::common::{site_event, Backend, TestApp};
use serde_json::{json, Value};

fn webhook(name: &str) -> Value {
    json!({"name": name, "content_types": ["dcim.site"], "type_create": true, "payload_url": "http://127.0.0.1:9/hook"})
}

/// Asserts a 400 whose body names `field` (for a list body, in the item at `index`).
fn assert_names(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "expected 400 naming {field}, got {status}: {body}");
    let obj = match body {
        Value::Array(items) => items.iter().find(|i| i.get(field).is_some()).unwrap_or(&Value::Null),
        other => other,
    };
    let msgs = obj.get(field).unwrap_or_else(|| panic!("{field} not named in {body}"));
    assert!(msgs.is_array() || msgs.is_object(), "{body}");
}

async fn auth_follows_netbox(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let resp = app.client.get(app.url("/api/extras/webhooks/")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );
    let (s, b) = app
        .call_as(
            "0000000000000000000000000000000000000000",
            "GET",
            "/api/extras/webhooks/",
            None,
        )
        .await;
    assert_eq!((s, b), (403, json!({"detail": "Invalid token"})));
    // Bearer works too.
    let resp = app
        .client
        .get(app.url("/api/extras/webhooks/"))
        .header("Authorization", format!("Bearer {}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("API-Version").is_some());
    // Read-only tokens read but do not write.
    let (s, _) = app
        .call_as(&app.read_only_token, "GET", "/api/extras/webhooks/", None)
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .call_as(
            &app.read_only_token,
            "POST",
            "/api/extras/webhooks/",
            Some(webhook("ro")),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = app
        .call_as(
            &app.read_only_token,
            "POST",
            "/api/extras/events/",
            Some(site_event("created", 1, "A")),
        )
        .await;
    assert_eq!(s, 403);
    let (_, list) = app.call("GET", "/api/extras/webhooks/", None).await;
    assert_eq!(list["count"], 0);
    app.stop().await;
}

async fn webhook_crud_bulk_filters_and_pagination(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, one) = app
        .call(
            "POST",
            "/api/extras/webhooks/",
            Some(json!({
                "name": "first", "content_types": ["dcim.site", "dcim.device"], "type_create": true,
                "payload_url": "https://example.invalid/hook", "secret": "top-secret"
            })),
        )
        .await;
    assert_eq!(s, 201, "{one}");
    assert!(one.get("secret").is_none(), "secret leaked: {one}");
    assert!(!one.to_string().contains("top-secret"));
    assert_eq!(one["has_secret"], true);
    assert_eq!(one["http_method"], "POST");
    assert_eq!(one["http_content_type"], "application/json");
    assert_eq!(one["timeout"], 15);
    assert_eq!(one["enabled"], true);
    assert_eq!(one["ssl_verification"], true);
    let id = one["id"].as_i64().unwrap();
    // REST urls are absolute, as NetBox's are (webhook payloads keep theirs relative).
    assert_eq!(one["url"], format!("{}/api/extras/webhooks/{id}/", app.base));

    let bulk: Vec<Value> = (0..5).map(|i| webhook(&format!("bulk-{i}"))).collect();
    let (s, made) = app
        .call("POST", "/api/extras/webhooks/", Some(Value::Array(bulk)))
        .await;
    assert_eq!(s, 201);
    assert_eq!(made.as_array().unwrap().len(), 5);

    // Pagination links follow NetBox's shape.
    let (_, page) = app.call("GET", "/api/extras/webhooks/?limit=2", None).await;
    assert_eq!(page["count"], 6);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert!(page["previous"].is_null());
    let next = page["next"].as_str().unwrap().to_string();
    assert!(
        next.starts_with(&app.base) && next.contains("offset=2") && next.contains("limit=2"),
        "{next}"
    );
    let (_, page2) = app.call("GET", next.strip_prefix(&app.base).unwrap(), None).await;
    assert_eq!(page2["results"].as_array().unwrap().len(), 2);
    assert_ne!(page["results"][0]["id"], page2["results"][0]["id"]);

    // Filters.
    let (_, f) = app
        .call("GET", "/api/extras/webhooks/?name=bulk-1&name=bulk-2", None)
        .await;
    assert_eq!(f["count"], 2);
    let (_, f) = app
        .call("GET", "/api/extras/webhooks/?content_types=dcim.device", None)
        .await;
    assert_eq!(f["count"], 1);
    assert_eq!(f["results"][0]["name"], "first");

    // PATCH, PUT, and the bulk forms.
    let (s, p) = app
        .call(
            "PATCH",
            &format!("/api/extras/webhooks/{id}/"),
            Some(json!({"enabled": false, "timeout": 30})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        (p["enabled"].clone(), p["timeout"].clone(), p["name"].clone()),
        (json!(false), json!(30), json!("first"))
    );
    let (_, f) = app.call("GET", "/api/extras/webhooks/?enabled=false", None).await;
    assert_eq!(f["count"], 1);
    let (s, b) = app
        .call(
            "PUT",
            &format!("/api/extras/webhooks/{id}/"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_names(s, &b, "name");
    let ids: Vec<Value> = made
        .as_array()
        .unwrap()
        .iter()
        .map(|w| json!({"id": w["id"], "http_method": "PUT"}))
        .collect();
    let (s, b) = app
        .call("PATCH", "/api/extras/webhooks/", Some(Value::Array(ids.clone())))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b.as_array().unwrap().iter().all(|w| w["http_method"] == "PUT"));
    // A bulk update with one bad item changes nothing.
    let mut bad = ids.clone();
    bad[1]["http_method"] = json!("FETCH");
    for item in bad.iter_mut() {
        item["timeout"] = json!(99);
    }
    let (s, b) = app
        .call("PATCH", "/api/extras/webhooks/", Some(Value::Array(bad)))
        .await;
    assert_names(s, &b, "http_method");
    let (_, w) = app
        .call("GET", &format!("/api/extras/webhooks/{}/", made[0]["id"]), None)
        .await;
    assert_eq!(w["timeout"], 15);
    // Bulk delete, then single delete.
    let (s, _) = app
        .call("DELETE", "/api/extras/webhooks/", Some(Value::Array(ids[..2].to_vec())))
        .await;
    assert_eq!(s, 204);
    let (s, _) = app.call("DELETE", &format!("/api/extras/webhooks/{id}/"), None).await;
    assert_eq!(s, 204);
    let (s, b) = app.call("GET", &format!("/api/extras/webhooks/{id}/"), None).await;
    assert_eq!((s, b), (404, json!({"detail": "Not found."})));
    let (_, list) = app.call("GET", "/api/extras/webhooks/", None).await;
    assert_eq!(list["count"], 3);
    app.stop().await;
}

async fn bad_webhooks_get_a_400_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = "/api/extras/webhooks/";
    let (s, b) = app.raw("POST", path, "{\"name\": ").await;
    assert_eq!(s, 400);
    assert!(b["detail"].as_str().unwrap().starts_with("JSON parse error"), "{b}");

    let with = |k: &str, v: Value| {
        let mut w = webhook(&format!("w-{k}"));
        w[k] = v;
        w
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("name", json!(5)), "name"),
        (with("name", json!("")), "name"),
        (with("name", json!("x".repeat(151))), "name"),
        (with("enabled", json!("maybe")), "enabled"),
        (with("timeout", json!("soon")), "timeout"),
        (with("timeout", json!(0)), "timeout"),
        (with("timeout", json!(3601)), "timeout"),
        (with("content_types", json!("dcim.site")), "content_types"),
        (with("content_types", json!([])), "content_types"),
        (with("content_types", json!(["dcim.nothing"])), "content_types"),
        (with("type_create", json!(false)), "type_create"),
        (with("http_method", json!("FETCH")), "http_method"),
        (with("payload_url", json!("ftp://example.com/")), "payload_url"),
        (with("payload_url", json!("not a url")), "payload_url"),
        (with("payload_url", json!("http://")), "payload_url"),
        (with("payload_url", json!("http://h/{{ x")), "payload_url"),
        (with("body_template", json!("{% for x in y %}")), "body_template"),
        (with("additional_headers", json!("X: {{ a | }}")), "additional_headers"),
        (with("ca_file_path", json!("/nonexistent/ca.pem")), "ca_file_path"),
        (with("ca_file_path", json!("/etc/hostname")), "ca_file_path"),
        (
            with("conditions", json!({"attr": "status.value", "value": 1, "op": "near"})),
            "conditions",
        ),
        (
            with(
                "conditions",
                json!({"and": [{"attr": "mtu", "value": "big", "op": "gt"}]}),
            ),
            "conditions",
        ),
        (json!({"content_types": ["dcim.site"], "type_create": true}), "name"),
        (
            json!({"name": "x", "type_create": true, "payload_url": "http://h/"}),
            "content_types",
        ),
        (json!(["not an object"]), "non_field_errors"),
    ];
    for (body, field) in cases {
        let (s, b) = app.call("POST", path, Some(body.clone())).await;
        assert_names(s, &b, field);
    }
    // CA file with verification off.
    let mut w = webhook("ca-off");
    w["ssl_verification"] = json!(false);
    w["ca_file_path"] = json!("/etc/ssl/certs/ca-certificates.crt");
    let (s, b) = app.call("POST", path, Some(w)).await;
    assert_names(s, &b, "ca_file_path");
    // A syntax error names its line.
    let (_, b) = app
        .call(
            "POST",
            path,
            Some(with("body_template", json!("line one\n{{ data.name }\n"))),
        )
        .await;
    let msg = b["body_template"][0].as_str().unwrap();
    assert!(msg.contains("line 2"), "{msg}");
    // Duplicate names.
    app.call("POST", path, Some(webhook("dup"))).await;
    let (s, b) = app.call("POST", path, Some(webhook("dup"))).await;
    assert_names(s, &b, "name");
    // An atomic bulk create: one bad item, nothing written.
    let (s, b) = app
        .call(
            "POST",
            path,
            Some(json!([webhook("ok-1"), with("http_method", json!("NOPE"))])),
        )
        .await;
    assert_names(s, &b, "http_method");
    assert_eq!(b[0], json!({}));
    let (_, list) = app.call("GET", "/api/extras/webhooks/?name=ok-1", None).await;
    assert_eq!(list["count"], 0);
    // Bad ids and filters.
    let (s, _) = app.call("GET", "/api/extras/webhooks/abc/", None).await;
    assert_eq!(s, 404);
    let (s, b) = app.call("GET", "/api/extras/webhooks/?enabled=perhaps", None).await;
    assert_names(s, &b, "enabled");
    let (s, b) = app.call("GET", "/api/extras/webhooks/?limit=-1", None).await;
    assert_names(s, &b, "limit");
    let (s, b) = app.call("GET", "/api/extras/deliveries/?status=lost", None).await;
    assert_names(s, &b, "status");
    let (s, b) = app.call("GET", "/api/extras/deliveries/?webhook_id=x", None).await;
    assert_names(s, &b, "webhook_id");
    app.stop().await;
}

async fn bad_events_get_a_400_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = "/api/extras/events/";
    let (s, b) = app.raw("POST", path, "[{").await;
    assert_eq!(s, 400);
    assert!(b["detail"].as_str().unwrap().starts_with("JSON parse error"));
    let good = site_event("created", 1, "A");
    let with = |k: &str, v: Value| {
        let mut e = good.clone();
        e[k] = v;
        e
    };
    let without = |k: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(k);
        e
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("event", json!("moved")), "event"),
        (with("event", json!(1)), "event"),
        (without("event"), "event"),
        (with("model", json!("spaceship")), "model"),
        (with("object_type", json!("dcim.nothing")), "object_type"),
        (with("object_type", json!("ipam.prefix")), "model"),
        (with("timestamp", json!("last tuesday")), "timestamp"),
        (with("request_id", json!("not-a-uuid")), "request_id"),
        (with("data", json!("a string")), "data"),
        (without("data"), "data"),
        (with("snapshots", json!({"before": {}})), "snapshots"),
        (json!("just a string"), "non_field_errors"),
        (json!([]), "non_field_errors"),
    ];
    for (body, field) in cases {
        let (s, b) = app.call("POST", path, Some(body.clone())).await;
        assert_names(s, &b, field);
    }
    // A list with one bad event writes nothing.
    app.create_webhook(json!({"payload_url": "http://127.0.0.1:9/"})).await;
    let (s, b) = app
        .call("POST", path, Some(json!([good.clone(), with("event", json!("nope"))])))
        .await;
    assert_names(s, &b, "event");
    let (_, list) = app.call("GET", "/api/extras/deliveries/", None).await;
    assert_eq!(list["count"], 0);
    app.stop().await;
}

async fn ingest_secret_requires_a_valid_signature(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.ingest.secret = "forwarding-secret".into()).await;
    let body = site_event("created", 1, "A").to_string();
    let post = |sig: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/api/extras/events/"))
            .header("Authorization", format!("Token {}", app.token))
            .body(body.clone());
        if let Some(s) = sig {
            req = req.header("X-Hook-Signature", s);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 400);
    assert_eq!(post(Some("00".repeat(64))).await.unwrap().status(), 400);
    let good = herald::webhooks::signature::netbox("forwarding-secret", body.as_bytes());
    assert_eq!(post(Some(good)).await.unwrap().status(), 202);
    app.stop().await;
}

async fn preview_shows_exactly_what_would_be_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let definition = json!({
        "name": "preview", "content_types": ["dcim.device"], "type_create": true,
        "payload_url": "https://hooks.example.com/{{ model }}", "secret": "abc",
        "additional_headers": "X-Device: {{ data.name }}",
        "body_template": "{{ data.name }} at {{ data.site.name }} by {{ username }}"
    });
    let (s, p) = app
        .call(
            "POST",
            "/api/extras/webhooks/preview/",
            Some(json!({"webhook": definition})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["method"], "POST");
    assert_eq!(p["url"], "https://hooks.example.com/device");
    assert_eq!(p["body"], "edge-r1 at Site 1 by admin");
    assert_eq!(p["headers"]["X-Device"], "edge-r1");
    assert_eq!(
        p["headers"]["X-Hook-Signature"],
        herald::webhooks::signature::netbox("abc", b"edge-r1 at Site 1 by admin")
    );
    // Nothing was saved.
    let (_, list) = app.call("GET", "/api/extras/webhooks/", None).await;
    assert_eq!(list["count"], 0);

    // With a sample event, on a saved webhook; the default body.
    let saved = app.create_webhook(json!({"payload_url": "http://127.0.0.1:9/x"})).await;
    let event = site_event("created", 5, "Five");
    let (s, p) = app
        .call(
            "POST",
            &format!("/api/extras/webhooks/{}/preview/", saved["id"]),
            Some(json!({"event": event})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let body: Value = serde_json::from_str(p["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["name"], "Five");
    assert_eq!(body["username"], "jstretch");
    assert!(p["body"]
        .as_str()
        .unwrap()
        .starts_with("{\"event\": \"created\", \"timestamp\": "));

    // Errors: a bad definition, a bad sample, a template failing at render time.
    let (s, b) = app
        .call(
            "POST",
            "/api/extras/webhooks/preview/",
            Some(json!({"webhook": {"name": "x"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(b["webhook"]["payload_url"].is_array(), "{b}");
    let (s, b) = app
        .call(
            "POST",
            &format!("/api/extras/webhooks/{}/preview/", saved["id"]),
            Some(json!({"event": {"event": "x"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(b["event"]["event"].is_array(), "{b}");
    let mut failing = definition.clone();
    failing["body_template"] = json!("{{ data.name.missing_method() }}");
    let (s, b) = app
        .call(
            "POST",
            "/api/extras/webhooks/preview/",
            Some(json!({"webhook": failing})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        b["body_template"][0].as_str().unwrap().contains("unknown method"),
        "{b}"
    );
    app.stop().await;
}

async fn status_and_deliveries_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = crate::common::TestReceiver::start().await;
    let a = app
        .create_webhook(
            json!({"payload_url": rx.url("/a"), "content_types": ["dcim.site", "dcim.device"], "type_update": true}),
        )
        .await;
    app.send_events(json!([site_event("created", 1, "A"), site_event("updated", 1, "A")]))
        .await;
    let mut device = site_event("created", 2, "D");
    device["model"] = json!("device");
    app.send_events(device).await;
    rx.wait_for(3).await;
    let id = a["id"].as_i64().unwrap();
    for ids in [app.delivery_ids(id).await] {
        assert_eq!(ids.len(), 3);
        for d in ids {
            app.wait_delivery_done(d).await;
        }
    }
    let (_, f) = app.call("GET", "/api/extras/deliveries/?event=updated", None).await;
    assert_eq!(f["count"], 1);
    let (_, f) = app
        .call("GET", "/api/extras/deliveries/?object_type=dcim.device", None)
        .await;
    assert_eq!(f["count"], 1);
    let (_, f) = app
        .call("GET", "/api/extras/deliveries/?status=succeeded&status=failed", None)
        .await;
    assert_eq!(f["count"], 3);
    assert_eq!(
        f["results"][0]["status"],
        json!({"value": "succeeded", "label": "Succeeded"})
    );
    let (_, st) = app.call("GET", "/api/status/", None).await;
    assert_eq!(st["worker-running"], true);
    assert_eq!(st["rq-workers-running"], 1);
    assert_eq!(st["queue"]["succeeded"], 3);
    assert_eq!(st["queue"]["queued"], 0);
    app.stop().await;
}

async fn events_of_one_request_share_its_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_webhook(json!({"payload_url": "http://127.0.0.1:9/"})).await;
    let strip = |mut e: Value| {
        e.as_object_mut().unwrap().remove("request_id");
        e
    };
    let body = json!([
        strip(site_event("created", 1, "A")),
        strip(site_event("created", 2, "B"))
    ]);
    let resp = app
        .client
        .post(app.url("/api/extras/events/"))
        .header("Authorization", format!("Token {}", app.token))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let request_id = resp.headers()["X-Request-ID"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&request_id).is_ok());
    let (_, list) = app.call("GET", "/api/extras/deliveries/", None).await;
    for d in list["results"].as_array().unwrap() {
        let (_, detail) = app
            .call("GET", &format!("/api/extras/deliveries/{}/", d["id"]), None)
            .await;
        assert_eq!(detail["request_id"], request_id.as_str());
        assert_eq!(detail["context"]["request_id"], request_id.as_str());
    }
    assert_eq!(list["count"], 2);
    // A request id given in the body is kept.
    let r = app.send_events(site_event("created", 3, "C")).await;
    let id = r["event_ids"][0].as_i64().unwrap();
    let (_, list) = app.call("GET", "/api/extras/deliveries/?limit=1", None).await;
    let (_, detail) = app
        .call(
            "GET",
            &format!("/api/extras/deliveries/{}/", list["results"][0]["id"]),
            None,
        )
        .await;
    assert_eq!(detail["event_id"], id);
    assert_eq!(detail["request_id"], "fdbca812-3142-4783-b364-2e2bd5c16c6a");
    app.stop().await;
}

crate::on_each_backend!(
    auth_follows_netbox,
    webhook_crud_bulk_filters_and_pagination,
    bad_webhooks_get_a_400_naming_the_field,
    bad_events_get_a_400_naming_the_field,
    ingest_secret_requires_a_valid_signature,
    preview_shows_exactly_what_would_be_sent,
    status_and_deliveries_filters,
    events_of_one_request_share_its_request_id
);
