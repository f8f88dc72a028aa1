//! Herald in front of a real NetBox: bodies as NetBox 2.10, 3.7 and 4.6 send them, posted to
//! `/api/extras/events/`, come out of a webhook without a body template byte for byte, signed
//! with the webhook's secret; templates see the keys each version gave.

use crate::common::{Backend, TestApp, TestReceiver};
use serde_json::{json, Value};

/// NetBox 2.10: `model`, a timestamp with a space, no `snapshots`, no `object_type`.
const NETBOX_2_10: &str = r#"{"event": "created", "timestamp": "2021-03-09 17:55:33.968016+00:00", "model": "site", "username": "jstretch", "request_id": "fdbca812-3142-4783-b364-2e2bd5c16c6a", "data": {"id": 19, "url": "/api/dcim/sites/19/", "name": "Site 1", "slug": "site-1", "status": {"value": "active", "label": "Active"}, "region": null, "tenant": null, "facility": "", "asn": null, "time_zone": null, "description": "", "physical_address": "", "shipping_address": "", "latitude": null, "longitude": null, "contact_name": "", "contact_phone": "", "contact_email": "", "comments": "", "tags": [], "custom_fields": {}, "created": "2021-03-09", "last_updated": "2021-03-09T17:55:33.851811Z", "circuit_count": null, "device_count": null, "prefix_count": null, "rack_count": null, "virtualmachine_count": null, "vlan_count": null}}"#;

/// NetBox 3.7: `model` and `snapshots`, an ISO timestamp; a device updated.
const NETBOX_3_7: &str = r#"{"event": "updated", "timestamp": "2024-01-10T12:34:56.789012+00:00", "model": "device", "username": "ops", "request_id": "2f1c9a0e-5b1d-4c59-9a55-0d5a0f0e7f31", "data": {"id": 7, "url": "/api/dcim/devices/7/", "display": "edge-r1", "name": "edge-r1", "device_type": {"id": 1, "url": "/api/dcim/device-types/1/", "display": "MX204", "manufacturer": {"id": 1, "url": "/api/dcim/manufacturers/1/", "display": "Juniper", "name": "Juniper", "slug": "juniper"}, "model": "MX204", "slug": "mx204"}, "role": {"id": 2, "url": "/api/dcim/device-roles/2/", "display": "Edge", "name": "Edge", "slug": "edge"}, "site": {"id": 3, "url": "/api/dcim/sites/3/", "display": "Ams", "name": "Ams", "slug": "ams"}, "status": {"value": "active", "label": "Active"}, "primary_ip4": null, "serial": "", "asset_tag": null, "comments": "", "tags": [{"id": 1, "url": "/api/extras/tags/1/", "display": "core", "name": "core", "slug": "core", "color": "9e9e9e"}], "custom_fields": {"rack_unit": 12.5}, "created": "2024-01-02T08:00:00.000000Z", "last_updated": "2024-01-10T12:34:56.701203Z"}, "snapshots": {"prechange": {"created": "2024-01-02T08:00:00Z", "last_updated": "2024-01-09T10:00:00.120Z", "name": "edge-r1", "status": "planned", "site": 3, "custom_fields": {"rack_unit": 12.5}, "tags": ["core"]}, "postchange": {"created": "2024-01-02T08:00:00Z", "last_updated": "2024-01-10T12:34:56.701Z", "name": "edge-r1", "status": "active", "site": 3, "custom_fields": {"rack_unit": 12.5}, "tags": ["core"]}}}"#;

