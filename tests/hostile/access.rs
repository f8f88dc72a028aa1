//! Who may do what, and what each may see.

use super::{assert_refused, Herald, TOKEN};
use crate::common::{site_event, TestReceiver};
use serde_json::{json, Value};
use std::time::Instant;

#[tokio::test]
async fn permissions_decide_every_path() {
    let h = Herald::start(&[]).await;
    let rx = TestReceiver::start().await;
    // A viewer of webhooks and deliveries, and nothing else.
    let (s, u) = h
        .call(
            "POST",
            "/api/users/users/",
            Some(json!({"username": "viewer", "password": "pw-viewer-1"})),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let (s, p) = h
        .call(
            "POST",
            "/api/users/permissions/",
            Some(
                json!({"name": "watch", "object_types": ["extras.webhook", "extras.delivery"],
            "actions": ["view"], "users": [u["id"]]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["users"][0]["username"], "viewer");
    let (s, t) = h
        .call("POST", "/api/users/tokens/", Some(json!({"user": u["id"]})))
        .await;
    assert_eq!(s, 201, "{t}");
    let viewer = t["key"].as_str().unwrap().to_string();
    let (_, w) = h
        .webhook(json!({"payload_url": rx.url("/p"), "secret": "s3cr3t", "additional_headers": "Authorization: Bearer hidden"}))
        .await;
    let wid = w["id"].as_i64().unwrap();
    h.call("POST", "/api/extras/events/", Some(site_event("created", 1, "A")))
        .await;
    let d = h.delivery_of(wid).await;
    let did = d["id"].as_i64().unwrap();

    let (s, _) = h.call_as(&viewer, "GET", "/api/extras/webhooks/", None).await;
    assert_eq!(s, 200);
    for (method, path, body) in [
        (
            "PATCH",
            format!("/api/extras/webhooks/{wid}/"),
            json!({"enabled": false}),
        ),
        ("POST", "/api/extras/webhooks/".into(), json!({"name": "n"})),
        ("DELETE", format!("/api/extras/webhooks/{wid}/"), Value::Null),
        ("POST", format!("/api/extras/webhooks/{wid}/test/"), json!({})),
        ("POST", format!("/api/extras/deliveries/{did}/retry/"), json!({})),
        ("GET", "/api/dcim/sites/".into(), Value::Null),
        ("POST", "/api/dcim/sites/".into(), json!({"name": "x", "slug": "x"})),
        ("POST", "/api/extras/events/".into(), site_event("created", 2, "B")),
        ("GET", "/api/extras/object-changes/".into(), Value::Null),
        ("GET", "/api/users/permissions/".into(), Value::Null),
        (
            "POST",
            "/api/users/permissions/".into(),
            json!({"name": "mine", "object_types": ["dcim.site"], "actions": ["view"]}),
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (s, b) = h.call_as(&viewer, method, &path, body).await;
        assert_refused(s, &b, 403, "permission");
    }
    // The viewer's preview has no signature; an attempt's secrets are masked; the event's
    // object data is not theirs to see.
    let (s, pv) = h
        .call_as(
            &viewer,
            "POST",
            &format!("/api/extras/webhooks/{wid}/preview/"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{pv}");
    assert!(pv["headers"].get("X-Hook-Signature").is_none(), "{pv}");
    let (_, mine) = h
        .call("POST", &format!("/api/extras/webhooks/{wid}/preview/"), Some(json!({})))
        .await;
    assert!(mine["headers"].get("X-Hook-Signature").is_some());
    let (s, seen) = h
        .call_as(&viewer, "GET", &format!("/api/extras/deliveries/{did}/"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(seen["attempts"][0]["request"]["headers"]["Authorization"], "********");
    assert_eq!(
        seen["attempts"][0]["request"]["headers"]["X-Hook-Signature"],
        "********"
    );
    assert_eq!(seen["context"]["data"], Value::Null);
    let (_, full) = h.call("GET", &format!("/api/extras/deliveries/{did}/"), None).await;
    assert_eq!(
        full["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer hidden"
    );
    // Permissions through a group; constraints are refused, not ignored.
    let (s, g) = h
        .call("POST", "/api/users/groups/", Some(json!({"name": "site-admins"})))
        .await;
    assert_eq!(s, 201, "{g}");
    let (s, b) = h
        .call(
            "POST",
            "/api/users/permissions/",
            Some(json!({"name": "c", "object_types": ["dcim.site"], "actions": ["view"],
            "constraints": {"status": "active"}})),
        )
        .await;
    assert_refused(s, &b, 400, "constraints");
    let (s, b) = h
        .call(
            "POST",
            "/api/users/permissions/",
            Some(json!({"name": "c", "object_types": ["dcim.nothing"], "actions": ["fly"]})),
        )
        .await;
    assert_refused(s, &b, 400, "object_types");
    assert!(b.get("actions").is_some(), "{b}");
    h.call(
        "POST",
        "/api/users/permissions/",
        Some(json!({"name": "sites", "object_types": ["dcim.site"],
        "actions": ["view", "add"], "groups": [g["id"]]})),
    )
    .await;
    h.call(
        "PATCH",
        &format!("/api/users/users/{}/", u["id"]),
        Some(json!({"groups": [g["id"]]})),
    )
    .await;
    let (s, _) = h
        .call_as(
            &viewer,
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "V", "slug": "v"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = h.call_as(&viewer, "DELETE", "/api/dcim/sites/1/", None).await;
    assert_eq!(s, 403);
    // Nobody but a superuser makes a superuser.
    h.call(
        "POST",
        "/api/users/permissions/",
        Some(json!({"name": "users", "object_types": ["users.user"],
        "actions": ["view", "add", "change"], "users": [u["id"]]})),
    )
    .await;
    let (s, b) = h
        .call_as(
            &viewer,
            "PATCH",
            &format!("/api/users/users/{}/", u["id"]),
            Some(json!({"is_superuser": true})),
        )
        .await;
    assert_refused(s, &b, 403, "permission");
    h.assert_well().await;
}

#[tokio::test]
async fn password_checks_are_throttled_and_take_as_long_for_unknown_users() {
    let h = Herald::start(&[]).await;
    h.call(
        "POST",
        "/api/users/users/",
        Some(json!({"username": "known", "password": "right-pw"})),
    )
    .await;
    let time = |username: &'static str| {
        let client = h.client.clone();
        let url = format!("{}/api/users/tokens/provision/", h.base);
        async move {
            let started = Instant::now();
            let resp = client
                .post(url)
                .json(&json!({"username": username, "password": "wrong"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403);
            started.elapsed()
        }
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        known.push(time("known").await);
        unknown.push(time(name).await);
    }
    known.sort();
    unknown.sort();
    let ratio = unknown[2].as_secs_f64() / known[2].as_secs_f64();
    assert!(
        (0.3..3.0).contains(&ratio),
        "unknown users answer in {:?}, known in {:?}",
        unknown[2],
        known[2]
    );
    // Past ten attempts a minute for one user: 429 with Retry-After, NetBox's shape.
    let mut last = (0, Value::Null, None);
    for _ in 0..8 {
        let resp = h
            .client
            .post(format!("{}/api/users/tokens/provision/", h.base))
            .json(&json!({"username": "known", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("Retry-After")
            .map(|v| v.to_str().unwrap().to_string());
        last = (resp.status().as_u16(), resp.json().await.unwrap(), retry);
    }
    assert_refused(last.0, &last.1, 429, "throttled");
    assert!(last.2.is_some());
    h.assert_well().await;
}

/// A user who may only view webhooks, and their token.
async fn webhook_viewer(h: &Herald, name: &str) -> String {
    let (s, u) = h
        .call(
            "POST",
            "/api/users/users/",
            Some(json!({"username": name, "password": "viewer-password-1"})),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let (s, p) = h
        .call(
            "POST",
            "/api/users/permissions/",
            Some(
                json!({"name": format!("{name} views"), "object_types": ["extras.webhook"],
                        "actions": ["view"], "users": [u["id"]]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let (s, t) = h
        .call("POST", "/api/users/tokens/", Some(json!({"user": u["id"]})))
        .await;
    assert_eq!(s, 201, "{t}");
    t["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn secret_headers_are_masked_for_those_who_may_not_change_webhooks() {
    let h = Herald::start(&[]).await;
    let viewer = webhook_viewer(&h, "looker").await;
    let headers = "Authorization: Bearer s3cr3t-token\nX-Trace: {{ request_id }}\nX-Api-Key: k-123456\n\
                   {% set t = 'hidden-in-a-block' %}X-Note: {{ t }}\nCookie: session=abc";
    let (_, w) = h.webhook(json!({"additional_headers": headers})).await;
    let path = format!("/api/extras/webhooks/{}/", w["id"]);
    let secrets = ["s3cr3t-token", "k-123456", "hidden-in-a-block", "session=abc"];
    // The record, alone and in the list.
    let (s, one) = h.call_as(&viewer, "GET", &path, None).await;
    assert_eq!(s, 200);
    let (_, list) = h.call_as(&viewer, "GET", "/api/extras/webhooks/", None).await;
    for shown in [
        one["additional_headers"].clone(),
        list["results"][0]["additional_headers"].clone(),
    ] {
        let text = shown.as_str().unwrap();
        assert!(secrets.iter().all(|s| !text.contains(s)), "{text}");
        assert!(
            text.contains("Authorization: ********") && text.contains("X-Trace: {{ request_id }}"),
            "{text}"
        );
    }
    // The preview: the headers it would send, masked.
    let (s, pv) = h
        .call_as(&viewer, "POST", &format!("{path}preview/"), Some(json!({})))
        .await;
    assert_eq!(s, 200, "{pv}");
    let text = pv.to_string();
    assert!(secrets.iter().all(|s| !text.contains(s)), "{text}");
    assert_eq!(pv["headers"]["Authorization"], "********");
    // Whoever may change webhooks sees them whole.
    let (_, full) = h.call("GET", &path, None).await;
    assert_eq!(full["additional_headers"], headers);
    // Sent back as shown (masked), the stored values stay.
    let (s, b) = h
        .call(
            "PATCH",
            &path,
            Some(json!({"additional_headers": one["additional_headers"], "description": "touched"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, after) = h.call("GET", &path, None).await;
    assert_eq!(after["additional_headers"], headers);
    assert_eq!(after["description"], "touched");
    // The pages show the viewer the same masked text.
    let page = page_as(
        &h,
        "looker",
        "viewer-password-1",
        &format!("/extras/webhooks/{}/", w["id"]),
    )
    .await;
    assert!(secrets.iter().all(|s| !page.contains(s)), "{page}");
    assert!(page.contains("********"));
    h.assert_well().await;
}

/// The page at `path` as seen by `username` logged in through the form.
async fn page_as(h: &Herald, username: &str, password: &str, path: &str) -> String {
    let (client, location, session) = super::log_in(h, username, password, path).await;
    assert_eq!(location, path);
    let resp = client
        .get(format!("{}{path}", h.base))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the page");
    resp.text().await.unwrap()
}

#[tokio::test]
async fn a_chosen_token_key_that_is_taken_is_refused_as_any_unusable_key() {
    let h = Herald::start(&[]).await;
    let (s, u) = h
        .call(
            "POST",
            "/api/users/users/",
            Some(json!({"username": "k", "password": "k-password-123"})),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let h = &h;
    let refusal = |key: &str| {
        let body = json!({"user": u["id"], "key": key});
        async move { h.call("POST", "/api/users/tokens/", Some(body)).await }
    };
    let (taken_status, taken) = refusal(TOKEN).await;
    let (bad_status, bad) = refusal("short").await;
    assert_refused(taken_status, &taken, 400, "key");
    assert_eq!(
        (taken_status, &taken),
        (bad_status, &bad),
        "a taken key answers as an invalid one"
    );
    h.assert_well().await;
}
