//! Herald as a fleet on one PostgreSQL database, with the real binary: API nodes
//! (`serve --no-worker`) and worker processes, one killed with SIGKILL and every Herald
//! connection terminated by the server mid-load; two nodes racing for one slug and one
//! prefix; a webhook changed on one node while workers elsewhere deliver. Bounded in count
//! and time. Needs `HERALD_TEST_POSTGRES_URL` (says so and does nothing without it).

use crate::common::postgres::{scratch_db, server_url, ScratchDb};
use crate::common::{site_event, wait_for, TestReceiver};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha512;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Child;

const TOKEN: &str = "f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7";
const SECRET: &str = "fleet-secret";

/// Settings every process of the fleet shares: small pools (five processes share the
/// server's connections with the other tests), short leases and retries.
const ENV: [(&str, &str); 4] = [
    ("HERALD_POSTGRES__POOL_SIZE", "6"),
    ("HERALD_WORKER__LEASE_MARGIN_SECS", "1"),
    ("HERALD_WORKER__RETRY_SCHEDULE", "[0.1, 0.1, 0.2, 0.5, 1, 1, 1, 1]"),
    ("HERALD_WORKER__POLL_INTERVAL_SECS", "0.5"),
];

/// A fleet's database and API nodes.
struct Fleet {
    db: ScratchDb,
    nodes: Vec<(Child, String)>,
    client: reqwest::Client,
}

impl Fleet {
    /// `n` API nodes without workers on a new database; `None` without a PostgreSQL server.
    async fn start(what: &str, n: usize) -> Option<Fleet> {
        let server = server_url(&format!("{what} not run"))?;
        let db = scratch_db(&server).await;
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(crate::common::process::serve(&db.url, TOKEN, &["--no-worker"], &ENV).await);
        }
        Some(Fleet {
            db,
            nodes,
            client: reqwest::Client::new(),
        })
    }

    fn base(&self, node: usize) -> &str {
        &self.nodes[node % self.nodes.len()].1
    }

    fn workers(&self, n: usize) -> Vec<Child> {
        (0..n)
            .map(|_| crate::common::process::worker(&self.db.url, &ENV))
            .collect()
    }

    async fn call(&self, node: usize, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        call(&self.client, self.base(node), method, path, body).await
    }

    async fn create_webhook(&self, url: &str) -> Value {
        let hook = json!({"name": "fleet", "content_types": ["dcim.site"], "type_create": true,
                          "payload_url": url, "secret": SECRET, "timeout": 5});
        let (status, hook) = self.call(0, "POST", "/api/extras/webhooks/", Some(&hook)).await;
        assert_eq!(status, 201, "{hook}");
        hook
    }

    /// The status page's live workers and deliveries per state, as node `node` sees them.
    async fn status(&self, node: usize) -> Value {
        let (status, body) = self.call(node, "GET", "/api/status/", None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn stop(self, workers: Vec<Child>) {
        for mut child in workers.into_iter().chain(self.nodes.into_iter().map(|(c, _)| c)) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        drop(self.db);
    }
}

async fn call(client: &reqwest::Client, base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = client
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header("Authorization", format!("Token {TOKEN}"));
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b.to_string());
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// Terminates every server process of Herald's on `db` (its pools and listeners), as an
/// administrator or a failover would; returns how many.
async fn terminate_herald_sessions(db: &ScratchDb) -> i64 {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = 'herald' and datname = $1",
            &[&db.name()],
        )
        .await
        .unwrap();
    row.get(0)
}

