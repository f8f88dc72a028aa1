//! The operator's commands: `herald receiver` judging a signed delivery and a tampered
//! request; `herald backup` of a Herald taking writes, restored and checked.

use crate::common::{wait_for, Backend, TestApp};
use crate::metrics::TOKEN;
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// `herald receiver`, started as an operator would, with its output collected.
struct Receiver {
    child: tokio::process::Child,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(args: &[&str]) -> Receiver {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["receiver", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start herald receiver");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), out.next_line())
            .await
            .expect("the receiver says where it listens")
            .unwrap()
            .unwrap();
        let url = first
            .strip_prefix("Receiving on ")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let keep = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        Receiver { child, url, lines }
    }

    /// Waits until a printed line is `line`; returns everything printed so far.
    async fn wait_line(&self, line: &str) -> Vec<String> {
        wait_for(
            Duration::from_secs(30),
            &format!("the receiver to print {line:?}"),
            || async {
                let lines = self.lines.lock().unwrap().clone();
                lines.iter().any(|l| l == line).then_some(lines)
            },
        )
        .await
    }
}

#[tokio::test]
async fn the_receiver_tells_a_signed_delivery_from_a_tampered_request() {
    let secret = "receiver-secret-42";
    let rx = Receiver::start(&["--secret", secret, "--status", "202"]).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let hook = app
        .create_webhook(json!({"payload_url": format!("{}hook", rx.url), "secret": secret, "signature_scheme": "both"}))
        .await;
    let (status, _) = app
        .call(
            "POST",
            "/api/dcim/sites/",
            Some(json!({"name": "Seen", "slug": "seen"})),
        )
        .await;
    assert_eq!(status, 201);
    let id = app.delivery_ids(hook["id"].as_i64().unwrap()).await[0];
    let done = app.wait_delivery_done(id).await;
    assert_eq!(done["status"]["value"], "succeeded", "answered 202: {done}");
    let lines = rx.wait_line("webhook-signature: valid").await;
    assert!(lines.iter().any(|l| l == "X-Hook-Signature: valid"), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("POST /hook from 127.0.0.1:")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l == r#"  "event": "created","#),
        "the body, pretty: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l == "answered 202"), "{lines:#?}");

    // The same kind of request with its body changed after signing.
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(br#"{"event": "created"}"#);
    let resp = reqwest::Client::new()
        .post(format!("{}tampered", rx.url))
        .header("X-Hook-Signature", hex::encode(mac.finalize().into_bytes()))
        .header("Content-Type", "application/json")
        .body(r#"{"event": "deleted"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let lines = rx.wait_line("X-Hook-Signature: INVALID for this secret").await;
    assert!(lines.iter().any(|l| l.starts_with("POST /tampered from")), "{lines:#?}");
    app.stop().await;
    herald_testkit::process::stop(rx.child).await;
}

/// The ids of every site a Herald at `base` holds.
async fn site_ids(client: &reqwest::Client, base: &str) -> std::collections::HashSet<i64> {
    let mut ids = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page: Value = client
            .get(format!("{base}/api/dcim/sites/?limit=1000&offset={offset}&brief=1"))
            .header("Authorization", format!("Token {TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let results = page["results"].as_array().unwrap();
        ids.extend(results.iter().map(|s| s["id"].as_i64().unwrap()));
        offset += 1000;
        if results.len() < 1000 {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_herald_taking_writes_holds_every_write_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let (herald, base) = crate::common::process::serve(&db, TOKEN, &["--no-worker"], &[]).await;
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, base, acked, stop) = (client.clone(), base.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(60);
            for i in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) || Instant::now() > until {
                    break;
                }
                let resp = client
                    .post(format!("{base}/api/dcim/sites/"))
                    .header("Authorization", format!("Token {TOKEN}"))
                    .json(&json!({"name": format!("Site {i}"), "slug": format!("site-{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
                let id = resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
                acked.lock().unwrap().push((id, Instant::now()));
            }
        })
    };
    wait_for(Duration::from_secs(30), "a first hundred writes", || async {
        (acked.lock().unwrap().len() >= 100).then_some(())
    })
    .await;
    let copy = dir.path().join("copy.db");
    let began = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["backup", copy.to_str().unwrap(), "--database", &db])
            .env("RUST_LOG", "error")
            .output(),
    )
    .await
    .expect("the backup ends within 60 s")
    .unwrap();
    let ended = Instant::now();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("To restore: stop Herald"), "{said}");
    wait_for(Duration::from_secs(30), "writes after the backup", || async {
        acked.lock().unwrap().iter().any(|(_, at)| *at > ended).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let before: Vec<i64> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| *id)
        .collect();
    assert!(before.len() >= 100);
    assert!(
        dir.path().join("copy.db.id").exists(),
        "the identity travels with the copy"
    );

    // Again into the same file: refused, the copy untouched.
    let again = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["backup", copy.to_str().unwrap(), "--database", &db])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let pg = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "backup",
            "/nonexistent/x.db",
            "--database",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .output()
        .await
        .unwrap();
    assert!(!pg.status.success());
    assert!(String::from_utf8_lossy(&pg.stderr).contains("pg_dump"));

    herald_testkit::process::stop(herald).await;
    let copy_url = format!("sqlite://{}", copy.display());
    let (restored, base) = crate::common::process::serve(&copy_url, TOKEN, &["--no-worker"], &[]).await;
    let held = site_ids(&client, &base).await;
    let lost: Vec<&i64> = before.iter().filter(|id| !held.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} writes acknowledged before the backup are missing",
        lost.len(),
        before.len()
    );
    let total = acked.lock().unwrap().len();
    assert!(
        held.len() < total,
        "the copy is of its moment: {} of {total}",
        held.len()
    );
    herald_testkit::process::stop(restored).await;
}
