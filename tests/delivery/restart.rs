//! The real `herald` binary: deliveries queued while no worker runs survive the process being
//! killed, and the next `serve` delivers them.

use crate::common::{site_event, wait_for, TestReceiver};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::process::{Child, Command};

const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

async fn serve(db: &str, extra: &[&str]) -> (Child, String) {
    crate::common::process::serve(db, TOKEN, extra, &[("HERALD_WORKER__RETRY_SCHEDULE", "[]")]).await
}

async fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header("Authorization", format!("Token {TOKEN}"));
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn queued_deliveries_survive_a_kill_and_are_sent_by_the_next_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let rx = TestReceiver::start().await;

    let (mut first, base) = serve(&db, &["--no-worker"]).await;
    let (s, _) = call(&base, "POST", "/api/extras/webhooks/", Some(json!({
        "name": "durable", "content_types": ["dcim.site"], "type_create": true, "payload_url": rx.url("/durable"), "secret": "x"
    }))).await;
    assert_eq!(s, 201);
    let events: Vec<Value> = (1..=25)
        .map(|i| site_event("created", i, &format!("Site {i}")))
        .collect();
    let (s, queued) = call(&base, "POST", "/api/extras/events/", Some(Value::Array(events))).await;
    assert_eq!(s, 202);
    assert_eq!(queued["deliveries_queued"], 25);
    let (_, status) = call(&base, "GET", "/api/status/", None).await;
    assert_eq!(status["worker-running"], false);
    assert_eq!(status["rq-workers-running"], 0);
    assert_eq!(status["queue"]["queued"], 25);
    first.kill().await.unwrap();
    assert!(rx.received().is_empty());

    let (mut second, base) = serve(&db, &[]).await;
    rx.wait_for(25).await;
    let mut ids = rx.event_ids();
    ids.sort_unstable();
    assert_eq!(ids, (1..=25).collect::<Vec<_>>());
    wait_for(
        Duration::from_secs(30),
        "all deliveries recorded as succeeded",
        || async {
            let (_, status) = call(&base, "GET", "/api/status/", None).await;
            (status["queue"]["succeeded"] == 25).then_some(())
        },
    )
    .await;
    second.kill().await.unwrap();
}

#[tokio::test]
async fn a_separate_worker_process_delivers_what_serve_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let rx = TestReceiver::start().await;
    let (mut api, base) = serve(&db, &["--no-worker"]).await;
    let (s, _) = call(
        &base,
        "POST",
        "/api/extras/webhooks/",
        Some(json!({
            "name": "remote", "content_types": ["dcim.site"], "type_create": true, "payload_url": rx.url("/w")
        })),
    )
    .await;
    assert_eq!(s, 201);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["worker", "--database", &db])
        .env("HERALD_WORKER__POLL_INTERVAL_SECS", "0.05")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start herald worker");
    let events: Vec<Value> = (1..=10)
        .map(|i| site_event("created", i, &format!("Site {i}")))
        .collect();
    let (s, _) = call(&base, "POST", "/api/extras/events/", Some(Value::Array(events))).await;
    assert_eq!(s, 202);
    rx.wait_for(10).await;
    wait_for(Duration::from_secs(30), "the worker's results recorded", || async {
        let (_, status) = call(&base, "GET", "/api/status/", None).await;
        (status["queue"]["succeeded"] == 10).then_some(())
    })
    .await;
    // The separate worker counts as running (by its heartbeat) though serve has none...
    let (_, status) = call(&base, "GET", "/api/status/", None).await;
    assert_eq!(status["worker-running"], false);
    assert_eq!(status["rq-workers-running"], 1);
    // ...and stops counting once it shuts down cleanly (SIGTERM).
    let pid = worker.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    worker.wait().await.unwrap();
    let (_, status) = call(&base, "GET", "/api/status/", None).await;
    assert_eq!(status["rq-workers-running"], 0);
    api.kill().await.unwrap();
}

#[tokio::test]
async fn a_database_migrated_by_an_earlier_build_is_upgraded_in_place() {
    // The schema as earlier builds left it: the first two migrations, recorded in the
    // migration table those builds kept, and a webhook in it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/0002_retries.sql"))
            .unwrap();
        conn.execute_batch(
            "create table _sqlx_migrations (version bigint primary key, description text not null, \
             installed_on timestamp not null default current_timestamp, success boolean not null, \
             checksum blob not null, execution_time bigint not null);
             insert into _sqlx_migrations (version, description, success, checksum, execution_time)
                 values (1, 'init', true, x'00', 1), (2, 'retries', true, x'00', 1);
             insert into webhooks (name, content_types, type_create, type_update, type_delete, enabled,
                 payload_url, http_method, http_content_type, additional_headers, body_template, secret,
                 ssl_verification, timeout, created_at, updated_at)
                 values ('kept', '[\"dcim.site\"]', 1, 0, 0, 1, 'http://127.0.0.1:9/', 'POST',
                 'application/json', '', '', '', 1, 10, 0, 0);",
        )
        .unwrap();
    }
    let db = format!("sqlite://{}", path.display());
    let (mut herald, base) = serve(&db, &[]).await;
    let (status, hooks) = call(&base, "GET", "/api/extras/webhooks/", None).await;
    assert_eq!(status, 200);
    assert_eq!(hooks["results"][0]["name"], "kept");
    // The new tables are there: objects can be written.
    let (status, site) = call(
        &base,
        "POST",
        "/api/dcim/sites/",
        Some(json!({"name": "S", "slug": "s"})),
    )
    .await;
    assert_eq!(status, 201, "{site}");
    herald.start_kill().unwrap();
    herald.wait().await.unwrap();
    // And a second start applies nothing twice.
    let (mut herald, base) = serve(&db, &[]).await;
    let (status, sites) = call(&base, "GET", "/api/dcim/sites/", None).await;
    assert_eq!((status, sites["count"].as_i64()), (200, Some(1)));
    herald.start_kill().unwrap();
    herald.wait().await.unwrap();
}
