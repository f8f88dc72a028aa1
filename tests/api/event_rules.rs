//! NetBox 4's way of making webhooks: a webhook without triggers of its own, and event rules
//! that say which object types and events fire it; beside it, the seed's way, both at once.

use crate::common::{Backend, TestApp, TestReceiver};
use serde_json::{json, Value};

async fn a_netbox_4_script_gets_its_deliveries_through_event_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynetbox/event_rules.py");
    let out = tokio::process::Command::new(&python)
        .args([script, &app.base, &app.token, &rx.url("")])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "the pynetbox script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    assert_eq!(
        seen["hook"],
        json!({"content_types": [], "type_create": false, "description": "NetBox 4 style"})
    );
    assert_eq!(
        seen["rule"],
        json!({"event_types": ["object_created", "object_updated"], "action_type": "webhook",
               "action_object_type": "extras.webhook", "action_object": "netbox4", "enabled": true})
    );
    assert_eq!(seen["by_webhook"], json!(["active sites", "site deletes"]));
    assert_eq!(seen["by_event"], json!(["site deletes"]));
    assert_eq!(seen["enabled"], json!(["site deletes"]));
    assert_eq!(seen["by_name"], json!(["active sites"]));
    assert_eq!(seen["job_rule"], json!([400, ["event_types"]]));
    assert_eq!(seen["unknown_filter"], json!(400));

    // Ams created and updated while the rule was on; Rtm deleted. Rtm's creation failed the
    // condition and Ber came after the rule was turned off: every delivery was queued with its
    // change, so the three are all there are.
    let got = rx.wait_for(3).await;
    let mut events: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/netbox4");
            let sig = herald::webhooks::signature::netbox("s4", &r.body);
            assert_eq!(r.header("x-hook-signature"), Some(sig.as_str()));
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (
                body["event"].as_str().unwrap().into(),
                body["data"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    events.sort();
    let want = [("created", "Ams"), ("deleted", "Rtm"), ("updated", "Ams")];
    assert_eq!(events, want.map(|(e, n)| (e.to_string(), n.to_string())));
    let hook = seen["ids"]["hook"].as_i64().unwrap();
    assert_eq!(app.delivery_ids(hook).await.len(), 3);
    // Each delivery names the rule that queued it.
    for (rule, n) in [("active", 2), ("deletes", 1)] {
        let id = seen["ids"][rule].as_i64().unwrap();
        let (s, list) = app
            .call("GET", &format!("/api/extras/deliveries/?event_rule_id={id}"), None)
            .await;
        assert_eq!((s, list["count"].as_i64()), (200, Some(n)), "{list}");
        assert_eq!(list["results"][0]["event_rule"]["id"], json!(id));
    }
    app.stop().await;
}

async fn own_triggers_and_rules_fire_side_by_side(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let hook = app
        .create_webhook(json!({"content_types": ["dcim.site"], "type_create": true, "payload_url": rx.url("/both")}))
        .await;
    let hook_id = hook["id"].as_i64().unwrap();
    let rule = json!({"name": "also", "object_types": ["dcim.site", "dcim.rack"], "event_types": ["object_created"],
                      "action_type": "webhook", "action_object_type": "extras.webhook", "action_object_id": hook_id});
    let (s, created) = app.call("POST", "/api/extras/event-rules/", Some(rule.clone())).await;
    assert_eq!(s, 201, "{created}");
    let rule_id = created["id"].as_i64().unwrap();
    assert_eq!(created["action_object"]["id"], json!(hook_id));
    let (s, _) = app
        .call("POST", "/api/dcim/sites/", Some(json!({"name": "A", "slug": "a"})))
        .await;
    assert_eq!(s, 201);
    // One delivery by the webhook's own triggers, one by the rule.
    rx.wait_for(2).await;
    let (_, list) = app
        .call("GET", &format!("/api/extras/deliveries/?webhook_id={hook_id}"), None)
        .await;
    let mut fired: Vec<Value> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_rule"]["id"].clone())
        .collect();
    fired.sort_by_key(|v| v.as_i64());
    assert_eq!(fired, [Value::Null, json!(rule_id)]);

    // Names are unique; the webhook must exist; a rule's webhook takes its rules with it.
    let (s, b) = app.call("POST", "/api/extras/event-rules/", Some(rule.clone())).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["name"].is_array(), "{b}");
    let mut orphan = rule.clone();
    orphan["name"] = json!("orphan");
    orphan["action_object_id"] = json!(hook_id + 100);
    let (s, b) = app.call("POST", "/api/extras/event-rules/", Some(orphan)).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["action_object_id"].is_array(), "{b}");
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/api/extras/event-rules/{rule_id}/"),
            Some(json!({"action_type": "script"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["action_type"].is_array(), "{b}");
    // Tags, given as NetBox clients give them, shown in NetBox 4's brief form; a tag that does
    // not exist is refused, naming the field; custom fields are taken empty only.
    let (s, core) = app
        .call(
            "POST",
            "/api/extras/tags/",
            Some(json!({"name": "core", "slug": "core"})),
        )
        .await;
    assert_eq!(s, 201, "{core}");
    let (s, b) = app
        .call(
            "POST",
            "/api/extras/webhooks/",
            Some(
                json!({"name": "tagged", "payload_url": rx.url("/"), "tags": [{"name": "core"}], "custom_fields": {}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["tags"][0]["slug"], "core", "{b}");
    assert_eq!(
        b["tags"][0]["url"],
        format!("{}/api/extras/tags/{}/", app.base, core["id"])
    );
    let (s, b) = app
        .call(
            "PATCH",
            &format!("/api/extras/event-rules/{rule_id}/"),
            Some(json!({"tags": [core["id"]]})),
        )
        .await;
    assert_eq!((s, &b["tags"][0]["name"]), (200, &json!("core")), "{b}");
    for bad in [
        json!({"tags": [{"slug": "nope"}]}),
        json!({"custom_fields": {"owner": "me"}}),
    ] {
        let mut body = bad.clone();
        body["name"] = json!("bad");
        body["payload_url"] = json!(rx.url("/"));
        let (s, b) = app.call("POST", "/api/extras/webhooks/", Some(body)).await;
        assert_eq!(s, 400, "{b}");
        let field = bad.as_object().unwrap().keys().next().unwrap().clone();
        assert!(b[&field].is_array(), "{b}");
    }
    // A webhook with types but no events, or events but no types, is neither model: refused.
    for half in [
        json!({"content_types": ["dcim.site"], "payload_url": rx.url("/")}),
        json!({"type_update": true, "payload_url": rx.url("/")}),
    ] {
        let mut body = half.clone();
        body["name"] = json!(format!("half-{}", uuid::Uuid::new_v4()));
        let (s, b) = app.call("POST", "/api/extras/webhooks/", Some(body)).await;
        assert_eq!(s, 400, "{b}");
    }
    let (s, _) = app
        .call("DELETE", &format!("/api/extras/webhooks/{hook_id}/"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call("GET", &format!("/api/extras/event-rules/{rule_id}/"), None)
        .await;
    assert_eq!(s, 404);
    app.stop().await;
}

crate::on_each_backend!(
    a_netbox_4_script_gets_its_deliveries_through_event_rules,
    own_triggers_and_rules_fire_side_by_side
);
