//! Users and tokens over the API, and pynetbox (from PyPI) as a real client.

use crate::common::{Backend, TestApp, TestReceiver};
use serde_json::{json, Value};

async fn users_and_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Provisioning: username and password for a new token, no token needed.
    let resp = app
        .client
        .post(app.url("/api/users/tokens/provision/"))
        .json(&json!({"username": "admin", "password": "admin-password", "description": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let token: Value = resp.json().await.unwrap();
    let key = token["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 40);
    assert_eq!(token["user"]["username"], "admin");
    assert_eq!(token["description"], "ci");
    let (s, _) = app.call_as(&key, "GET", "/api/status/", None).await;
    assert_eq!(s, 200, "the provisioned key works");
    let resp = app
        .client
        .post(app.url("/api/users/tokens/provision/"))
        .json(&json!({"username": "admin", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"detail": "Invalid username/password"})
    );

    // Users: superusers manage them; passwords are write-only.
    let (s, u) = app
        .call(
            "POST",
            "/api/users/users/",
            Some(json!({"username": "ops", "password": "pw"})),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    assert!(u.get("password").is_none() && !u.to_string().contains("argon2"));
    let (s, b) = app
        .call(
            "POST",
            "/api/users/users/",
            Some(json!({"username": "ops", "password": "pw"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["username"].is_array(), "{b}");
    let (s, b) = app
        .call("POST", "/api/users/users/", Some(json!({"username": "x"})))
        .await;
    assert_eq!(s, 400);
    assert!(b["password"].is_array());
    let (_, list) = app.call("GET", "/api/users/users/", None).await;
    assert_eq!(list["count"], 3);
    // A non-superuser sees only themselves and cannot create users.
    let (_, mine) = app
        .call_as(&app.read_only_token, "GET", "/api/users/users/", None)
        .await;
    assert_eq!(mine["count"], 1);
    assert_eq!(mine["results"][0]["username"], "reader");
    let (s, _) = app
        .call(
            "POST",
            "/api/users/tokens/",
            Some(json!({"user": u["id"], "write_enabled": false})),
        )
        .await;
    assert_eq!(s, 201);
    let (_, tokens) = app
        .call_as(&app.read_only_token, "GET", "/api/users/tokens/", None)
        .await;
    assert_eq!(tokens["count"], 1, "only the reader's own token: {tokens}");
    assert!(tokens["results"][0].get("key").is_none(), "keys are shown only once");
    // Change a password, then provision with it.
    let (s, _) = app
        .call(
            "PATCH",
            &format!("/api/users/users/{}/", u["id"]),
            Some(json!({"password": "new-pw"})),
        )
        .await;
    assert_eq!(s, 200);
    let resp = app
        .client
        .post(app.url("/api/users/tokens/provision/"))
        .json(&json!({"username": "ops", "password": "new-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // Deleting a token revokes it.
    let id = token["id"].as_i64().unwrap();
    let (s, _) = app.call("DELETE", &format!("/api/users/tokens/{id}/"), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.call_as(&key, "GET", "/api/status/", None).await;
    assert_eq!(s, 403);
    app.stop().await;
}

async fn pynetbox_works_against_herald(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynetbox/smoke.py");
    let out = tokio::process::Command::new(&python)
        .args([script, &app.base, "admin", "admin-password", &rx.url("/hook")])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "pynetbox failed (is it installed? `pip install -r tests/requirements.txt`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["token_user"], "admin");
    assert_eq!(seen["token_len"], 40);
    assert_eq!(seen["token_user_superuser"], true);
    assert_eq!(seen["status_worker"], true);
    assert_eq!(seen["hook_enabled_after_save"], false);
    assert_eq!(seen["hook_timeout"], 5);
    assert_eq!(seen["hook_enabled"], true);
    assert_eq!(seen["webhooks"], json!(["from-pynetbox"]));
    assert_eq!(seen["tokens"], 3);
    assert_eq!(seen["users"], json!(["admin", "reader"]));
    assert_eq!(seen["api_version"], "3.7");
    assert_eq!(seen["netbox_version_at_least_3_7"], true);
    assert_eq!(
        seen["webhook_methods"],
        json!(["GET", "POST", "PUT", "PATCH", "DELETE"])
    );
    assert_eq!(seen["webhook_types_include_site"], true);
    assert_eq!(
        seen["webhook_detail_options"],
        json!(["additional_headers", "body_template", "ca_file_path"])
    );
    assert_eq!(
        seen["user_options"],
        json!(["groups", "is_superuser", "password", "username"])
    );
    assert_eq!(seen["site_detail_options"], json!([200, ["PUT"]]));
    app.stop().await;
}

async fn sessions_sign_in_expire_and_end_with_a_password_change(backend: Backend) {
    use herald::error::Error;
    let dir = crate::common::DataDir::new(backend).await;
    let app = herald::server::App::open(dir.config()).await.unwrap();
    let svc = app.services();
    let alice = svc.add_user("alice", "first-password", false).await.unwrap();

    assert!(matches!(
        svc.login("alice", "wrong", None).await,
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        svc.login("nobody", "first-password", None).await,
        Err(Error::BadCredentials)
    ));
    let first = svc.login("alice", "first-password", None).await.unwrap();
    let second = svc.login("alice", "first-password", None).await.unwrap();
    assert_ne!(first.key, second.key);
    assert_ne!(first.session.csrf, second.session.csrf);
    assert_eq!(first.key.len(), 64);
    // Only the key's hash is stored.
    assert_ne!(first.session.key_hash, first.key);

    let (actor, session) = svc.session(&first.key).await.unwrap();
    assert_eq!(actor.user.id, alice.id);
    assert!(session.csrf_matches(&first.session.csrf));
    assert!(!session.csrf_matches(&second.session.csrf));
    assert!(matches!(svc.session("not-a-key").await, Err(Error::Unauthenticated)));

    // A use moves the end on; past it the session is gone for good.
    let later = chrono::Utc::now() + chrono::Duration::days(10);
    let (_, moved) = svc.session_at(&first.key, later).await.unwrap();
    assert!(moved.expires > first.session.expires, "{moved:?}");
    let gone = later + chrono::Duration::days(15);
    assert!(matches!(
        svc.session_at(&first.key, gone).await,
        Err(Error::Unauthenticated)
    ));
    assert!(matches!(svc.session(&first.key).await, Err(Error::Unauthenticated)));

    // A password change keeps the session it is made from and ends the others.
    let third = svc.login("alice", "first-password", None).await.unwrap();
    svc.change_password(
        &alice,
        "first-password",
        "second-password",
        Some(&third.session.key_hash),
    )
    .await
    .unwrap();
    assert!(svc.session(&third.key).await.is_ok());
    assert!(matches!(svc.session(&second.key).await, Err(Error::Unauthenticated)));
    assert!(matches!(
        svc.login("alice", "first-password", None).await,
        Err(Error::BadCredentials)
    ));
    svc.logout(&third.key).await.unwrap();
    assert!(matches!(svc.session(&third.key).await, Err(Error::Unauthenticated)));
}

/// What NetBox lets a body set on users, tokens, groups and permissions and Herald does not
/// keep is refused, naming the field: a user asked to be made inactive must not stay active,
/// a token asked to expire must not live for ever. Values Herald already has pass.
async fn account_fields_herald_does_not_keep_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, body, refused) in [
        (
            "/api/users/users/",
            json!({"username": "u", "password": "p", "is_active": false}),
            vec!["is_active"],
        ),
        (
            "/api/users/users/",
            json!({"username": "u", "password": "p", "email": "u@example.com"}),
            vec!["email"],
        ),
        (
            "/api/users/users/",
            json!({"username": "u", "password": "p", "is_staff": true}),
            vec!["is_staff"],
        ),
        (
            "/api/users/tokens/",
            json!({"expires": "2027-01-01T00:00:00Z"}),
            vec!["expires"],
        ),
        (
            "/api/users/tokens/",
            json!({"allowed_ips": ["10.0.0.0/8"], "username": "admin"}),
            vec!["allowed_ips", "username"],
        ),
        (
            "/api/users/groups/",
            json!({"name": "g", "permissions": [1]}),
            vec!["permissions"],
        ),
        (
            "/api/users/permissions/",
            json!({"name": "p", "object_types": ["dcim.site"], "actions": ["view"], "can_view": true}),
            vec!["can_view"],
        ),
    ] {
        let (status, errors) = app.call("POST", path, Some(body)).await;
        assert_eq!(status, 400, "{path}: {errors}");
        let mut keys: Vec<&str> = errors.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, refused, "{path}: {errors}");
    }
    let (_, users) = app.call("GET", "/api/users/users/?username=u", None).await;
    assert_eq!(users["count"], 0, "nothing half-written");
    // What Herald has anyway is accepted.
    let (status, user) = app
        .call(
            "POST",
            "/api/users/users/",
            Some(json!({"username": "u", "password": "p", "is_active": true, "is_staff": false, "date_joined": "x"})),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let (status, token) = app
        .call(
            "POST",
            "/api/users/tokens/",
            Some(json!({"expires": null, "allowed_ips": [], "description": "d"})),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    app.stop().await;
}

crate::on_each_backend!(
    users_and_tokens,
    pynetbox_works_against_herald,
    sessions_sign_in_expire_and_end_with_a_password_change,
    account_fields_herald_does_not_keep_are_refused
);
