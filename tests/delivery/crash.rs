//! Crash recovery with the real binary: `herald serve` is killed with SIGKILL in the middle of
//! a load; after a restart every accepted event is delivered (duplicates allowed: at least once;
//! losses: none). Bounded in count and time.

use crate::common::{site_event, wait_for, TestReceiver};
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
    crate::common::process::serve(db, TOKEN, &[], &env).await
}

fn post(client: &reqwest::Client, base: &str, path: &str, body: &Value) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}{path}"))
        .header("Authorization", format!("Token {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
}

/// `GET url` as the admin, its JSON.
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let resp = client
        .get(url)
        .header("Authorization", format!("Token {TOKEN}"))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// Every site of the Herald at `base`: id → name.
async fn all_sites(client: &reqwest::Client, base: &str) -> HashMap<i64, String> {
    let mut sites = HashMap::new();
    let mut next = Some(format!("{base}/api/dcim/sites/?limit=1000"));
    while let Some(url) = next {
        let page = get_json(client, &url).await;
        for s in page["results"].as_array().unwrap() {
            sites.insert(s["id"].as_i64().unwrap(), s["name"].as_str().unwrap().to_string());
        }
        next = page["next"].as_str().map(String::from);
    }
    sites
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

#[tokio::test]
async fn sigkill_during_object_writes_leaves_no_request_half_written() {
    const PER_REQUEST: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("objects.db").display());
    let rx = TestReceiver::start().await;
    let client = reqwest::Client::new();
    let (mut herald, base) = serve(&db).await;
    let hook = json!({"name": "sites", "content_types": ["dcim.site"], "type_create": true,
                      "payload_url": rx.url("/"), "timeout": 2});
    let status = post(&client, &base, "/api/extras/webhooks/", &hook)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);

    // Bulk creates, one after another, until the process dies under them (bounded).
    let loader = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let mut accepted: Vec<String> = Vec::new();
            for request in 0..500 {
                let names: Vec<String> = (0..PER_REQUEST).map(|i| format!("S{request}-{i}")).collect();
                let body: Vec<Value> = names
                    .iter()
                    .map(|n| json!({"name": n, "slug": n.to_lowercase()}))
                    .collect();
                match post(&client, &base, "/api/dcim/sites/", &Value::Array(body))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => accepted.extend(names),
                    _ => break,
                }
            }
            accepted
        })
    };
    wait_for(
        Duration::from_secs(60),
        "deliveries under way before the kill",
        || async { (rx.received().len() >= 200).then_some(()) },
    )
    .await;
    herald.start_kill().unwrap(); // SIGKILL
    herald.wait().await.unwrap();
    let accepted: HashSet<String> = loader.await.unwrap().into_iter().collect();
    assert!(!accepted.is_empty());

    let (mut herald, base) = serve(&db).await;
    let sites = all_sites(&client, &base).await;
    let names: HashSet<String> = sites.values().cloned().collect();
    // Every answered request is there; the one cut short is there whole or not at all.
    assert!(accepted.is_subset(&names));
    assert_eq!(
        sites.len() % PER_REQUEST,
        0,
        "{} sites: a request was half written",
        sites.len()
    );
    let changes = get_json(&client, &format!("{base}/api/extras/object-changes/?limit=1")).await;
    assert_eq!(changes["count"].as_u64().unwrap() as usize, sites.len());
    // And every site's delivery arrives, for sites that exist only.
    wait_for(Duration::from_secs(90), "a delivery for every site", || async {
        let got: HashSet<i64> = rx.event_ids().into_iter().collect();
        sites.keys().all(|id| got.contains(id)).then_some(())
    })
    .await;
    let strangers = rx.event_ids().into_iter().filter(|id| !sites.contains_key(id)).count();
    assert_eq!(strangers, 0);
    println!(
        "SIGKILL during object writes: {} sites answered, {} stored, {} changes, every one delivered",
        accepted.len(),
        sites.len(),
        changes["count"]
    );
    herald.start_kill().unwrap();
    herald.wait().await.unwrap();
}

/// Concurrent single creates share commits (group commit); some of them break a unique rule.
/// Each fails alone with its 400, every other one is answered 201, and after SIGKILL every
/// answered create is stored, with its change record.
#[tokio::test]
async fn sigkill_during_concurrent_creates_keeps_every_answered_one() {
    const CLIENTS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("group.db").display());
    let client = reqwest::Client::new();
    let (mut herald, base) = serve(&db).await;
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, String)>::new()));
    let loaders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, base, answered) = (client.clone(), base.clone(), answered.clone());
            tokio::spawn(async move {
                let mut refused = 0usize;
                for i in 0..2_000usize {
                    // Every fifth create repeats the slug of this client's previous site.
                    let duplicate = i % 5 == 4;
                    let name = if duplicate {
                        format!("G{c}-{}", i - 1)
                    } else {
                        format!("G{c}-{i}")
                    };
                    let body = json!({"name": name, "slug": name.to_lowercase()});
                    let Ok(r) = post(&client, &base, "/api/dcim/sites/", &body).send().await else {
                        break;
                    };
                    match (r.status().as_u16(), duplicate) {
                        (201, false) => {
                            let site: Value = r.json().await.unwrap();
                            answered.lock().unwrap().push((site["id"].as_i64().unwrap(), name));
                        }
                        (400, true) => refused += 1,
                        (status, _) => panic!("create {name} (duplicate: {duplicate}) answered {status}"),
                    }
                }
                refused
            })
        })
        .collect();
    wait_for(Duration::from_secs(60), "creates answered before the kill", || async {
        (answered.lock().unwrap().len() >= 400).then_some(())
    })
    .await;
    herald.start_kill().unwrap(); // SIGKILL
    herald.wait().await.unwrap();
    let mut refused = 0;
    for l in loaders {
        refused += l.await.unwrap();
    }
    assert!(refused > 0, "no duplicate was refused before the kill");
    let answered: HashMap<i64, String> = answered.lock().unwrap().iter().cloned().collect();

    let (mut herald, base) = serve(&db).await;
    let sites = all_sites(&client, &base).await;
    for (id, name) in &answered {
        assert_eq!(
            sites.get(id),
            Some(name),
            "site {id} ({name}) was answered 201 and lost"
        );
    }
    // At most the creates in flight at the kill were stored without an answer.
    assert!(
        sites.len() <= answered.len() + CLIENTS,
        "{} stored, {} answered",
        sites.len(),
        answered.len()
    );
    let changes = get_json(&client, &format!("{base}/api/extras/object-changes/?limit=1")).await;
    assert_eq!(changes["count"].as_u64().unwrap() as usize, sites.len());
    println!(
        "SIGKILL during concurrent creates: {} answered, {refused} duplicates refused, {} stored",
        answered.len(),
        sites.len()
    );
    herald.start_kill().unwrap();
    herald.wait().await.unwrap();
}
