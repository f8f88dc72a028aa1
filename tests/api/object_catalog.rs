//! The catalog as served: racing creates, types added to the catalog, the API root, available
//! IPs, NetBox's naming of unnamed devices, and fields Herald does not store.

use crate::common::{Backend, TestApp, TestReceiver};
use crate::objects::{count, created, scaffold};
use serde_json::{json, Value};

async fn racing_creates_of_one_slug_give_one_object_and_clear_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (client, url, token) = (app.client.clone(), app.url("/api/dcim/sites/"), app.token.clone());
        tasks.spawn(async move {
            let resp = client
                .post(url)
                .header("Authorization", format!("Token {token}"))
                .json(&json!({"name": format!("Racer {i}"), "slug": "racer"}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        });
    }
    let mut created = 0;
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        match status {
            201 => created += 1,
            400 => assert_eq!(body["slug"][0], "site with this slug already exists."),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(count(&app, "/api/dcim/sites/").await, 1);
    assert_eq!(count(&app, "/api/extras/object-changes/").await, 1);
    app.stop().await;
}

async fn a_type_added_to_the_catalog_is_served_logged_and_fires_webhooks(backend: Backend) {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("catalog.toml");
    let rack = r#"
[[types]]
app_label = "dcim"
model = "rack"
verbose_name = "rack"
api_path = "dcim/racks"
display = "{name}"
brief = ["name"]
search = ["name"]
ordering = ["site", "name"]
unique = [["site", "name"]]
tags = true
fields = [
  { name = "name", type = "string", required = true, max_length = 100 },
  { name = "site", type = "fk", to = "dcim.site", required = true, on_delete = "protect" },
  { name = "u_height", type = "integer", default = 42, min = 1, max = 100 },
]
sample = { id = 1, url = "/api/dcim/racks/1/", display = "R1", name = "R1", site = {}, u_height = 42, tags = [], custom_fields = {}, created = "2020-02-25T15:10:26.010582+00:00", last_updated = "2020-02-25T15:10:26.010582+00:00" }
"#;
    std::fs::write(&path, format!("{}\n{rack}", herald::catalog::BUILTIN)).unwrap();
    let catalog = path.display().to_string();
    let app = TestApp::spawn_with(backend, move |c| c.catalog = catalog).await;
    let rx = TestReceiver::start().await;
    app.create_webhook(json!({"payload_url": rx.url("/racks"), "content_types": ["dcim.rack"], "type_create": true}))
        .await;
    let site = created(&app, "/api/dcim/sites/", json!({"name": "S", "slug": "s"})).await;
    let rack = created(&app, "/api/dcim/racks/", json!({"name": "R1", "site": {"slug": "s"}})).await;
    assert_eq!(rack["u_height"], 42);
    assert_eq!(rack["site"]["display"], "S");
    let (status, err) = app
        .call(
            "POST",
            "/api/dcim/racks/",
            Some(json!({"name": "R1", "site": site["id"], "u_height": 101})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["u_height"][0], "Ensure this value is less than or equal to 100.");
    assert_eq!(count(&app, "/api/dcim/racks/?site=s").await, 1);
    let got = rx.wait_for(1).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        (body["model"].as_str(), body["object_type"].as_str()),
        (Some("rack"), Some("dcim.rack"))
    );
    assert_eq!(body["snapshots"]["postchange"]["site"], site["id"]);
    let (status, err) = app
        .call("DELETE", &format!("/api/dcim/sites/{}/", site["id"]), None)
        .await;
    assert_eq!(status, 409);
    assert!(err["detail"].as_str().unwrap().contains("rack R1"), "{err}");
    app.stop().await;
}

async fn a_broken_catalog_file_stops_startup_with_a_clear_error(backend: Backend) {
    let dir = crate::common::DataDir::new(backend).await;
    let path = dir.path().join("catalog.toml");
    std::fs::write(
        &path,
        herald::catalog::BUILTIN.replace("to = \"dcim.region\"", "to = \"dcim.nowhere\""),
    )
    .unwrap();
    let mut config = dir.config();
    config.catalog = path.display().to_string();
    let err = herald::server::App::open(config).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("is invalid") && text.contains("unknown type dcim.nowhere"),
        "{text}"
    );
}

