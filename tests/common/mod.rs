//! Shared test harness: a real Herald in this process on port 0 with a fresh database of the
//! backend each test names (`Backend`), real HTTP(S) receivers that record what they get, and
//! the `herald` binary as a child process (`process`). What the benchmark shares with the
//! tests comes from `herald-testkit`.
//!
//! Tests that hold on every backend are written once, taking a `Backend`, and listed in
//! `on_each_backend!`: each then runs on SQLite and on the PostgreSQL server named by
//! `HERALD_TEST_POSTGRES_URL` (skipped, saying so, without one; failed instead when
//! `HERALD_TEST_REQUIRE_POSTGRES` is set, as in CI).
#![allow(dead_code)]

pub mod process;

use herald::config::Config;
use herald::server::App;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use herald_testkit::database::Backend;
pub use herald_testkit::postgres;
#[allow(unused_imports)]
pub use herald_testkit::receiver::{wait_for, Behavior, Received, Recorder as TestReceiver, Tls};

/// Runs each named test (`async fn name(backend: Backend)`) on SQLite and on PostgreSQL, as
/// `sqlite::name` and `postgres::name`; those after `multi_thread:` on a runtime of two
/// threads.
#[macro_export]
macro_rules! on_each_backend {
    ($($name:ident),* $(,)? $(; multi_thread: $($multi:ident),* $(,)?)?) => {
        $crate::on_each_backend!(@backend sqlite, Sqlite, [$($name),*], [$($($multi),*)?]);
        $crate::on_each_backend!(@backend postgres, Postgres, [$($name),*], [$($($multi),*)?]);
    };
    (@backend $module:ident, $backend:ident, [$($name:ident),*], [$($multi:ident),*]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(b) = $crate::common::backend($crate::common::Backend::$backend) {
                        super::$name(b).await;
                    }
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $multi() {
                    if let Some(b) = $crate::common::backend($crate::common::Backend::$backend) {
                        super::$multi(b).await;
                    }
                }
            )*
        }
    };
}

/// `backend`, when it can be tested here: PostgreSQL only with a server to test on.
pub fn backend(backend: Backend) -> Option<Backend> {
    match backend {
        Backend::Sqlite => Some(backend),
        Backend::Postgres => postgres::server_url("a test on PostgreSQL").map(|_| backend),
    }
}

/// Where a test keeps its data: a temporary folder (with the SQLite file, `herald.db`), and
/// the PostgreSQL database when the test runs there.
pub struct DataDir {
    dir: tempfile::TempDir,
    db: Option<postgres::ScratchDb>,
}

impl DataDir {
    /// A fresh folder, and a fresh database on `backend`.
    pub async fn new(backend: Backend) -> DataDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let server = postgres::server_url("a test on PostgreSQL").expect("a PostgreSQL server to test on");
                Some(postgres::scratch_db(&server).await)
            }
        };
        DataDir { dir, db }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn on_postgres(&self) -> bool {
        self.db.is_some()
    }

    pub fn database_url(&self) -> String {
        match &self.db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.path().join("herald.db").display()),
        }
    }

    /// Test settings: quiet logs unless TEST_LOG, no retries unless asked for.
    pub fn config(&self) -> Config {
        let mut config = Config::defaults();
        config.database_url = self.database_url();
        config.postgres.pool_size = 4;
        config.postgres.identity_file = self.path().join("herald-postgres.id").display().to_string();
        config.worker.retry_schedule = Vec::new();
        config.worker.poll_interval_secs = 0.05;
        config.worker.throttle_backoff_secs = 0.0;
        config.worker.shutdown_grace_secs = 2.0;
        // Templates render in `herald sandbox` children: the binary, not this test program.
        config.templates.program = env!("CARGO_BIN_EXE_herald").into();
        config
    }

    /// Runs `statements` on the database directly.
    pub async fn execute(&self, statements: &str) {
        match &self.db {
            Some(db) => {
                let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                client.batch_execute(statements).await.unwrap();
            }
            None => {
                let db = rusqlite::Connection::open(self.path().join("herald.db")).unwrap();
                db.execute_batch(statements).unwrap();
            }
        }
    }

    /// The first column of each row of `query`, as text, read from the database directly.
    pub async fn strings(&self, query: &str) -> Vec<String> {
        match &self.db {
            Some(db) => {
                let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                let rows = client.query(query, &[]).await.unwrap();
                rows.iter().map(|r| r.get::<_, String>(0)).collect()
            }
            None => {
                let db = rusqlite::Connection::open(self.path().join("herald.db")).unwrap();
                let mut stmt = db.prepare(query).unwrap();
                let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
                rows.map(Result::unwrap).collect()
            }
        }
    }
}

