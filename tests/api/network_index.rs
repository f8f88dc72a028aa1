//! The IP filters answered through the network index, on data whose answers are known: IPv4
//! and IPv6, addresses with host bits and any mask, strict and inclusive nesting. The index
//! follows updates and deletes, and a database made before it is indexed by its migration.

use crate::common::{Backend, TestApp};
use serde_json::{json, Value};

const PREFIXES: [&str; 8] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.128/25",
    "192.0.2.0/24",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1:2::/64",
];
const ADDRESSES: [&str; 7] = [
    "10.1.2.1/24",
    "10.1.2.200/16",
    "10.1.3.5/32",
    "192.0.2.5/24",
    "2001:db8:1:2::10/64",
    "2001:db8:1:2::1/128",
    "2001:db8:ffff::1/48",
];

/// Each query with the values it must list, sorted.
fn cases() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("ip-addresses/?address=10.1.2.200", vec!["10.1.2.200/16"]),
        ("ip-addresses/?address=2001:DB8:1:2::10", vec!["2001:db8:1:2::10/64"]),
        (
            "ip-addresses/?address=10.1.2.1&address=192.0.2.5",
            vec!["10.1.2.1/24", "192.0.2.5/24"],
        ),
        ("ip-addresses/?address=not-an-address", vec![]),
        ("ip-addresses/?parent=10.1.2.128/25", vec!["10.1.2.200/16"]),
        (
            "ip-addresses/?parent=10.1.0.0/16",
            vec!["10.1.2.1/24", "10.1.2.200/16", "10.1.3.5/32"],
        ),
        (
            "ip-addresses/?parent=2001:db8:1::/48",
            vec!["2001:db8:1:2::10/64", "2001:db8:1:2::1/128"],
        ),
        (
            "ip-addresses/?parent=0.0.0.0/0",
            vec!["10.1.2.1/24", "10.1.2.200/16", "10.1.3.5/32", "192.0.2.5/24"],
        ),
        ("ip-addresses/?parent=10.1.3.5/32", vec!["10.1.3.5/32"]),
        ("ip-addresses/?mask_length=24", vec!["10.1.2.1/24", "192.0.2.5/24"]),
        ("ip-addresses/?mask_length__lt=24", vec!["10.1.2.200/16"]),
        (
            "ip-addresses/?mask_length__gte=64",
            vec!["2001:db8:1:2::10/64", "2001:db8:1:2::1/128"],
        ),
        (
            "ip-addresses/?mask_length__n=24&mask_length__n=128",
            vec![
                "10.1.2.200/16",
                "10.1.3.5/32",
                "2001:db8:1:2::10/64",
                "2001:db8:ffff::1/48",
            ],
        ),
        ("ip-addresses/?parent=10.0.0.0/8&mask_length=24", vec!["10.1.2.1/24"]),
        ("prefixes/?within=10.1.0.0/16", vec!["10.1.2.0/24", "10.1.2.128/25"]),
        (
            "prefixes/?within_include=10.1.0.0/16",
            vec!["10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25"],
        ),
        ("prefixes/?within=10.1.2.128/25", vec![]),
        ("prefixes/?within_include=10.1.2.128/25", vec!["10.1.2.128/25"]),
        (
            "prefixes/?within=2001:db8::/32",
            vec!["2001:db8:1:2::/64", "2001:db8:1::/48"],
        ),
        (
            "prefixes/?contains=10.1.2.130",
            vec!["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25"],
        ),
        (
            "prefixes/?contains=10.1.2.0/24",
            vec!["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"],
        ),
        (
            "prefixes/?contains=2001:db8:1:2::5",
            vec!["2001:db8:1:2::/64", "2001:db8:1::/48", "2001:db8::/32"],
        ),
        ("prefixes/?contains=11.0.0.1", vec![]),
        (
            "prefixes/?mask_length__gte=48",
            vec!["2001:db8:1:2::/64", "2001:db8:1::/48"],
        ),
    ]
}

async fn listed(app: &TestApp, query: &str, field: &str) -> Vec<String> {
    let (status, page) = app.call("GET", &format!("/api/ipam/{query}&limit=1000"), None).await;
    assert_eq!(status, 200, "{query}: {page}");
    let mut got: Vec<String> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o[field].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(page["count"].as_u64(), Some(got.len() as u64), "{query}: the count");
    got
}

async fn check(app: &TestApp, cases: &[(&str, Vec<&str>)]) {
    for (query, want) in cases {
        let field = if query.starts_with("prefixes") {
            "prefix"
        } else {
            "address"
        };
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(listed(app, query, field).await, want, "{query}");
    }
}

async fn the_network_filters_use_the_index_and_answer_as_before(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let prefixes: Vec<Value> = PREFIXES.iter().map(|p| json!({"prefix": p})).collect();
    let (status, body) = app
        .call("POST", "/api/ipam/prefixes/", Some(Value::Array(prefixes)))
        .await;
    assert_eq!(status, 201, "{body}");
    let addresses: Vec<Value> = ADDRESSES.iter().map(|a| json!({"address": a})).collect();
    let (status, made) = app
        .call("POST", "/api/ipam/ip-addresses/", Some(Value::Array(addresses)))
        .await;
    assert_eq!(status, 201, "{made}");
    check(&app, &cases()).await;

    // The index follows a change of address and a delete.
    let id_of = |a: &str| made.as_array().unwrap().iter().find(|o| o["address"] == a).unwrap()["id"].clone();
    let moved = id_of("10.1.2.200/16");
    let (status, _) = app
        .call(
            "PATCH",
            &format!("/api/ipam/ip-addresses/{moved}/"),
            Some(json!({"address": "172.16.0.1/12"})),
        )
        .await;
    assert_eq!(status, 200);
    let gone = id_of("10.1.3.5/32");
    let (status, _) = app
        .call("DELETE", &format!("/api/ipam/ip-addresses/{gone}/"), None)
        .await;
    assert_eq!(status, 204);
    let after = vec![
        ("ip-addresses/?parent=10.1.0.0/16", vec!["10.1.2.1/24"]),
        ("ip-addresses/?address=172.16.0.1", vec!["172.16.0.1/12"]),
        ("ip-addresses/?address=10.1.2.200", vec![]),
        ("ip-addresses/?mask_length=12", vec!["172.16.0.1/12"]),
    ];
    check(&app, &after).await;

    // A database whose objects were stored before the index: its migration indexes them.
    let (token, reader) = (app.token.clone(), app.read_only_token.clone());
    let dir = app.stop().await;
    let version = if dir.on_postgres() { 10 } else { 15 };
    dir.execute(&format!(
        "drop table object_nets; delete from herald_migrations where version = {version}"
    ))
    .await;
    let app = TestApp::reopen(dir, token, reader).await;
    check(&app, &after).await;
    check(&app, &cases()[14..]).await;
    app.stop().await;
}

crate::on_each_backend!(the_network_filters_use_the_index_and_answer_as_before);