async fn the_api_root_lists_every_app_and_every_listed_endpoint_answers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, root) = app.call("GET", "/api/", None).await;
    assert_eq!(status, 200);
    let apps: Vec<&str> = root.as_object().unwrap().keys().map(String::as_str).collect();
    for want in ["core", "dcim", "extras", "ipam", "status", "tenancy", "users"] {
        assert!(apps.contains(&want), "{want} missing from {apps:?}");
    }
    let mut endpoints = 0;
    for (name, url) in root.as_object().unwrap() {
        if name == "status" {
            continue;
        }
        let path = url.as_str().unwrap().replacen(&app.base, "", 1);
        let (status, listed) = app.call("GET", &path, None).await;
        assert_eq!(status, 200, "{path}");
        for (_, url) in listed.as_object().unwrap() {
            let path = url.as_str().unwrap().replacen(&app.base, "", 1);
            assert_eq!(app.call("GET", &path, None).await.0, 200, "{path}");
            endpoints += 1;
        }
    }
    assert_eq!(root["dcim"], format!("{}/api/dcim/", app.base));
    assert!(endpoints >= 19, "{endpoints} endpoints");
    app.stop().await;
}

async fn available_ips_are_listed_and_allocated_once_each(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pfx = created(&app, "/api/ipam/prefixes/", json!({"prefix": "10.9.0.0/29"})).await;
    let path = format!("/api/ipam/prefixes/{}/available-ips/", pfx["id"]);
    created(&app, "/api/ipam/ip-addresses/", json!({"address": "10.9.0.1/24"})).await;
    created(&app, "/api/ipam/ip-addresses/", json!({"address": "10.9.1.2/24"})).await; // outside
    let (status, free) = app.call("GET", &format!("{path}?limit=2"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        free,
        json!([{"family": 4, "address": "10.9.0.2/29", "vrf": null}, {"family": 4, "address": "10.9.0.3/29", "vrf": null}])
    );
    // Racing allocations each get their own address: 10.9.0.2 to .6 are free (five).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url, token) = (app.client.clone(), app.url(&path), app.token.clone());
        tasks.spawn(async move {
            let resp = client
                .post(url)
                .header("Authorization", format!("Token {token}"))
                .json(&json!({"status": "reserved"}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        });
    }
    let mut got = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        match status {
            201 => {
                assert_eq!(body["status"]["value"], "reserved");
                got.push(body["address"].as_str().unwrap().to_string());
            }
            409 => assert_eq!(body["detail"], "No IP address is available within prefix 10.9.0.0/29."),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    got.sort();
    assert_eq!(
        got,
        [
            "10.9.0.2/29",
            "10.9.0.3/29",
            "10.9.0.4/29",
            "10.9.0.5/29",
            "10.9.0.6/29"
        ]
    );
    let (_, free) = app.call("GET", &path, None).await;
    assert_eq!(free, json!([]));
    // A list asks for several at once, all or nothing.
    let pfx2 = created(&app, "/api/ipam/prefixes/", json!({"prefix": "10.8.0.0/30"})).await;
    let path2 = format!("/api/ipam/prefixes/{}/available-ips/", pfx2["id"]);
    let (status, _) = app.call("POST", &path2, Some(json!([{}, {}, {}]))).await;
    assert_eq!(status, 409);
    assert_eq!(count(&app, "/api/ipam/ip-addresses/?address__isw=10.8.").await, 0);
    let (status, two) = app
        .call("POST", &path2, Some(json!([{}, {"dns_name": "b.example.net"}])))
        .await;
    assert_eq!(status, 201, "{two}");
    assert_eq!(two[1]["address"], "10.8.0.2/30");
    assert_eq!(
        app.call("GET", "/api/ipam/prefixes/999/available-ips/", None).await.0,
        404
    );
    assert_eq!(
        app.call("POST", "/api/ipam/prefixes/999/available-ips/", Some(json!({})))
            .await
            .0,
        404
    );
    let (status, err) = app.call("POST", &path2, Some(json!({"dns_name": "bad name"}))).await;
    assert_eq!(status, 409, "{err}");
    app.stop().await;
}

async fn an_unnamed_device_is_named_by_its_type_as_netbox_names_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (site, dt, role, _) = scaffold(&app).await;
    let dev = created(
        &app,
        "/api/dcim/devices/",
        json!({"device_type": dt["id"], "role": role["id"], "site": site["id"]}),
    )
    .await;
    let want = format!("Juniper MX204 ({})", dev["id"]);
    assert_eq!(dev["name"], Value::Null);
    assert_eq!(dev["display"], want);
    let iface = created(
        &app,
        "/api/dcim/interfaces/",
        json!({"device": dev["id"], "name": "e0", "type": "virtual"}),
    )
    .await;
    assert_eq!(iface["device"]["display"], want);
    let (_, changes) = app
        .call(
            "GET",
            &format!(
                "/api/extras/object-changes/?changed_object_type=dcim.device&changed_object_id={}",
                dev["id"]
            ),
            None,
        )
        .await;
    assert_eq!(changes["results"][0]["object_repr"], want);
    let (status, err) = app
        .call("DELETE", &format!("/api/dcim/device-types/{}/", dt["id"]), None)
        .await;
    assert_eq!(status, 409);
    assert!(
        err["detail"].as_str().unwrap().contains(&format!("device {want}")),
        "{err}"
    );
    // Named, it is its name.
    let (_, renamed) = app
        .call(
            "PATCH",
            &format!("/api/dcim/devices/{}/", dev["id"]),
            Some(json!({"name": "edge-r9"})),
        )
        .await;
    assert_eq!(renamed["display"], "edge-r9");
    app.stop().await;
}

/// A body key that is not a field of the type is refused, naming it, and nothing is written;
/// read-only keys NetBox shows (and sends back when a record is saved whole) are ignored.
async fn fields_herald_does_not_store_are_refused_not_dropped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, body, refused) in [
        (
            "/api/dcim/sites/",
            json!({"name": "A", "slug": "a", "rack": 1, "asset_tag": "x"}),
            vec!["asset_tag", "rack"],
        ),
        (
            "/api/extras/tags/",
            json!({"name": "T", "slug": "t", "tags": [], "weight": 5}),
            vec!["tags", "weight"],
        ),
        (
            "/api/ipam/ip-addresses/",
            json!({"address": "192.0.2.1/24", "vrf": null, "assigned_object_id": 1}),
            vec!["assigned_object_id", "vrf"],
        ),
        (
            "/api/extras/webhooks/",
            json!({"name": "w", "content_types": ["dcim.site"], "type_create": true, "payload_url": "http://127.0.0.1:9/", "owner": 1}),
            vec!["owner"],
        ),
    ] {
        let (status, errors) = app.call("POST", path, Some(body)).await;
        assert_eq!(status, 400, "{path}: {errors}");
        let mut keys: Vec<&str> = errors.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, refused, "{path}: {errors}");
        assert!(
            errors[refused[0]][0].as_str().unwrap().contains("does not store"),
            "{errors}"
        );
    }
    assert_eq!(count(&app, "/api/dcim/sites/").await, 0, "nothing half-written");

    // Read-only keys are ignored; the fields NetBox scripts set most are stored.
    let site = created(
        &app,
        "/api/dcim/sites/",
        json!({"id": 99, "url": "x", "display": "x", "display_url": "x", "created": "x", "last_updated": "x",
               "name": "A", "slug": "a", "latitude": 52.3676, "longitude": 4.9041}),
    )
    .await;
    assert_ne!(site["id"], 99);
    assert_eq!(
        (site["latitude"].clone(), site["longitude"].clone()),
        (json!(52.3676), json!(4.9041))
    );
    let (status, errors) = app
        .call(
            "PATCH",
            &format!("/api/dcim/sites/{}/", site["id"]),
            Some(json!({"latitude": 91})),
        )
        .await;
    assert_eq!(status, 400, "{errors}");
    let ip = created(
        &app,
        "/api/ipam/ip-addresses/",
        json!({"address": "192.0.2.1/24", "role": "vip", "family": 6}),
    )
    .await;
    assert_eq!(
        (ip["role"]["value"].clone(), ip["family"]["value"].clone()),
        (json!("vip"), json!(4))
    );

    // List filters that do not exist are refused on every list, not only the inventory's.
    for path in [
        "/api/extras/webhooks/?description=x",
        "/api/extras/webhooks/?payload_url__regex=x",
        "/api/extras/deliveries/?webhook=3",
        "/api/extras/object-changes/?time_after=2026-01-01",
        "/api/users/users/?is_superuser=true",
        "/api/users/tokens/?key=abc",
        "/api/ipam/prefixes/?role=x",
    ] {
        let (status, body) = app.call("GET", path, None).await;
        let param = path.split('?').nth(1).unwrap().split('=').next().unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body[param][0].as_str().unwrap().contains("does not filter"),
            "{path}: {body}"
        );
    }
    let (status, _) = app
        .call(
            "GET",
            "/api/extras/webhooks/?limit=5&offset=0&brief=1&format=json",
            None,
        )
        .await;
    assert_eq!(status, 200, "paging and format stay allowed");
    app.stop().await;
}

crate::on_each_backend!(
    racing_creates_of_one_slug_give_one_object_and_clear_errors,
    a_type_added_to_the_catalog_is_served_logged_and_fires_webhooks,
    a_broken_catalog_file_stops_startup_with_a_clear_error,
    the_api_root_lists_every_app_and_every_listed_endpoint_answers,
    available_ips_are_listed_and_allocated_once_each,
    an_unnamed_device_is_named_by_its_type_as_netbox_names_it,
    fields_herald_does_not_store_are_refused_not_dropped
);
