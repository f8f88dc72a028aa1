//! Changes and what they queue: PROTECT / CASCADE / SET_NULL deletes, the signed body NetBox
//! sends, one event per object per request, conditions, and the purge of old changes.

use crate::common::{relative, wait_for, Backend, TestApp, TestReceiver};
use crate::objects::{count, created, scaffold};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha512;
use std::time::Duration;

async fn deletes_protect_cascade_and_unlink_as_netbox_does(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let (site, dt, role, mfr) = scaffold(&app).await;
    app.create_webhook(json!({"payload_url": rx.url("/hook"), "content_types": ["dcim.interface", "dcim.device"], "type_create": false, "type_delete": true})).await;
    let tag = created(&app, "/api/extras/tags/", json!({"name": "core", "slug": "core"})).await;
    let dev = created(
        &app,
        "/api/dcim/devices/",
        json!({"name": "edge-r1", "device_type": dt["id"], "role": role["id"], "site": site["id"], "tags": [{"slug": "core"}]}),
    )
    .await;
    assert_eq!(dev["tags"][0]["name"], "core");
    let ifaces: Vec<Value> = (0..3)
        .map(|i| json!({"device": dev["id"], "name": format!("et-{i}"), "type": "1000base-t"}))
        .collect();
    created(&app, "/api/dcim/interfaces/", Value::Array(ifaces)).await;

    // PROTECT: the manufacturer is held by its device type, the site by its device.
    let (status, err) = app
        .call("DELETE", &format!("/api/dcim/manufacturers/{}/", mfr["id"]), None)
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(err["detail"].as_str().unwrap().contains("device type MX204"), "{err}");
    let (status, err) = app
        .call("DELETE", &format!("/api/dcim/sites/{}/", site["id"]), None)
        .await;
    assert_eq!(status, 409);
    assert!(err["detail"].as_str().unwrap().contains("device edge-r1"), "{err}");

    // Deleting a tag unlinks it.
    let (status, _) = app
        .call("DELETE", &format!("/api/extras/tags/{}/", tag["id"]), None)
        .await;
    assert_eq!(status, 204);
    let (_, dev_now) = app
        .call("GET", &format!("/api/dcim/devices/{}/", dev["id"]), None)
        .await;
    assert_eq!(dev_now["tags"], json!([]));

    // CASCADE: the device's interfaces go with it, each with its own change and event.
    let resp = app
        .client
        .delete(app.url(&format!("/api/dcim/devices/{}/", dev["id"])))
        .header("Authorization", format!("Token {}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(count(&app, "/api/dcim/interfaces/").await, 0);
    let (_, changes) = app
        .call(
            "GET",
            &format!("/api/extras/object-changes/?request_id={request_id}"),
            None,
        )
        .await;
    assert_eq!(changes["count"], 4);
    let actions: Vec<(&str, &str)> = changes["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["changed_object_type"].as_str().unwrap(),
                c["action"]["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions.iter().filter(|(t, _)| *t == "dcim.interface").count(), 3);
    assert!(actions.iter().all(|(_, a)| *a == "delete"));
    assert_eq!(changes["results"][0]["postchange_data"], Value::Null);
    assert_eq!(changes["results"][0]["changed_object"], Value::Null);
    let got = rx.wait_for(4).await;
    let bodies: Vec<Value> = got.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert!(bodies
        .iter()
        .all(|b| b["event"] == "deleted" && b["request_id"] == request_id));
    let iface = bodies.iter().find(|b| b["model"] == "interface").unwrap();
    assert_eq!(iface["data"]["device"]["name"], "edge-r1");
    assert_eq!(iface["snapshots"]["postchange"], Value::Null);
    assert_eq!(iface["snapshots"]["prechange"]["device"], dev["id"]);

    // SET_NULL: a site outlives its region, and is updated by its deletion as NetBox 4 does:
    // a change record in the same request, and an `updated` event for webhooks of sites.
    let sites_rx = TestReceiver::start().await;
    app.create_webhook(json!({"name": "sites", "payload_url": sites_rx.url("/hook"), "content_types": ["dcim.site"], "type_create": false, "type_update": true})).await;
    let resp = app
        .client
        .delete(app.url("/api/dcim/regions/1/"))
        .header("Authorization", format!("Token {}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let (_, s) = app.call("GET", &format!("/api/dcim/sites/{}/", site["id"]), None).await;
    assert_eq!(s["region"], Value::Null);
    let (_, changes) = app
        .call(
            "GET",
            &format!("/api/extras/object-changes/?request_id={request_id}"),
            None,
        )
        .await;
    let kinds: Vec<(String, String)> = changes["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["changed_object_type"].as_str().unwrap().into(),
                c["action"]["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(kinds.contains(&("dcim.site".into(), "update".into())), "{kinds:?}");
    assert!(kinds.contains(&("dcim.region".into(), "delete".into())), "{kinds:?}");
    let site_change = changes["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["changed_object_type"] == "dcim.site")
        .unwrap();
    assert_eq!(site_change["prechange_data"]["region"], 1);
    assert_eq!(site_change["postchange_data"]["region"], Value::Null);
    let got = sites_rx.wait_for(1).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        (body["event"].clone(), body["model"].clone()),
        (json!("updated"), json!("site"))
    );
    assert_eq!(body["request_id"], request_id);
    assert_eq!(body["data"]["region"], Value::Null);
    assert_eq!(body["snapshots"]["prechange"]["region"], 1);
    // CASCADE through a tree: a region's children go with it; a bulk delete may name both.
    let top = created(&app, "/api/dcim/regions/", json!({"name": "Top", "slug": "top"})).await;
    let child = created(
        &app,
        "/api/dcim/regions/",
        json!({"name": "Child", "slug": "child", "parent": top["id"]}),
    )
    .await;
    let (status, err) = app
        .call(
            "PATCH",
            &format!("/api/dcim/regions/{}/", top["id"]),
            Some(json!({"parent": child["id"]})),
        )
        .await;
    assert_eq!(
        (status, err["parent"][0].as_str()),
        (400, Some("Cannot assign self or child region as parent."))
    );
    let (status, _) = app
        .call(
            "DELETE",
            "/api/dcim/regions/",
            Some(json!([{"id": top["id"]}, {"id": child["id"]}])),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(count(&app, "/api/dcim/regions/").await, 0);
    app.stop().await;
}

async fn a_change_sends_what_netbox_sends_signed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({"payload_url": rx.url("/hook"), "secret": "s3cr3t", "content_types": ["dcim.site"], "type_create": true, "type_update": true})).await;
    created(&app, "/api/extras/tags/", json!({"name": "gold", "slug": "gold"})).await;
    created(&app, "/api/extras/tags/", json!({"name": "alpha", "slug": "alpha"})).await;
    let resp = app
        .client
        .post(app.url("/api/dcim/sites/"))
        .header("Authorization", format!("Token {}", app.token))
        .json(&json!({"name": "Zürich", "slug": "zrh", "tags": [1, {"name": "alpha"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let site: Value = resp.json().await.unwrap();
    let got = rx.wait_for(1).await;
    let body = got[0].text();
    let mut mac = Hmac::<Sha512>::new_from_slice(b"s3cr3t").unwrap();
    mac.update(body.as_bytes());
    assert_eq!(
        got[0].header("x-hook-signature").unwrap(),
        hex::encode(mac.finalize().into_bytes())
    );
    assert!(body.contains("Z\\u00fcrich"), "{body}");
    let sent: Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = sent.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "event",
            "timestamp",
            "model",
            "object_type",
            "username",
            "request_id",
            "data",
            "request",
            "snapshots"
        ]
    );
    // NetBox 4.6's request object: which API call made the change.
    assert_eq!(
        sent["request"],
        json!({"id": request_id, "method": "POST", "path": "/api/dcim/sites/", "user": "admin"})
    );
    assert_eq!(sent["event"], "created");
    assert_eq!(sent["model"], "site");
    assert_eq!(sent["username"], "admin");
    assert_eq!(sent["request_id"], request_id);
    assert_eq!(sent["data"], relative(site.clone(), &app.base));
    assert_eq!(sent["data"]["url"], format!("/api/dcim/sites/{}/", site["id"]));
    assert_eq!(sent["snapshots"]["prechange"], Value::Null);
    let post = &sent["snapshots"]["postchange"];
    assert_eq!(post["name"], "Zürich");
    assert_eq!(post["status"], "active");
    assert_eq!(post["region"], Value::Null);
    assert_eq!(post["tags"], json!(["alpha", "gold"]));
    assert_eq!(post["custom_fields"], json!({}));
    assert!(post["created"].as_str().unwrap().ends_with('Z'));
    assert!(
        post.get("last_updated").is_none(),
        "NetBox 4 leaves last_updated out of snapshots"
    );

    // An update: prechange is the state before.
    let (status, updated) = app
        .call(
            "PATCH",
            &format!("/api/dcim/sites/{}/", site["id"]),
            Some(json!({"status": "planned"})),
        )
        .await;
    assert_eq!(status, 200);
    let got = rx.wait_for(2).await;
    let sent: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(sent["event"], "updated");
    assert_eq!(sent["snapshots"]["prechange"]["status"], "active");
    assert_eq!(sent["snapshots"]["postchange"]["status"], "planned");
    assert_eq!(sent["data"], relative(updated, &app.base));

    // The change log says the same.
    let (_, changes) = app
        .call(
            "GET",
            &format!(
                "/api/extras/object-changes/?changed_object_type=dcim.site&changed_object_id={}",
                site["id"]
            ),
            None,
        )
        .await;
    assert_eq!(changes["count"], 2);
    let c = &changes["results"][0];
    assert_eq!(c["action"], json!({"value": "update", "label": "Updated"}));
    assert_eq!(c["user_name"], "admin");
    assert_eq!(c["user"]["username"], "admin");
    assert_eq!(c["changed_object"]["display"], "Zürich");
    assert_eq!(c["prechange_data"], sent["snapshots"]["prechange"]);
    assert_eq!(c["postchange_data"], sent["snapshots"]["postchange"]);
    let (status, one) = app
        .call("GET", &format!("/api/extras/object-changes/{}/", c["id"]), None)
        .await;
    assert_eq!((status, &one["id"]), (200, &c["id"]));
    app.stop().await;
}

async fn one_event_per_object_per_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({"payload_url": rx.url("/hook"), "content_types": ["ipam.vlan"], "type_create": true, "type_update": true, "type_delete": true})).await;
    let (_, vlans) = app
        .call(
            "POST",
            "/api/ipam/vlans/",
            Some(json!([{"vid": 10, "name": "a"}, {"vid": 20, "name": "b"}])),
        )
        .await;
    let (a, b) = (vlans[0]["id"].clone(), vlans[1]["id"].clone());
    rx.wait_for(2).await;
    // The same VLAN twice in one bulk update: one "updated" event, first prechange, last
    // postchange; two change records.
    let (status, out) = app
        .call(
            "PATCH",
            "/api/ipam/vlans/",
            Some(json!([{"id": a, "name": "a1"}, {"id": b, "name": "b1"}, {"id": a, "name": "a2", "vid": 11}])),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out[0]["name"], "a2");
    let got = rx.wait_for(4).await;
    let bodies: Vec<Value> = got[2..]
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let ev_a = bodies.iter().find(|e| e["data"]["id"] == a).unwrap();
    assert_eq!(ev_a["event"], "updated");
    assert_eq!(ev_a["snapshots"]["prechange"]["name"], "a");
    assert_eq!(ev_a["snapshots"]["postchange"]["name"], "a2");
    assert_eq!(ev_a["data"]["vid"], 11);
    assert_eq!(bodies[0]["request_id"], bodies[1]["request_id"]);
    let rid = bodies[0]["request_id"].as_str().unwrap();
    assert_eq!(
        count(&app, &format!("/api/extras/object-changes/?request_id={rid}")).await,
        3
    );
    // Update then delete in one request: one "deleted".
    let (status, _) = app.call("DELETE", "/api/ipam/vlans/", Some(json!([{"id": b}]))).await;
    assert_eq!(status, 204);
    let got = rx.wait_for(5).await;
    let last: Value = serde_json::from_slice(&got[4].body).unwrap();
    assert_eq!(last["event"], "deleted");
    assert_eq!(last["data"]["name"], "b1");
    // Nothing more arrives: exactly one delivery per object per request.
    let (_, deliveries) = app.call("GET", "/api/extras/deliveries/?limit=0", None).await;
    assert_eq!(deliveries["count"], 5);
    app.stop().await;
}

async fn conditions_decide_what_is_queued(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hook = |name: &str, conditions: Value| {
        json!({"name": name, "payload_url": "http://127.0.0.1:9/", "content_types": ["ipam.vlan"],
               "type_create": true, "type_update": true, "conditions": conditions})
    };
    let defs = [
        ("eq", json!({"attr": "status.value", "value": "active"})),
        (
            "not-eq",
            json!({"attr": "status.value", "value": "active", "negate": true}),
        ),
        ("gt", json!({"attr": "vid", "value": 100, "op": "gt"})),
        ("gte", json!({"attr": "vid", "value": 100, "op": "gte"})),
        ("lt", json!({"attr": "vid", "value": 100, "op": "lt"})),
        ("lte", json!({"attr": "vid", "value": 100, "op": "lte"})),
        ("in", json!({"attr": "name", "value": ["web", "db"], "op": "in"})),
        (
            "contains",
            json!({"attr": "tags.slug", "value": "prod", "op": "contains"}),
        ),
        ("regex", json!({"attr": "name", "value": "^w.b$", "op": "regex"})),
        (
            "and-or",
            json!({"and": [{"attr": "vid", "value": 50, "op": "gte"}, {"or": [{"attr": "name", "value": "db"}, {"attr": "status.value", "value": "reserved"}]}]}),
        ),
        ("changed", json!({"attr": "status", "op": "changed"})),
    ];
    let mut ids = std::collections::HashMap::new();
    for (name, c) in &defs {
        let (status, w) = app
            .call("POST", "/api/extras/webhooks/", Some(hook(name, c.clone())))
            .await;
        assert_eq!(status, 201, "{name}: {w}");
        ids.insert(*name, w["id"].as_i64().unwrap());
    }
    let (status, err) = app
        .call(
            "POST",
            "/api/extras/webhooks/",
            Some(hook("bad", json!({"attr": "vid", "op": "near", "value": 1}))),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["conditions"].is_array(), "{err}");

    created(&app, "/api/extras/tags/", json!({"name": "prod", "slug": "prod"})).await;
    created(
        &app,
        "/api/ipam/vlans/",
        json!({"vid": 100, "name": "web", "tags": [{"slug": "prod"}]}),
    )
    .await;
    created(
        &app,
        "/api/ipam/vlans/",
        json!({"vid": 40, "name": "db", "status": "reserved"}),
    )
    .await;
    let v3 = created(&app, "/api/ipam/vlans/", json!({"vid": 300, "name": "wxb"})).await;
    // Updates: a status change fires `changed`; a description change does not.
    app.call(
        "PATCH",
        &format!("/api/ipam/vlans/{}/", v3["id"]),
        Some(json!({"description": "x"})),
    )
    .await;
    app.call(
        "PATCH",
        &format!("/api/ipam/vlans/{}/", v3["id"]),
        Some(json!({"status": "deprecated"})),
    )
    .await;

    let mut seen = std::collections::HashMap::new();
    for (name, id) in &ids {
        let (_, list) = app
            .call("GET", &format!("/api/extras/deliveries/?webhook_id={id}&limit=0"), None)
            .await;
        seen.insert(*name, list["count"].as_i64().unwrap());
    }
    // web(100, active, prod), db(40, reserved), wxb(300, active) created; wxb updated twice
    // (active, then deprecated).
    let want = [
        ("eq", 3),       // web, wxb created, wxb first update
        ("not-eq", 2),   // db, wxb second update
        ("gt", 3),       // wxb ×3
        ("gte", 4),      // web + wxb ×3
        ("lt", 1),       // db
        ("lte", 2),      // web, db
        ("in", 2),       // web, db
        ("contains", 1), // web
        ("regex", 4),    // web, wxb ×3
        ("and-or", 0),   // db is under 50; web and wxb are neither db nor reserved
        ("changed", 4),  // every create (no prechange), and wxb's status change
    ];
    for (name, n) in want {
        assert_eq!(seen[name], n, "webhook {name}: {seen:?}");
    }
    app.stop().await;
}

async fn changes_no_webhook_matches_queue_nothing_and_keep_no_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(
        json!({"payload_url": rx.url("/hook"), "content_types": ["tenancy.tenant"], "type_create": true}),
    )
    .await;
    created(&app, "/api/dcim/sites/", json!({"name": "S", "slug": "s"})).await;
    created(&app, "/api/tenancy/tenants/", json!({"name": "T", "slug": "t"})).await;
    let got = rx.wait_for(1).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["object_type"], "tenancy.tenant");
    wait_for(Duration::from_secs(10), "one delivery in all", || async {
        let (_, d) = app.call("GET", "/api/extras/deliveries/", None).await;
        (d["count"] == 1).then_some(())
    })
    .await;
    // The site's change is in the change log, and no event was kept for it.
    assert_eq!(
        count(&app, "/api/extras/object-changes/?changed_object_type=dcim.site").await,
        1
    );
    let events = app.dir.strings("select object_type from events").await;
    assert_eq!(events, ["tenancy.tenant"]);
    app.stop().await;
}

async fn old_object_changes_are_purged_and_objects_stay(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.retention.changelog_days = 1e-9;
        c.retention.interval_secs = 0.05;
    })
    .await;
    created(&app, "/api/dcim/sites/", json!({"name": "S", "slug": "s"})).await;
    wait_for(Duration::from_secs(30), "retention to purge the change", || async {
        (count(&app, "/api/extras/object-changes/").await == 0).then_some(())
    })
    .await;
    assert_eq!(count(&app, "/api/dcim/sites/").await, 1);
    app.stop().await;
}

crate::on_each_backend!(
    deletes_protect_cascade_and_unlink_as_netbox_does,
    a_change_sends_what_netbox_sends_signed,
    one_event_per_object_per_request,
    conditions_decide_what_is_queued,
    changes_no_webhook_matches_queue_nothing_and_keep_no_event,
    old_object_changes_are_purged_and_objects_stay
);