/// NetBox 4.6: `object_type`, no `model`, `request`; a type Herald does not store (a rack), a
/// name with `ensure_ascii` escapes, snapshots without `last_updated`.
pub(crate) const NETBOX_4_6: &str = r#"{"event": "created", "timestamp": "2026-11-29T18:14:45.402113+00:00", "object_type": "dcim.rack", "username": "admin", "request_id": "6c1e2d3f-8a9b-4c0d-9e1f-2a3b4c5d6e7f", "data": {"id": 4, "url": "/api/dcim/racks/4/", "display_url": "/dcim/racks/4/", "display": "Z\u00fcrich \u201cR4\u201d", "name": "Z\u00fcrich \u201cR4\u201d", "facility_id": null, "site": {"id": 1, "url": "/api/dcim/sites/1/", "display_url": "/dcim/sites/1/", "display": "ZRH", "name": "ZRH", "slug": "zrh", "description": ""}, "status": {"value": "active", "label": "Active"}, "u_height": 42, "starting_unit": 1, "weight": 12.5, "max_weight": null, "desc_units": false, "tags": [], "custom_fields": {}, "created": "2026-11-29T18:14:45.316740Z", "last_updated": "2026-11-29T18:14:45.316763Z"}, "request": {"id": "6c1e2d3f-8a9b-4c0d-9e1f-2a3b4c5d6e7f", "method": "POST", "path": "/api/dcim/racks/", "user": "admin"}, "snapshots": {"prechange": null, "postchange": {"created": "2026-11-29T18:14:45.316Z", "owner": null, "description": "", "comments": "", "name": "Z\u00fcrich \u201cR4\u201d", "site": 1, "status": "active", "u_height": 42, "custom_fields": {}, "tags": []}}}"#;

/// What the template below renders for each body, as NetBox's Jinja2 renders it for the same
/// context: 2.10 has no `object_type`, `snapshots` or `request`; 4.6 has no `model`.
const TEMPLATE: &str = "{{ event }}|{{ timestamp }}|{{ model }}|{{ object_type }}|{{ data.name }}|\
{{ snapshots.postchange.status if snapshots else 'no snapshots' }}|{{ request.path if request else 'no request' }}";
const RENDERED: [&str; 3] = [
    "created|2021-03-09 17:55:33.968016+00:00|site||Site 1|no snapshots|no request",
    "updated|2024-01-10T12:34:56.789012+00:00|device||edge-r1|active|no request",
    "created|2026-11-29T18:14:45.402113+00:00||dcim.rack|Zürich “R4”|active|/api/dcim/racks/",
];

async fn netbox_bodies_are_re_sent_as_received(backend: Backend) {
    // The same bodies go twice (alone, then in a list): duplicates are let through here.
    let app = TestApp::spawn_with(backend, |c| c.ingest.dedup_window_secs = 0).await;
    let rx = TestReceiver::start().await;
    let types = json!(["dcim.site", "dcim.device", "dcim.rack"]);
    let events = json!({"type_create": true, "type_update": true, "type_delete": true});
    let mut raw = json!({"content_types": types, "payload_url": rx.url("/raw"), "secret": "relay-secret"});
    let mut templated = json!({"content_types": types, "payload_url": rx.url("/templated"),
                               "http_content_type": "text/plain", "body_template": TEMPLATE});
    for w in [&mut raw, &mut templated] {
        w.as_object_mut().unwrap().extend(events.as_object().unwrap().clone());
        app.create_webhook(w.clone()).await;
    }
    let bodies = [NETBOX_2_10, NETBOX_3_7, NETBOX_4_6];
    for body in bodies {
        let (status, answer) = app.raw("POST", "/api/extras/events/", body).await;
        assert_eq!((status, &answer["deliveries_queued"]), (202, &json!(2)), "{answer}");
    }
    // One request with a list: each item comes out as it was written inside the list.
    let list = format!("[\n  {NETBOX_3_7} ,\n\t{NETBOX_4_6}\n]\n");
    let (status, answer) = app.raw("POST", "/api/extras/events/", &list).await;
    assert_eq!((status, &answer["deliveries_queued"]), (202, &json!(4)), "{answer}");

    let got = rx.wait_for(10).await;
    let at = |path: &str| -> Vec<String> {
        let mut bodies: Vec<String> = got.iter().filter(|r| r.path == path).map(|r| r.text()).collect();
        bodies.sort();
        bodies
    };
    let mut want: Vec<String> = bodies
        .iter()
        .chain(&[NETBOX_3_7, NETBOX_4_6])
        .map(|b| b.to_string())
        .collect();
    want.sort();
    assert_eq!(at("/raw"), want, "re-sent bodies differ from the posted ones");
    for r in got.iter().filter(|r| r.path == "/raw") {
        let sig = herald::webhooks::signature::netbox("relay-secret", &r.body);
        assert_eq!(r.header("x-hook-signature"), Some(sig.as_str()));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let mut rendered: Vec<String> = RENDERED.iter().chain(&RENDERED[1..]).map(|s| s.to_string()).collect();
    rendered.sort();
    assert_eq!(at("/templated"), rendered);

    // The delivery log shows the context the templates saw: the posted keys, in their order.
    let (_, list) = app
        .call("GET", "/api/extras/deliveries/?object_type=dcim.rack&limit=1", None)
        .await;
    let id = list["results"][0]["id"].as_i64().expect("a rack delivery");
    let (_, d) = app.call("GET", &format!("/api/extras/deliveries/{id}/"), None).await;
    let posted: Value = serde_json::from_str(NETBOX_4_6).unwrap();
    assert_eq!(d["context"], posted);
    let keys: Vec<&String> = d["context"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "event",
            "timestamp",
            "object_type",
            "username",
            "request_id",
            "data",
            "request",
            "snapshots"
        ]
    );
    app.stop().await;
}

