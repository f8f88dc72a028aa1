//! Running the real `herald` binary as a separate process on a fresh database, and talking to it.

use anyhow::{bail, Context};
pub use herald_testkit::database::Database;
pub use herald_testkit::process::stop;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio::process::Child;

pub const TOKEN: &str = "b3nchb3nchb3nchb3nchb3nchb3nchb3nchb3nch";
/// The password of `admin`, for the pages.
pub const PASSWORD: &str = "b3nch-pa55word";

pub struct Herald {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub client: reqwest::Client,
}

/// Starts `herald worker` on `database`; it ends with the returned value.
pub fn start_worker(exe: &Path, database: &str) -> anyhow::Result<Child> {
    herald_testkit::process::worker(exe, database, &[("RUST_LOG", "warn")])
}

impl Herald {
    /// Starts `herald serve` on port 0 and waits until it listens.
    pub async fn start(exe: &Path, database: &str, worker: bool) -> anyhow::Result<Herald> {
        Herald::start_with(exe, database, worker, &[]).await
    }

    /// `start` with more environment (`HERALD_*` settings).
    pub async fn start_with(exe: &Path, database: &str, worker: bool, more: &[(&str, &str)]) -> anyhow::Result<Herald> {
        let args: &[&str] = if worker { &[] } else { &["--no-worker"] };
        let mut env = vec![
            ("HERALD_ADMIN_TOKEN", TOKEN),
            ("HERALD_ADMIN_PASSWORD", PASSWORD),
            ("RUST_LOG", "warn"),
        ];
        env.extend_from_slice(more);
        let (child, base) = herald_testkit::process::serve(exe, database, args, &env, Duration::from_secs(60)).await?;
        let pid = child.id().context("herald exited at once")?;
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
        herald_testkit::process::rss_kib(self.pid)
    }

    /// SIGTERM, then wait (bounded); SIGKILL if it does not exit.
    pub async fn stop(self) {
        stop(self.child).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        self.call("POST", path, request).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// Sends `request` as the admin; its JSON, or an error naming `method path` and the status.
    async fn call(&self, method: &str, path: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = request.header("Authorization", format!("Token {TOKEN}")).send().await?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path}: {status}: {value}");
        }
        Ok(value)
    }

    pub async fn create_webhook(&self, name: &str, url: &str, timeout: u32) -> anyhow::Result<()> {
        self.create_webhook_with(name, url, timeout, json!({})).await
    }

    /// `create_webhook` with more fields (`{"ordered": true}`, ...).
    pub async fn create_webhook_with(&self, name: &str, url: &str, timeout: u32, more: Value) -> anyhow::Result<()> {
        let mut body = json!({"name": name, "content_types": ["dcim.site"], "type_create": true,
                              "payload_url": url, "secret": super::receiver::SECRET, "timeout": timeout});
        if let (Some(b), Some(m)) = (body.as_object_mut(), more.as_object()) {
            b.extend(m.clone());
        }
        self.post("/api/extras/webhooks/", &body).await.map(|_| ())
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
    post_made(h, from, to, batch, parallel, event).await
}

/// `post_events` with each event made by `make` from its number.
pub async fn post_made(
    h: &Herald,
    from: u64,
    to: u64,
    batch: u64,
    parallel: usize,
    make: fn(u64) -> Value,
) -> anyhow::Result<()> {
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
                .map(|n| herald::python::json::dumps(&make(n)))
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