fn signature_ok(body: &[u8], signature: Option<&str>) -> bool {
    let mut mac = Hmac::<Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    signature == Some(hex::encode(mac.finalize().into_bytes()).as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_three_workers_a_kill_and_lost_connections_lose_nothing() {
    const EVENTS: i64 = 10_000;
    const BATCH: i64 = 100;
    const LOADERS: i64 = 4;
    let Some(fleet) = Fleet::start("the fleet test", 2).await else {
        return;
    };
    let rx = TestReceiver::start().await;
    fleet.create_webhook(&rx.url("/")).await;
    let mut workers = fleet.workers(3);
    wait_for(Duration::from_secs(30), "three live workers", || async {
        (fleet.status(1).await["rq-workers-running"] == 3).then_some(())
    })
    .await;

    // Load: LOADERS tasks post their share of the batches, alternating between the nodes. A
    // batch refused with a 5xx (its connection was terminated under it) is posted again.
    let server_errors = Arc::new(AtomicUsize::new(0));
    let posted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let loaders: Vec<_> = (0..LOADERS)
        .map(|l| {
            let (client, errors, posted) = (fleet.client.clone(), server_errors.clone(), posted.clone());
            let bases = [fleet.base(0).to_string(), fleet.base(1).to_string()];
            tokio::spawn(async move {
                let mut n = 0;
                for start in (1 + l * BATCH..=EVENTS).step_by((BATCH * LOADERS) as usize) {
                    let batch: Vec<Value> = (start..start + BATCH)
                        .map(|i| site_event("created", i, &format!("S{i}")))
                        .collect();
                    let body = Value::Array(batch);
                    for attempt in 0.. {
                        assert!(attempt < 20, "batch {start} refused 20 times");
                        n += 1;
                        let (status, reply) =
                            call(&client, &bases[n % 2], "POST", "/api/extras/events/", Some(&body)).await;
                        match status {
                            202 => {
                                posted.fetch_add(BATCH as usize, Ordering::Relaxed);
                                break;
                            }
                            500.. => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            _ => panic!("batch {start}: {status} {reply}"),
                        }
                    }
                }
            })
        })
        .collect();

    // Every Herald session terminated once while the loaders post, then a worker killed
    // while deliveries go out.
    wait_for(Duration::from_secs(120), "3,000 events posted", || async {
        (posted.load(Ordering::Relaxed) >= 3_000).then_some(())
    })
    .await;
    let terminated = terminate_herald_sessions(&fleet.db).await;
    let posted_then = posted.load(Ordering::Relaxed);
    assert!(terminated >= 5, "only {terminated} Herald sessions to terminate");
    assert!(
        posted_then < EVENTS as usize,
        "the load was over before the connections went"
    );
    wait_for(Duration::from_secs(120), "2,000 deliveries before the kill", || async {
        (rx.received().len() >= 2_000).then_some(())
    })
    .await;
    workers[0].start_kill().unwrap(); // SIGKILL
    workers[0].wait().await.unwrap();
    let delivered_then = rx.received().len();
    assert!(
        delivered_then < EVENTS as usize,
        "the deliveries were over before the kill"
    );
    for l in loaders {
        l.await.unwrap();
    }
    let accepted_in = started.elapsed();

    wait_for(Duration::from_secs(180), "every event delivered", || async {
        let got: HashSet<i64> = rx.event_ids().into_iter().collect();
        (got.len() as i64 == EVENTS).then_some(())
    })
    .await;
    let delivered_in = started.elapsed();
    let received = rx.received();
    let bad_signatures = received
        .iter()
        .filter(|r| !signature_ok(&r.body, r.header("x-hook-signature")))
        .count();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for id in rx.event_ids() {
        *seen.entry(id).or_default() += 1;
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let errors = server_errors.load(Ordering::Relaxed);
    println!(
        "fleet: {EVENTS} events through 2 nodes in {accepted_in:?}, all delivered in {delivered_in:?} by 3 workers \
         ({terminated} Herald sessions terminated after {posted_then} events posted, a worker SIGKILLed after \
         {delivered_then} deliveries); \
         {} requests received, duplicates {duplicates}, lost 0, bad signatures {bad_signatures}, \
         5xx answers to the loaders {errors}",
        received.len()
    );
    assert_eq!(bad_signatures, 0);
    assert!(seen.keys().all(|id| (1..=EVENTS).contains(id)));
    // Only requests whose connection was terminated under them may fail: one per loader.
    assert!(errors <= LOADERS as usize, "{errors} 5xx answers");

    // Nothing stays behind: every delivery succeeded (the killed worker's leases expired and
    // were claimed again), and the status page counts the two live workers.
    wait_for(
        Duration::from_secs(60),
        "every delivery recorded as succeeded",
        || async {
            let status = fleet.status(0).await;
            let succeeded = status["queue"]["succeeded"].as_i64().unwrap_or(0);
            (succeeded == EVENTS).then_some(status)
        },
    )
    .await;
    wait_for(Duration::from_secs(30), "the killed worker to drop out", || async {
        (fleet.status(1).await["rq-workers-running"] == 2).then_some(())
    })
    .await;
    fleet.stop(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_for_one_slug_and_one_prefix_have_one_winner_each_time() {
    let Some(fleet) = Fleet::start("the fleet race test", 2).await else {
        return;
    };
    // One slug, 20 requests at once, half on each node: one 201, the rest a 400 naming slug.
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let (client, base) = (fleet.client.clone(), fleet.base(i).to_string());
            tokio::spawn(async move {
                let body = json!({"name": format!("Site {i}"), "slug": "contested"});
                call(&client, &base, "POST", "/api/dcim/sites/", Some(&body)).await
            })
        })
        .collect();
    let mut created = 0;
    for r in racers {
        let (status, body) = r.await.unwrap();
        match status {
            201 => created += 1,
            400 => assert_eq!(body["slug"][0], "site with this slug already exists.", "{body}"),
            _ => panic!("{status} {body}"),
        }
    }
    assert_eq!(created, 1);
    let (_, sites) = fleet.call(0, "GET", "/api/dcim/sites/?slug=contested", None).await;
    assert_eq!(sites["count"], 1);

    // A /29 has six free addresses; 16 allocations at once from both nodes: six succeed with
    // six different addresses, the rest are refused, and no address exists twice.
    let (status, prefix) = fleet
        .call(
            0,
            "POST",
            "/api/ipam/prefixes/",
            Some(&json!({"prefix": "10.9.0.0/29"})),
        )
        .await;
    assert_eq!(status, 201, "{prefix}");
    let path = format!("/api/ipam/prefixes/{}/available-ips/", prefix["id"]);
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let (client, base, path) = (fleet.client.clone(), fleet.base(i).to_string(), path.clone());
            tokio::spawn(async move { call(&client, &base, "POST", &path, Some(&json!({}))).await })
        })
        .collect();
    let mut addresses = Vec::new();
    for r in racers {
        let (status, body) = r.await.unwrap();
        match status {
            201 => addresses.push(body["address"].as_str().unwrap().to_string()),
            409 | 400 => assert!(body.to_string().contains("available"), "{status} {body}"),
            _ => panic!("{status} {body}"),
        }
    }
    let unique: HashSet<&String> = addresses.iter().collect();
    assert_eq!((addresses.len(), unique.len()), (6, 6), "{addresses:?}");
    let (_, ips) = fleet.call(1, "GET", "/api/ipam/ip-addresses/?limit=0", None).await;
    assert_eq!(ips["count"], 6);
    fleet.stop(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_changed_on_one_node_is_used_by_every_worker_within_a_second() {
    let Some(fleet) = Fleet::start("the fleet propagation test", 2).await else {
        return;
    };
    let (old, new) = (TestReceiver::start().await, TestReceiver::start().await);
    let hook = fleet.create_webhook(&old.url("/")).await;
    let workers = fleet.workers(2);
    wait_for(Duration::from_secs(30), "two live workers", || async {
        (fleet.status(0).await["rq-workers-running"] == 2).then_some(())
    })
    .await;
    // Events keep coming through node 1 while node 0 points the webhook elsewhere.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let (client, base, stop) = (fleet.client.clone(), fleet.base(1).to_string(), stop.clone());
        tokio::spawn(async move {
            for i in 1..=5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (status, body) = call(
                    &client,
                    &base,
                    "POST",
                    "/api/extras/events/",
                    Some(&site_event("created", i, "S")),
                )
                .await;
                assert_eq!(status, 202, "{body}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    old.wait_for(50).await;
    let patch = json!({"payload_url": new.url("/")});
    let (status, body) = fleet
        .call(
            0,
            "PATCH",
            &format!("/api/extras/webhooks/{}/", hook["id"]),
            Some(&patch),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let changed = Instant::now();
    new.wait_for(50).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    loader.await.unwrap();
    let last_old = old.received().iter().map(|r| r.at).max().unwrap();
    let late = last_old.saturating_duration_since(changed);
    println!("the old version was last used {late:?} after the change");
    assert!(
        late < Duration::from_secs(1),
        "old version used {late:?} after the change"
    );

    // Disabled on node 1: nothing more is queued anywhere.
    let (status, body) = fleet
        .call(
            1,
            "PATCH",
            &format!("/api/extras/webhooks/{}/", hook["id"]),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let before = fleet.status(0).await["queue"].clone();
    let (status, body) = fleet
        .call(
            0,
            "POST",
            "/api/extras/events/",
            Some(&site_event("created", 99_999, "Late")),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Deliveries still being sent move between states meanwhile; the total does not, unless
    // one more was queued.
    let total = |q: &Value| q.as_object().unwrap().values().filter_map(Value::as_i64).sum::<i64>();
    assert_eq!(total(&fleet.status(1).await["queue"]), total(&before));
    fleet.stop(workers).await;
}