async fn every_netbox_type_is_accepted_and_unknown_ones_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    // A webhook may subscribe to types Herald does not store, and fires on their events.
    let hook = app
        .create_webhook(json!({"content_types": ["vpn.tunnel", "virtualization.virtualmachine"],
                               "payload_url": rx.url("/vpn")}))
        .await;
    assert_eq!(
        hook["content_types"],
        json!(["vpn.tunnel", "virtualization.virtualmachine"])
    );
    let event = |object_type: Option<&str>, model: Option<&str>| {
        let mut e = json!({"event": "created", "username": "u", "data": {"id": 1}});
        if let Some(t) = object_type {
            e["object_type"] = json!(t);
        }
        if let Some(m) = model {
            e["model"] = json!(m);
        }
        e
    };
    let (s, b) = app
        .call("POST", "/api/extras/events/", Some(event(Some("vpn.tunnel"), None)))
        .await;
    assert_eq!((s, &b["deliveries_queued"]), (202, &json!(1)), "{b}");
    // 2.10-style: the model alone names the type when only one app has it.
    let (s, b) = app
        .call("POST", "/api/extras/events/", Some(event(None, Some("virtualmachine"))))
        .await;
    assert_eq!((s, &b["deliveries_queued"]), (202, &json!(1)), "{b}");
    let got = rx.wait_for(2).await;
    let types: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["object_type"].clone())
        .collect();
    assert!(types.contains(&json!("vpn.tunnel")) && types.contains(&json!("virtualization.virtualmachine")));
    for (e, field) in [
        (event(Some("dcim.spaceship"), None), "object_type"),
        (event(None, Some("spaceship")), "model"),
        (event(Some("vpn.tunnel"), Some("site")), "model"),
    ] {
        let (s, b) = app.call("POST", "/api/extras/events/", Some(e)).await;
        assert_eq!(s, 400, "{b}");
        assert!(b.get(field).is_some(), "{field} not named in {b}");
    }
    let (s, b) = app
        .call(
            "POST",
            "/api/extras/webhooks/",
            Some(
                json!({"name": "x", "content_types": ["dcim.spaceship"], "type_create": true,
                        "payload_url": rx.url("/")}),
            ),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["content_types"][0].as_str().unwrap().contains("dcim.spaceship"),
        "{b}"
    );
    app.stop().await;
}

crate::on_each_backend!(
    netbox_bodies_are_re_sent_as_received,
    every_netbox_type_is_accepted_and_unknown_ones_are_refused
);
