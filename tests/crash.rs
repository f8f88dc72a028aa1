//! Crash recovery with the real binary: `herald serve` is killed with SIGKILL in the middle of
//! a load; after a restart every accepted event is delivered (duplicates allowed: at least once;
//! losses: none). Bounded in count and time.

mod common;

use common::{site_event, wait_for, TestReceiver};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::process::Child;

const TOKEN: &str = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff";
const EVENTS: i64 = 3000;
const BATCH: i64 = 50;

async fn serve(db: &str) -> (Child, String) {
    let env = [
        ("HERALD_WORKER__RETRY_SCHEDULE", "[0.05, 0.05, 0.05, 0.05, 0.05]"),
        ("HERALD_WORKER__LEASE_MARGIN_SECS", "1"),
    ];
    common::process::serve(db, TOKEN, &[], &env).await
}

fn post(client: &reqwest::Client, base: &str, path: &str, body: &Value) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}{path}"))
        .header("Authorization", format!("Token {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
}

#[tokio::test]
async fn sigkill_during_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("crash.db").display());
    let rx = TestReceiver::start().await;
    let client = reqwest::Client::new();

    let (mut herald, base) = serve(&db).await;
    let hook = json!({"name": "crash", "content_types": ["dcim.site"], "type_create": true,
                      "payload_url": rx.url("/"), "timeout": 2});
    assert_eq!(
        post(&client, &base, "/api/extras/webhooks/", &hook)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    // Load: batches posted one after another until the process dies under them.
    let loader = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for start in (1..=EVENTS).step_by(BATCH as usize) {
                let batch: Vec<Value> = (start..start + BATCH)
                    .map(|i| site_event("created", i, &format!("S{i}")))
                    .collect();
                match post(&client, &base, "/api/extras/events/", &Value::Array(batch))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 202 => accepted.extend(start..start + BATCH),
                    _ => break,
                }
            }
            accepted
        })
    };
    wait_for(
        Duration::from_secs(60),
        "deliveries under way before the kill",
        || async { (rx.received().len() >= 300).then_some(()) },
    )
    .await;
    herald.start_kill().unwrap(); // SIGKILL
    herald.wait().await.unwrap();
    let accepted: HashSet<i64> = loader.await.unwrap().into_iter().collect();
    let before_restart = rx.received().len();
    assert!(!accepted.is_empty());

    let (mut herald, _base) = serve(&db).await;
    wait_for(
        Duration::from_secs(90),
        "every accepted event after the restart",
        || async {
            let got: HashSet<i64> = rx.event_ids().into_iter().collect();
            accepted.is_subset(&got).then_some(())
        },
    )
    .await;
    let ids = rx.event_ids();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for id in &ids {
        *seen.entry(*id).or_default() += 1;
    }
    let lost = accepted.iter().filter(|id| !seen.contains_key(id)).count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "SIGKILL: {} events accepted, {before_restart} delivered before the kill, {} after; lost {lost}, duplicates {duplicates}",
        accepted.len(),
        ids.len() - before_restart
    );
    assert_eq!(lost, 0);
    herald.start_kill().unwrap();
    herald.wait().await.unwrap();
}
