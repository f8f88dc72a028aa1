//! `/healthz` and `/readyz` while the SQLite file is moved away and back, and while
//! PostgreSQL is unreachable (every connection cut by a relay) and back.

use crate::common::postgres::server_url;
use crate::common::{wait_for, Backend, TestApp};
use crate::metrics::get;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The SQLite file moved away under a running Herald, then put back.
#[tokio::test]
async fn readiness_follows_the_sqlite_file_moved_away_and_back() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    let ready = app.url("/readyz");
    let (status, _, body) = get(&client, &ready, None).await;
    assert_eq!(status, 200, "{body}");
    let file = app.dir.path().join("herald.db");
    let aside = app.dir.path().join("herald.db.aside");
    std::fs::rename(&file, &aside).unwrap();
    let (status, _, body) = get(&client, &ready, None).await;
    assert_eq!(status, 503, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "not ready");
    assert!(
        answer["problems"][0].as_str().unwrap().contains("was deleted"),
        "{answer}"
    );
    assert_eq!(
        get(&client, &app.url("/healthz"), None).await.0,
        200,
        "the process still answers"
    );
    std::fs::rename(&aside, &file).unwrap();
    // Ready again once the worker's next claim works (it waits a second after a failed one).
    wait_for(Duration::from_secs(10), "/readyz to answer 200 again", || async {
        (get(&client, &ready, None).await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = app
        .call(
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "Back", "slug": "back"})),
        )
        .await;
    assert_eq!(status, 201, "writes go on once the file is back: {body}");
    app.stop().await;
}

/// A TCP relay to PostgreSQL that can be cut (every connection closed, new ones refused)
/// and restored.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (u, p) = (up.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                p.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Relay {
            addr,
            up,
            pipes,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// PostgreSQL unreachable under a running Herald (every connection cut), then back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_postgres_going_away_and_back() {
    let Some(server) = server_url("readiness on PostgreSQL is not checked") else {
        return;
    };
    let server = reqwest::Url::parse(&server).unwrap();
    let target = format!("{}:{}", server.host_str().unwrap(), server.port().unwrap_or(5432));
    let relay = Relay::start(target).await;
    let port = relay.addr.port();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        let mut url = reqwest::Url::parse(&c.database_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        c.database_url = url.to_string();
        c.postgres.connect_timeout_secs = 2.0;
        c.postgres.acquire_timeout_secs = 2.0;
    })
    .await;
    let client = reqwest::Client::new();
    let ready = app.url("/readyz");
    assert_eq!(get(&client, &ready, None).await.0, 200);
    relay.cut();
    let problems = wait_for(Duration::from_secs(20), "/readyz to answer 503", || async {
        let (status, _, body) = get(&client, &ready, None).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(problems.contains("the database"), "{problems}");
    assert_eq!(get(&client, &app.url("/healthz"), None).await.0, 200);
    relay.restore();
    wait_for(Duration::from_secs(30), "/readyz to answer 200 again", || async {
        (get(&client, &ready, None).await.0 == 200).then_some(())
    })
    .await;
    app.stop().await;
    drop(relay);
}
