//! Herald attacked as someone with a token (or none) would: templates that build huge values
//! (when compiled and when rendered), oversized, endless and half-sent requests, destinations
//! that should not be reached, headers smuggled through object data, files that are not CA
//! files, paths past one's permissions, secrets shown to viewers, a database deleted, swapped or
//! re-created under Herald, password guessing. Each test runs the real `herald` binary and
//! checks that it never crashes, that the peak RSS of every Herald process stays under 200 MiB,
//! that the API keeps answering, and that every refusal is a clear 4xx (or 503) in NetBox's
//! shape.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod database;
mod destinations;
mod http;
mod templates;

use common::wait_for;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tokio::process::Child;

pub const TOKEN: &str = "4a7c1e0b9f3d2a68c5e4b7f1a0d9c8e2b3f6a5d4";
pub const MAX_RSS_MIB: u64 = 200;

/// A running `herald serve`.
pub struct Herald {
    child: Child,
    base: String,
    client: reqwest::Client,
    dir: Option<tempfile::TempDir>,
}

impl Herald {
    async fn start(env: &[(&str, &str)]) -> Herald {
        Herald::start_in(tempfile::tempdir().unwrap(), env).await
    }

    /// Starts Herald on the database in `dir` (made there if new).
    async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Herald {
        let db = format!("sqlite://{}", dir.path().join("herald.db").display());
        let mut all = vec![
            ("HERALD_WORKER__RETRY_SCHEDULE", "[]"),
            ("HERALD_API__HEADER_READ_TIMEOUT_SECS", "1"),
            ("HERALD_API__BODY_READ_TIMEOUT_SECS", "2"),
            ("HERALD_TEMPLATES__TIMEOUT_SECS", "3"),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ];
        all.extend_from_slice(env);
        let (child, base) = crate::common::process::serve(&db, TOKEN, &[], &all).await;
        // No pooled connections: a request sent on one as Herald lets it go would fail for
        // reasons of the test's own making.
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        Herald {
            child,
            base,
            client,
            dir: Some(dir),
        }
    }

    /// A Herald started elsewhere, whose folder someone else keeps.
    fn attach(child: Child, base: String) -> Herald {
        Herald {
            child,
            base,
            client: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
            dir: None,
        }
    }

    /// Stops Herald (SIGKILL) and gives back its folder.
    async fn stop(mut self) -> tempfile::TempDir {
        self.child.kill().await.unwrap();
        self.child.wait().await.unwrap();
        self.dir.take().expect("the folder")
    }

    fn path(&self) -> &std::path::Path {
        self.dir.as_ref().expect("the folder").path()
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("herald runs")
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(TOKEN, method, path, body).await
    }

    async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("Authorization", format!("Token {token}"));
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("Herald answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("Herald answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The answer to a POST of `body` whose writing may be cut short: Herald may answer and
    /// close before the body is all sent (as it should for a body over its bound), so the body
    /// is written on its own thread, its errors ignored, while the answer is read here.
    async fn refused_early(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let addr = self.base.trim_start_matches("http://").to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut w = s.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                let _ = w.write_all(head.as_bytes()).and_then(|_| w.write_all(&body));
            });
            let mut answer = Vec::new();
            let mut buf = [0u8; 8192];
            // Until Herald closes, or the answer's head and body are in.
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !answer.is_empty() => break,
                    Err(e) => panic!("reading Herald's answer: {e}"),
                }
                if complete_answer(&answer) {
                    break;
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Both);
            writer.join().unwrap();
            answer
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Herald is up and answers at once; the peak RSS of it and of each of its children (the
    /// template sandbox) is under the bound.
    async fn assert_well(&self) {
        let started = Instant::now();
        let (s, _) = self.call("GET", "/api/status/", None).await;
        assert_eq!(s, 200, "the API answers");
        assert!(started.elapsed() < Duration::from_secs(5), "and promptly");
        assert_processes_bounded(self.pid());
    }

    async fn webhook(&self, fields: Value) -> (u16, Value) {
        let mut body = json!({"name": format!("hook-{}", uuid::Uuid::new_v4()), "content_types": ["dcim.site"],
                              "type_create": true, "payload_url": "http://127.0.0.1:9/"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.call("POST", "/api/extras/webhooks/", Some(body)).await
    }

    /// The final state of the first delivery of `webhook_id`.
    async fn delivery_of(&self, webhook_id: i64) -> Value {
        wait_for(Duration::from_secs(30), "the delivery to end", || async {
            let (_, list) = self
                .call("GET", &format!("/api/extras/deliveries/?webhook_id={webhook_id}"), None)
                .await;
            let id = list["results"][0]["id"].as_i64()?;
            let (_, d) = self.call("GET", &format!("/api/extras/deliveries/{id}/"), None).await;
            matches!(d["status"]["value"].as_str(), Some("succeeded" | "failed")).then_some(d)
        })
        .await
    }
}

/// Whether `answer` holds an HTTP head and the whole body its Content-Length announces.
fn complete_answer(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

/// Logs in through the form on `h`, going on to `next` (see `common::log_in`).
pub async fn log_in(h: &Herald, username: &str, password: &str, next: &str) -> (reqwest::Client, String, String) {
    common::log_in(&h.base, username, password, next).await
}

/// The password `admin` logs in with.
pub const ADMIN_PASSWORD: &str = "hostile-admin-password";

/// `pid` and its children.
fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the name may hold spaces, so read after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// The peak RSS of `pid` and of each of its children is under the bound.
pub fn assert_processes_bounded(pid: u32) {
    for p in with_children(pid) {
        // A child may end between listing and reading.
        if let Some(hwm) = try_peak_rss_mib(p) {
            assert!(hwm < MAX_RSS_MIB, "peak RSS of process {p} (of {pid}): {hwm} MiB");
        }
    }
}

fn try_peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib / 1024)
}

/// NetBox's error shape: `{"detail": "..."}`, or field errors (an object of message lists, or
/// a list of those).
fn netbox_error(body: &Value) -> bool {
    match body {
        Value::Object(m) if m.len() == 1 && m.get("detail").is_some_and(Value::is_string) => true,
        Value::Object(m) => {
            !m.is_empty()
                && m.values()
                    .all(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) || v.is_object())
        }
        Value::Array(items) => items.iter().all(|i| i.is_object()),
        _ => false,
    }
}

fn assert_refused(status: u16, body: &Value, want: u16, mentions: &str) {
    assert_eq!(status, want, "{body}");
    assert!(netbox_error(body), "not NetBox's shape: {body}");
    assert!(
        body.to_string().contains(mentions),
        "{body} should mention {mentions:?}"
    );
}