/// A running Herald with an admin token.
pub struct TestApp {
    pub base: String,
    pub token: String,
    pub read_only_token: String,
    pub client: reqwest::Client,
    pub dir: DataDir,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("debug,hyper=info").try_init();
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}).await
    }

    /// Starts Herald on `backend` after `tweak` adjusts its config.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        init_logs();
        let dir = DataDir::new(backend).await;
        let mut config = dir.config();
        tweak(&mut config);
        let app = App::open(config).await.expect("open Herald");
        let svc = app.services();
        let admin = svc.add_user("admin", "admin-password", true).await.unwrap();
        let token = svc.add_token(admin, None, true, "test").await.unwrap().key;
        let reader = svc.add_user("reader", "reader-password", false).await.unwrap();
        // The reader may view the inventory, webhooks, deliveries and the change log.
        let mut types: Vec<String> = svc.catalog.types().iter().map(|t| t.name().to_string()).collect();
        types.extend(["extras.webhook", "extras.delivery", "extras.event", "core.objectchange"].map(String::from));
        let view = json!({"name": "view everything but users", "object_types": types,
                          "actions": ["view"], "users": [reader.id]});
        svc.create_permission(&herald::auth::Actor::system(), &view)
            .await
            .unwrap();
        let read_only_token = svc.add_token(reader, None, false, "test").await.unwrap().key;
        TestApp::serve(app, dir, token, read_only_token).await
    }

    /// Starts Herald again on the data of one stopped (its tokens still work).
    pub async fn reopen(dir: DataDir, token: String, read_only_token: String) -> TestApp {
        let app = App::open(dir.config()).await.expect("open Herald again");
        TestApp::serve(app, dir, token, read_only_token).await
    }

    async fn serve(app: App, dir: DataDir, token: String, read_only_token: String) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.serve(listener, true, shutdown.clone()));
        TestApp {
            base,
            token,
            read_only_token,
            client: reqwest::Client::new(),
            dir,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the server and its worker, waiting for in-flight work; returns the data folder.
    pub async fn stop(mut self) -> DataDir {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `method path` with the admin token and an optional JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), self.url(path))
            .header("Authorization", format!("Token {token}"));
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("request to Herald");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Sends a raw body.
    pub async fn raw(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let resp = self
            .client
            .request(method.parse().unwrap(), self.url(path))
            .header("Authorization", format!("Token {}", self.token))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a webhook from `fields` over sensible defaults; panics unless 201.
    pub async fn create_webhook(&self, fields: Value) -> Value {
        let mut body = json!({"name": format!("hook-{}", uuid::Uuid::new_v4()), "content_types": ["dcim.site"], "type_create": true});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, created) = self.call("POST", "/api/extras/webhooks/", Some(body)).await;
        assert_eq!(status, 201, "creating webhook: {created}");
        created
    }

    /// Posts events; panics unless 202. Returns the response.
    pub async fn send_events(&self, events: Value) -> Value {
        let (status, body) = self.call("POST", "/api/extras/events/", Some(events)).await;
        assert_eq!(status, 202, "posting events: {body}");
        body
    }

    /// Waits until the delivery reaches a final state; returns its detail.
    pub async fn wait_delivery_done(&self, id: i64) -> Value {
        wait_for(Duration::from_secs(30), &format!("delivery {id} to finish"), || async {
            let (_, d) = self.call("GET", &format!("/api/extras/deliveries/{id}/"), None).await;
            matches!(d["status"]["value"].as_str(), Some("succeeded" | "failed")).then_some(d)
        })
        .await
    }

    /// The ids of the deliveries of `webhook_id`.
    pub async fn delivery_ids(&self, webhook_id: i64) -> Vec<i64> {
        let (_, list) = self
            .call(
                "GET",
                &format!("/api/extras/deliveries/?webhook_id={webhook_id}&limit=0"),
                None,
            )
            .await;
        list["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_i64().unwrap())
            .collect()
    }
}

/// Logs in through the form at `base`, going on to `next`: the client (following no redirects), where
/// the answer sends the browser, and the session cookie.
pub async fn log_in(base: &str, username: &str, password: &str, next: &str) -> (reqwest::Client, String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(format!("{base}/login/")).send().await.unwrap();
    let cookie = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.split(';').next().filter(|kv| kv.starts_with(name)).map(String::from))
    };
    let login_cookie = cookie(&page, "herald_login_csrf=").expect("a login token cookie");
    let token = login_cookie.split_once('=').unwrap().1.to_string();
    let answer = client
        .post(format!("{base}/login/"))
        .header("Cookie", &login_cookie)
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", username),
            ("password", password),
            ("next", next),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "logged in as {username}");
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    let session = cookie(&answer, "herald_session=").expect("a session cookie");
    (client, location, session)
}

/// `url`s made relative, as webhook payloads carry them.
pub fn relative(mut v: Value, base: &str) -> Value {
    fn walk(v: &mut Value, base: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match x {
                        Value::String(s) if k == "url" || k == "display_url" => *s = s.replacen(base, "", 1),
                        _ => walk(x, base),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, base)),
            _ => {}
        }
    }
    walk(&mut v, base);
    v
}

/// A site event as NetBox would forward it.
pub fn site_event(kind: &str, id: i64, name: &str) -> Value {
    json!({
        "event": kind,
        "timestamp": "2020-02-25T15:10:26.010582+00:00",
        "model": "site",
        "username": "jstretch",
        "request_id": "fdbca812-3142-4783-b364-2e2bd5c16c6a",
        "data": {"id": id, "url": format!("/api/dcim/sites/{id}/"), "name": name, "slug": name.to_lowercase().replace(' ', "-"),
                 "status": {"value": "active", "label": "Active"}, "region": null, "tags": []},
        "snapshots": {"prechange": null, "postchange": {"name": name, "status": "active"}}
    })
}
