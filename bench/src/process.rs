//! Running the real `herald` binary as a separate process on a fresh database, and talking to it.

use anyhow::{bail, Context};
use herald::store::postgres::scratch::ScratchDb;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const TOKEN: &str = "b3nchb3nchb3nchb3nchb3nchb3nchb3nchb3nch";
/// The password of `admin`, for the pages.
pub const PASSWORD: &str = "b3nch-pa55word";

pub struct Herald {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub client: reqwest::Client,
}

/// A fresh database for one scenario: a SQLite file in a temporary folder, or a database
/// made on a PostgreSQL server (dropped with this value).
pub enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(ScratchDb),
}

impl Database {
    /// A new database: on the PostgreSQL server at `postgres` if given, else SQLite.
    pub async fn fresh(postgres: Option<&str>) -> anyhow::Result<Database> {
        Ok(match postgres {
            Some(server) => Database::Postgres(ScratchDb::create(server).await?),
            None => Database::Sqlite(tempfile::tempdir()?),
        })
    }

    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(dir) => format!("sqlite://{}", dir.path().join("bench.db").display()),
            Database::Postgres(db) => db.url.clone(),
        }
    }

    /// Bytes the database takes (SQLite: the file and its WAL).
    pub async fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            Database::Sqlite(dir) => Ok(sqlite_bytes(dir.path())),
            Database::Postgres(db) => db.size().await,
        }
    }
}

fn sqlite_bytes(dir: &Path) -> u64 {
    ["bench.db", "bench.db-wal", "bench.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// SIGTERM, then wait (bounded); SIGKILL if it does not exit.
pub async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Starts `herald worker` on `database`; it ends with the returned value.
pub fn start_worker(exe: &PathBuf, database: &str) -> anyhow::Result<Child> {
    Command::new(exe)
        .args(["worker", "--database", database])
        .env("RUST_LOG", "warn")
        .env("HERALD_POSTGRES__IDENTITY_FILE", "")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} worker", exe.display()))
}

impl Herald {
    /// Starts `herald serve` on port 0 and waits until it listens.
    pub async fn start(exe: &PathBuf, database: &str, worker: bool) -> anyhow::Result<Herald> {
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .env("HERALD_ADMIN_TOKEN", TOKEN)
            .env("HERALD_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .env("HERALD_POSTGRES__IDENTITY_FILE", "")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if !worker {
            cmd.arg("--no-worker");
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id().context("herald exited at once")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("Herald listening on ") {
                    return Ok(url.trim_end_matches("/api/").to_string());
                }
            }
            bail!("herald exited before listening")
        })
        .await
        .context("herald did not start within 60 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Herald {
            child,
            pid,
            base,
            client,
        })
    }

    /// Resident memory now and at its peak, in KiB (from /proc).
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// SIGTERM, then wait (bounded); SIGKILL if it does not exit.
    pub async fn stop(self) {
        stop(self.child).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status}: {value}");
        }
        Ok(value)
    }

    pub async fn create_webhook(&self, name: &str, url: &str, timeout: u32) -> anyhow::Result<()> {
        self.post(
            "/api/extras/webhooks/",
            &json!({"name": name, "content_types": ["dcim.site"], "type_create": true,
                    "payload_url": url, "secret": super::receiver::SECRET, "timeout": timeout}),
        )
        .await
        .map(|_| ())
    }
}

/// A realistic site-created event numbered `n` (its `data.id`).
pub fn event(n: u64) -> Value {
    json!({
        "event": "created",
        "timestamp": "2026-11-29T12:00:00.000000+00:00",
        "object_type": "dcim.site",
        "username": "bench",
        "request_id": "fdbca812-3142-4783-b364-2e2bd5c16c6a",
        "data": {
            "id": n, "url": format!("/api/dcim/sites/{n}/"), "display": format!("Site {n}"),
            "name": format!("Site {n}"), "slug": format!("site-{n}"),
            "status": {"value": "active", "label": "Active"},
            "region": {"id": 1, "url": "/api/dcim/regions/1/", "display": "Europe", "name": "Europe", "slug": "europe"},
            "tenant": null, "facility": "DC-1", "time_zone": "Europe/Zurich", "description": "",
            "comments": "", "tags": [{"id": 1, "url": "/api/extras/tags/1/", "display": "core", "name": "core", "slug": "core", "color": "9e9e9e"}],
            "custom_fields": {}, "created": "2026-11-29T12:00:00.000000+00:00", "last_updated": "2026-11-29T12:00:00.000000+00:00"
        },
        "snapshots": {"prechange": null, "postchange": {"name": format!("Site {n}"), "slug": format!("site-{n}"), "status": "active", "tags": ["core"]}}
    })
}

/// Posts events `from..to` in batches of `batch`, `parallel` requests at a time.
pub async fn post_events(h: &Herald, from: u64, to: u64, batch: u64, parallel: usize) -> anyhow::Result<()> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    let mut start = from;
    while start < to {
        let end = (start + batch).min(to);
        // Each event written as NetBox writes its webhook bodies (Python's `json.dumps`): the
        // relay re-sends them as they came.
        let body = format!(
            "[{}]",
            (start..end)
                .map(|n| herald::python::json::dumps(&event(n)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let permit = sem.clone().acquire_owned().await?;
        let (client, base) = (h.client.clone(), h.base.clone());
        tasks.spawn(async move {
            let resp = client
                .post(format!("{base}/api/extras/events/"))
                .header("Authorization", format!("Token {TOKEN}"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await;
            drop(permit);
            match resp {
                Ok(r) if r.status().as_u16() == 202 => Ok(()),
                Ok(r) => Err(anyhow::anyhow!("events: {}", r.status())),
                Err(e) => Err(anyhow::Error::new(e)),
            }
        });
        start = end;
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
