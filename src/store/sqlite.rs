//! The SQLite store: one file in WAL mode. Each connection lives on its own thread and runs
//! whole units of work sent to it as closures, so a transaction of many statements costs one
//! hand-off between threads, not one per statement. Writes go through a single connection
//! (SQLite has one writer; queueing them in-process avoids lock retries) and begin IMMEDIATE so
//! other processes on the same file wait instead of failing; reads use a few connections.
//! `synchronous=NORMAL` in WAL mode keeps every commit across a process crash (kill -9).

#[path = "sqlite_objects.rs"]
mod objects;

use super::{
    Attempt, ClaimLimits, Claimed, Delivery, DeliveryFilter, Outcome, QueueStats, Recorded, Result, Status, Store,
    StoreError, Token, User,
};
use crate::catalog::Catalog;
use crate::events::{Event, EventKind};
use crate::objects::engine::{WriteError, WriteRequest, Written};
use crate::objects::query::ObjectQuery;
use crate::objects::{Change, ChangeFilter, Obj, ObjectTx};
use crate::webhooks::Webhook;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Rows per multi-row statement, well under SQLite's bound-parameter limit.
const CHUNK: usize = 500;

/// Reading connections (each on its own thread).
const READERS: usize = 4;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Connections on their own threads, taking jobs from one queue.
struct Lane {
    jobs: mpsc::Sender<Job>,
}

impl Lane {
    fn open(connections: Vec<Connection>, name: &str) -> Lane {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for (i, mut conn) in connections.into_iter().enumerate() {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("herald-{name}-{i}"))
                .spawn(move || loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&mut conn),
                        Err(_) => return,
                    }
                })
                .expect("start a database thread");
        }
        Lane { jobs }
    }

    /// Runs `f` on one of the lane's connections.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the database thread has stopped")))?;
        rx.await
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the database thread stopped mid-job")))?
    }
}

pub struct SqliteStore {
    write: Lane,
    read: Lane,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// `NotFound` when a statement touched no row.
fn found(rows: usize) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// How a broken foreign key shows in `StoreError::Conflict`.
const FOREIGN_KEY: &str = "foreign key: ";

fn other(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    match e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::SqliteFailure(f, msg) => {
            let text = msg.unwrap_or_else(|| f.to_string());
            match f.extended_code {
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::Conflict(format!("{FOREIGN_KEY}{text}")),
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => StoreError::Conflict(text),
                _ => StoreError::Other(anyhow::anyhow!("SQLite: {text}")),
            }
        }
        e => StoreError::Other(anyhow::Error::new(e)),
    }
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Other(anyhow::Error::new(e).context("stored JSON is invalid"))
}

/// A statement built piece by piece, with its arguments.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<SqlValue>,
}

impl Sql {
    fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, v: impl Into<SqlValue>) -> &mut Sql {
        self.text.push('?');
        self.args.push(v.into());
        self
    }

    /// `(?, ?, ...)` for `ids`.
    fn ids(&mut self, ids: &[i64]) -> &mut Sql {
        self.text.push('(');
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(*id);
        }
        self.text.push(')');
        self
    }

    /// `(?, ?, ...)` for `values`.
    fn list<V: Into<SqlValue> + Clone>(&mut self, values: &[V]) -> &mut Sql {
        self.text.push('(');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v.clone());
        }
        self.text.push(')');
        self
    }

    fn execute(&self, conn: &Connection) -> Result<usize> {
        conn.prepare_cached(&self.text)
            .and_then(|mut s| s.execute(params_from_iter(self.args.iter())))
            .map_err(other)
    }

    fn rows<T>(&self, conn: &Connection, map: impl FnMut(&Row<'_>) -> Result<T>) -> Result<Vec<T>> {
        let mut map = map;
        let mut stmt = conn.prepare_cached(&self.text).map_err(other)?;
        let mut rows = stmt.query(params_from_iter(self.args.iter())).map_err(other)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(other)? {
            out.push(map(row)?);
        }
        Ok(out)
    }

    fn scalar<T: rusqlite::types::FromSql>(&self, conn: &Connection) -> Result<T> {
        conn.prepare_cached(&self.text)
            .and_then(|mut s| s.query_row(params_from_iter(self.args.iter()), |r| r.get(0)))
            .map_err(other)
    }
}

fn col<T: rusqlite::types::FromSql>(row: &Row<'_>, name: &str) -> Result<T> {
    row.get(name).map_err(other)
}

/// Runs `f` in a write transaction (BEGIN IMMEDIATE), committing on success.
/// `E` is any error a storage error converts into (object writes fail with field errors too).
fn immediate<T, E: From<StoreError>>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(other)?;
    let result = f(conn).and_then(|v| conn.execute_batch("COMMIT").map_err(|e| E::from(other(e))).map(|_| v));
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Drives a future that never waits (object writes over a connection already in hand).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// The migrations, in order.
const MIGRATIONS: [(i64, &str, &str); 3] = [
    (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, "retries", include_str!("../../migrations/sqlite/0002_retries.sql")),
    (3, "objects", include_str!("../../migrations/sqlite/0003_objects.sql")),
];

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "create table if not exists herald_migrations (version integer primary key, name text not null, applied_at integer not null)",
    )
    .map_err(other)?;
    let mut applied: Vec<i64> = Sql::new("select version from herald_migrations").rows(conn, |r| col(r, "version"))?;
    // Databases made by earlier builds recorded their migrations in `_sqlx_migrations`.
    let legacy: bool =
        Sql::new("select count(*) from sqlite_master where name = '_sqlx_migrations'").scalar::<i64>(conn)? > 0;
    if legacy {
        applied.extend(
            Sql::new("select version from _sqlx_migrations where success = 1")
                .rows(conn, |r| col::<i64>(r, "version"))?,
        );
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        immediate::<_, StoreError>(conn, |c| {
            c.execute_batch(sql).map_err(other)?;
            c.execute(
                "insert or replace into herald_migrations (version, name, applied_at) values (?, ?, ?)",
                params![version, name, micros(Utc::now())],
            )
            .map_err(other)?;
            Ok(())
        })
        .map_err(|e| StoreError::Other(anyhow::anyhow!("migration {version} ({name}) failed: {e}")))?;
    }
    Ok(())
}

/// The file named by a `sqlite:` URL (`sqlite://path`, `sqlite:path`, `sqlite::memory:`).
fn path_of(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| anyhow::anyhow!("bad SQLite URL {url:?}: expected sqlite://PATH"))?;
    let path = rest.split('?').next().unwrap_or_default();
    anyhow::ensure!(!path.is_empty(), "bad SQLite URL {url:?}: no path");
    Ok(path.to_string())
}

fn connect(path: &str, cache_kib: i64) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).map_err(|e| anyhow::anyhow!("cannot open database {path}: {e}"))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    if path != ":memory:" {
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "{path}: cannot use WAL mode (got {mode})"
        );
    }
    conn.create_scalar_function(
        "herald_ip_key",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8 | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let text: Option<String> = ctx.get(0)?;
            Ok(text.and_then(|t| crate::objects::values::ip_sort_key(&t)))
        },
    )?;
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`.
    pub async fn open(url: &str) -> anyhow::Result<SqliteStore> {
        let path = path_of(url)?;
        let memory = path == ":memory:";
        // Page cache: 8 MiB for the writer, SQLite's default 2 MiB for each reader.
        let writer = connect(&path, 8000)?;
        if memory {
            // One in-memory database: the same connection reads and writes.
            let write = Lane::open(vec![writer], "db");
            let read = Lane {
                jobs: write.jobs.clone(),
            };
            return Ok(SqliteStore { write, read });
        }
        let readers = (0..READERS)
            .map(|_| connect(&path, 2000))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SqliteStore {
            write: Lane::open(vec![writer], "writer"),
            read: Lane::open(readers, "reader"),
        })
    }

    async fn delete_row(&self, table: &'static str, id: i64) -> Result<()> {
        self.write
            .run(move |c| {
                let n = c
                    .execute(&format!("delete from {table} where id = ?"), params![id])
                    .map_err(other)?;
                found(n)
            })
            .await
    }
}

/// Enabled webhooks, read in the write transaction: a webhook change committed before the
/// request is seen, as in any later transaction.
fn enabled_webhooks(conn: &Connection) -> Result<Vec<Webhook>> {
    Sql::new("select * from webhooks where enabled = 1").rows(conn, webhook_from_row)
}

fn webhook_from_row(row: &Row<'_>) -> Result<Webhook> {
    let types: String = col(row, "content_types")?;
    let json_opt = |name: &str| -> Result<Option<String>> { col(row, name) };
    Ok(Webhook {
        id: col(row, "id")?,
        name: col(row, "name")?,
        content_types: serde_json::from_str(&types).map_err(json_err)?,
        type_create: col(row, "type_create")?,
        type_update: col(row, "type_update")?,
        type_delete: col(row, "type_delete")?,
        enabled: col(row, "enabled")?,
        payload_url: col(row, "payload_url")?,
        http_method: col(row, "http_method")?,
        http_content_type: col(row, "http_content_type")?,
        additional_headers: col(row, "additional_headers")?,
        body_template: col(row, "body_template")?,
        secret: col(row, "secret")?,
        ssl_verification: col(row, "ssl_verification")?,
        ca_file_path: col(row, "ca_file_path")?,
        timeout: col::<i64>(row, "timeout")? as u32,
        retry_schedule: match json_opt("retry_schedule")? {
            Some(text) => Some(serde_json::from_str(&text).map_err(json_err)?),
            None => None,
        },
        conditions: match json_opt("conditions")? {
            Some(text) => Some(serde_json::from_str(&text).map_err(json_err)?),
            None => None,
        },
        created: from_micros(col(row, "created_at")?),
        last_updated: from_micros(col(row, "updated_at")?),
    })
}

/// An event row as stored, its JSON not parsed yet.
struct RawEvent {
    id: i64,
    kind: String,
    timestamp: String,
    object_type: String,
    username: String,
    request_id: String,
    data: String,
    snapshots: String,
}

impl RawEvent {
    fn from_row(row: &Row<'_>) -> Result<RawEvent> {
        Ok(RawEvent {
            id: col(row, "id")?,
            kind: col(row, "event")?,
            timestamp: col(row, "timestamp")?,
            object_type: col(row, "object_type")?,
            username: col(row, "username")?,
            request_id: col(row, "request_id")?,
            data: col(row, "data")?,
            snapshots: col(row, "snapshots")?,
        })
    }

    fn parse(self) -> Result<Event> {
        let kind = self.kind;
        Ok(Event {
            id: self.id,
            kind: EventKind::parse(&kind)
                .ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad event kind {kind:?}")))?,
            timestamp: self.timestamp,
            object_type: self.object_type,
            username: self.username,
            request_id: self.request_id,
            data: serde_json::from_str(&self.data).map_err(json_err)?,
            snapshots: serde_json::from_str(&self.snapshots).map_err(json_err)?,
        })
    }
}

fn event_from_row(row: &Row<'_>) -> Result<Event> {
    RawEvent::from_row(row)?.parse()
}

fn delivery_from_row(row: &Row<'_>) -> Result<Delivery> {
    let status: String = col(row, "status")?;
    Ok(Delivery {
        id: col(row, "id")?,
        event_id: col(row, "event_id")?,
        webhook_id: col(row, "webhook_id")?,
        webhook_name: col(row, "webhook_name")?,
        event_kind: col(row, "event")?,
        object_type: col(row, "object_type")?,
        status: Status::parse(&status).ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad status {status:?}")))?,
        attempts: col(row, "attempts")?,
        next_attempt_at: from_micros(col(row, "next_attempt_at")?),
        created: from_micros(col(row, "created_at")?),
        last_updated: from_micros(col(row, "updated_at")?),
        last_error: col(row, "last_error")?,
        last_status_code: col(row, "last_status_code")?,
    })
}

/// The webhook's columns in `WEBHOOK_COLUMNS` order.
fn webhook_values(w: &Webhook) -> Result<Vec<SqlValue>> {
    let text = |s: &str| SqlValue::Text(s.to_string());
    let flag = |b: bool| SqlValue::Integer(b as i64);
    let opt = |s: Option<String>| s.map(SqlValue::Text).unwrap_or(SqlValue::Null);
    Ok(vec![
        text(&w.name),
        SqlValue::Text(serde_json::to_string(&w.content_types).map_err(json_err)?),
        flag(w.type_create),
        flag(w.type_update),
        flag(w.type_delete),
        flag(w.enabled),
        text(&w.payload_url),
        text(&w.http_method),
        text(&w.http_content_type),
        text(&w.additional_headers),
        text(&w.body_template),
        text(&w.secret),
        flag(w.ssl_verification),
        opt(w.ca_file_path.clone()),
        SqlValue::Integer(w.timeout as i64),
        opt(w
            .retry_schedule
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_default())),
        opt(w.conditions.as_ref().map(Value::to_string)),
    ])
}

/// Writes attempts and delivery states for `outcomes`, successes in one statement.
fn write_outcomes(conn: &Connection, outcomes: &[Outcome], now_us: i64) -> Result<()> {
    let mut insert = conn
        .prepare_cached(
            "insert into attempts (delivery_id, started_at, duration_us, request_method, request_url, request_headers, \
             request_body, response_status, response_headers, response_body, error) \
             values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .map_err(other)?;
    for a in outcomes.iter().filter_map(|o| o.attempt.as_ref()) {
        insert
            .execute(params![
                a.delivery_id,
                micros(a.started),
                (a.duration_ms * 1000.0) as i64,
                a.request_method,
                a.request_url,
                serde_json::to_string(&a.request_headers).map_err(json_err)?,
                a.request_body,
                a.response_status.map(i64::from),
                serde_json::to_string(&a.response_headers).map_err(json_err)?,
                a.response_body,
                a.error,
            ])
            .map_err(other)?;
    }
    let mut success = conn
        .prepare_cached(
            "update deliveries set status = 'succeeded', last_error = null, updated_at = ?1, next_attempt_at = ?1, \
             last_status_code = ?2 where id = ?3 and status = 'in_flight'",
        )
        .map_err(other)?;
    let mut failure = conn
        .prepare_cached(
            "update deliveries set status = ?, last_error = ?, last_status_code = ?, next_attempt_at = ?, updated_at = ? \
             where id = ? and status = 'in_flight'",
        )
        .map_err(other)?;
    for o in outcomes {
        if o.status == Status::Succeeded {
            success
                .execute(params![now_us, o.status_code.map(i64::from), o.delivery_id])
                .map_err(other)?;
        } else {
            failure
                .execute(params![
                    o.status.as_str(),
                    o.error,
                    o.status_code.map(i64::from),
                    o.next_attempt_at.map(micros).unwrap_or(now_us),
                    now_us,
                    o.delivery_id,
                ])
                .map_err(other)?;
        }
    }
    Ok(())
}

/// Appends ` where ...` for `f` to a query over `deliveries d`.
fn push_filter(sql: &mut Sql, f: &DeliveryFilter) {
    sql.push(" where 1 = 1");
    if !f.id.is_empty() {
        sql.push(" and d.id in ").ids(&f.id);
    }
    if !f.webhook_id.is_empty() {
        sql.push(" and d.webhook_id in ").ids(&f.webhook_id);
    }
    for (column, values) in [
        (
            "d.status",
            f.status.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>(),
        ),
        ("d.object_type", f.object_type.clone()),
        ("d.event", f.event.clone()),
    ] {
        if !values.is_empty() {
            sql.push(&format!(" and {column} in ")).list(&values);
        }
    }
    if let Some(since) = f.since {
        sql.push(" and d.created_at >= ").bind(micros(since));
    }
}

/// Inserts events and one queued delivery per matching webhook, in the caller's transaction.
/// Events no webhook matches are stored only when `keep_unmatched` (events posted to the API
/// are answered with their ids; object changes are in the change log already).
fn insert_events(
    conn: &Connection,
    matcher: &crate::webhooks::Matcher<'_>,
    events: &[Event],
    now: DateTime<Utc>,
    keep_unmatched: bool,
) -> Result<Vec<Recorded>> {
    let now_us = micros(now);
    let mut event_stmt = conn
        .prepare_cached(
            "insert into events (event, timestamp, object_type, username, request_id, data, snapshots, created_at) \
             values (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .map_err(other)?;
    let mut delivery_stmt = conn
        .prepare_cached(
            "insert into deliveries (event_id, webhook_id, event, object_type, status, attempts, next_attempt_at, \
             created_at, updated_at) values (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5, ?5)",
        )
        .map_err(other)?;
    let mut recorded = Vec::with_capacity(events.len());
    for e in events {
        let webhooks: Vec<i64> = matcher.matching(e).map(|w| w.id).collect();
        if webhooks.is_empty() && !keep_unmatched {
            continue;
        }
        event_stmt
            .execute(params![
                e.kind.as_str(),
                e.timestamp,
                e.object_type,
                e.username,
                e.request_id,
                serde_json::to_string(&e.data).map_err(json_err)?,
                serde_json::to_string(&e.snapshots).map_err(json_err)?,
                now_us,
            ])
            .map_err(other)?;
        let event_id = conn.last_insert_rowid();
        for webhook_id in &webhooks {
            delivery_stmt
                .execute(params![event_id, webhook_id, e.kind.as_str(), e.object_type, now_us])
                .map_err(other)?;
        }
        recorded.push(Recorded {
            event_id,
            deliveries: webhooks.len(),
        });
    }
    Ok(recorded)
}

const USER_SELECT: &str =
    "select id as user_id, username, password_hash, is_superuser, created_at as user_created from users";

const TOKEN_SELECT: &str = "select t.id, t.user_id, t.write_enabled, t.description, t.created_at, u.username, \
     u.password_hash, u.is_superuser, u.created_at as user_created from tokens t join users u on u.id = t.user_id";

fn user_from_row(row: &Row<'_>) -> Result<User> {
    Ok(User {
        id: col(row, "user_id")?,
        username: col(row, "username")?,
        password_hash: col(row, "password_hash")?,
        is_superuser: col(row, "is_superuser")?,
        created: from_micros(col(row, "user_created")?),
    })
}

fn token_from_row(row: &Row<'_>) -> Result<Token> {
    Ok(Token {
        id: col(row, "id")?,
        user_id: col(row, "user_id")?,
        write_enabled: col(row, "write_enabled")?,
        description: col(row, "description")?,
        created: from_micros(col(row, "created_at")?),
    })
}

fn token_and_user(row: &Row<'_>) -> Result<(Token, User)> {
    Ok((token_from_row(row)?, user_from_row(row)?))
}

/// One row, or `NotFound`.
fn one<T>(mut rows: Vec<T>) -> Result<T> {
    if rows.is_empty() {
        Err(StoreError::NotFound)
    } else {
        Ok(rows.swap_remove(0))
    }
}

const WEBHOOK_COLUMNS: &str = "name, content_types, type_create, type_update, type_delete, enabled, payload_url, \
     http_method, http_content_type, additional_headers, body_template, secret, ssl_verification, ca_file_path, timeout, \
     retry_schedule, conditions";

const DELIVERY_SELECT: &str = "select d.id, d.event_id, d.webhook_id, w.name as webhook_name, d.event, d.object_type, \
     d.status, d.attempts, d.next_attempt_at, d.created_at, d.updated_at, d.last_error, d.last_status_code \
     from deliveries d join webhooks w on w.id = d.webhook_id";

fn events_by_id(conn: &Connection, ids: &[i64]) -> Result<Vec<Event>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut sql = Sql::new("select * from events where id in ");
        sql.ids(chunk);
        out.extend(sql.rows(conn, event_from_row)?);
    }
    Ok(out)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        self.write.run(migrate).await
    }

    async fn user_count(&self) -> Result<i64> {
        self.read
            .run(|c| Sql::new("select count(*) from users").scalar(c))
            .await
    }

    async fn create_user(&self, username: &str, password_hash: &str, superuser: bool) -> Result<User> {
        let (username, password_hash) = (username.to_string(), password_hash.to_string());
        let id: i64 = self
            .write
            .run(move |c| {
                c.query_row(
                    "insert into users (username, password_hash, is_superuser, created_at) values (?, ?, ?, ?) returning id",
                    params![username, password_hash, superuser, micros(Utc::now())],
                    |r| r.get(0),
                )
                .map_err(other)
            })
            .await?;
        self.user(id).await
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        let username = username.to_string();
        self.read
            .run(move |c| {
                let mut sql = Sql::new(USER_SELECT);
                sql.push(" where username = ").bind(username);
                one(sql.rows(c, user_from_row)?)
            })
            .await
    }

    async fn user(&self, id: i64) -> Result<User> {
        self.read
            .run(move |c| {
                let mut sql = Sql::new(USER_SELECT);
                sql.push(" where id = ").bind(id);
                one(sql.rows(c, user_from_row)?)
            })
            .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.read
            .run(|c| Sql::new(&format!("{USER_SELECT} order by username")).rows(c, user_from_row))
            .await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write
            .run(move |c| {
                let n = c
                    .execute(
                        "update users set username = ?, password_hash = ?, is_superuser = ? where id = ?",
                        params![user.username, user.password_hash, user.is_superuser, user.id],
                    )
                    .map_err(other)?;
                found(n)
            })
            .await
    }

    async fn delete_user(&self, id: i64) -> Result<()> {
        self.delete_row("users", id).await
    }

    async fn create_token(
        &self,
        user_id: i64,
        key_hash: &str,
        write_enabled: bool,
        description: &str,
    ) -> Result<Token> {
        let (key_hash, description) = (key_hash.to_string(), description.to_string());
        let id: i64 = self
            .write
            .run(move |c| {
                c.query_row(
                    "insert into tokens (user_id, key_hash, write_enabled, description, created_at) values (?, ?, ?, ?, ?) returning id",
                    params![user_id, key_hash, write_enabled, description, micros(Utc::now())],
                    |r| r.get(0),
                )
                .map_err(other)
            })
            .await?;
        Ok(self.token(id).await?.0)
    }

    async fn token_by_hash(&self, key_hash: &str) -> Result<(Token, User)> {
        let key_hash = key_hash.to_string();
        self.read
            .run(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!("{TOKEN_SELECT} where t.key_hash = ?"))
                    .map_err(other)?;
                let mut rows = stmt.query(params![key_hash]).map_err(other)?;
                match rows.next().map_err(other)? {
                    Some(row) => token_and_user(row),
                    None => Err(StoreError::NotFound),
                }
            })
            .await
    }

    async fn token(&self, id: i64) -> Result<(Token, User)> {
        self.read
            .run(move |c| {
                let mut sql = Sql::new(TOKEN_SELECT);
                sql.push(" where t.id = ").bind(id);
                one(sql.rows(c, token_and_user)?)
            })
            .await
    }

    async fn tokens(&self, user_id: Option<i64>) -> Result<Vec<(Token, User)>> {
        self.read
            .run(move |c| {
                let mut sql = Sql::new(TOKEN_SELECT);
                if let Some(u) = user_id {
                    sql.push(" where t.user_id = ").bind(u);
                }
                sql.push(" order by t.id");
                sql.rows(c, token_and_user)
            })
            .await
    }

    async fn delete_token(&self, id: i64) -> Result<()> {
        self.delete_row("tokens", id).await
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read
            .run(|c| Sql::new("select * from webhooks order by name, id").rows(c, webhook_from_row))
            .await
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        self.read
            .run(|c| {
                let mut stmt = c
                    .prepare_cached("select id, updated_at from webhooks order by id")
                    .map_err(other)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(other)?;
                rows.map(|r| r.map(|(id, at)| (id, from_micros(at))).map_err(other))
                    .collect()
            })
            .await
    }

    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>> {
        let ids = ids.to_vec();
        self.read
            .run(move |c| {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let mut sql = Sql::new("select * from webhooks where id in ");
                    sql.ids(chunk);
                    out.extend(sql.rows(c, webhook_from_row)?);
                }
                Ok(out)
            })
            .await
    }

    async fn create_webhooks(&self, webhooks: Vec<Webhook>) -> Result<Vec<Webhook>> {
        self.write
            .run(move |c| {
                immediate(c, |c| {
                    let now = from_micros(micros(Utc::now()));
                    let sql = format!(
                        "insert into webhooks ({WEBHOOK_COLUMNS}, created_at, updated_at) \
                         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning id"
                    );
                    let mut out = Vec::with_capacity(webhooks.len());
                    for mut w in webhooks {
                        let mut values = webhook_values(&w)?;
                        values.push(SqlValue::Integer(micros(now)));
                        values.push(SqlValue::Integer(micros(now)));
                        w.id = c
                            .query_row(&sql, params_from_iter(values.iter()), |r| r.get(0))
                            .map_err(other)?;
                        w.created = now;
                        w.last_updated = now;
                        out.push(w);
                    }
                    Ok(out)
                })
            })
            .await
    }

    async fn update_webhooks(&self, webhooks: Vec<Webhook>) -> Result<Vec<Webhook>> {
        self.write
            .run(move |c| {
                immediate(c, |c| {
                    let now = from_micros(micros(Utc::now()));
                    let sets = WEBHOOK_COLUMNS
                        .split(", ")
                        .map(|col| format!("{col} = ?"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let sql = format!("update webhooks set {sets}, updated_at = ? where id = ?");
                    let mut out = Vec::with_capacity(webhooks.len());
                    for mut w in webhooks {
                        let mut values = webhook_values(&w)?;
                        values.push(SqlValue::Integer(micros(now)));
                        values.push(SqlValue::Integer(w.id));
                        found(c.execute(&sql, params_from_iter(values.iter())).map_err(other)?)?;
                        w.last_updated = now;
                        out.push(w);
                    }
                    Ok(out)
                })
            })
            .await
    }

    async fn delete_webhooks(&self, ids: &[i64]) -> Result<()> {
        let ids = ids.to_vec();
        self.write
            .run(move |c| {
                immediate(c, |c| {
                    for id in ids {
                        found(
                            c.execute("delete from webhooks where id = ?", params![id])
                                .map_err(other)?,
                        )?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn record_events(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        self.write
            .run(move |c| {
                immediate(c, |c| {
                    let webhooks = enabled_webhooks(c)?;
                    let matcher = crate::webhooks::Matcher::new(&webhooks);
                    insert_events(c, &matcher, &events, now, true)
                })
            })
            .await
    }

    async fn write_objects(
        &self,
        catalog: Arc<Catalog>,
        req: WriteRequest,
    ) -> std::result::Result<(Written, usize), WriteError> {
        self.write
            .run(move |c| {
                Ok(immediate(c, |c| {
                    let webhooks = enabled_webhooks(c)?;
                    let matcher = crate::webhooks::Matcher::new(&webhooks);
                    let mut otx = objects::SqliteObjectTx { conn: c };
                    let written = block_on(crate::objects::engine::apply(&catalog, &mut otx, &req))?;
                    block_on(otx.add_changes(&written.changes))?;
                    let recorded = insert_events(c, &matcher, &written.events, req.now, false)?;
                    Ok::<_, WriteError>((written, recorded.iter().map(|r| r.deliveries).sum::<usize>()))
                }))
            })
            .await?
    }

    async fn list_objects(&self, ty: &str, query: &ObjectQuery, limit: i64, offset: i64) -> Result<(i64, Vec<Obj>)> {
        let (ty, query) = (ty.to_string(), query.clone());
        self.read
            .run(move |c| objects::list(c, &ty, &query, limit, offset))
            .await
    }

    async fn get_objects(&self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        let (ty, ids) = (ty.to_string(), ids.to_vec());
        self.read
            .run(move |c| {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    out.extend(objects::get(c, &ty, chunk)?);
                }
                Ok(out)
            })
            .await
    }

    async fn object_changes(&self, filter: &ChangeFilter, limit: i64, offset: i64) -> Result<(i64, Vec<Change>)> {
        let filter = filter.clone();
        self.read
            .run(move |c| objects::changes(c, &filter, limit, offset))
            .await
    }

    async fn claim(&self, now: DateTime<Utc>, limits: &ClaimLimits, lease_margin_secs: u64) -> Result<Vec<Claimed>> {
        let now_us = micros(now);
        let arms: Vec<(i64, usize)> = limits
            .webhooks
            .iter()
            .map(|id| (*id, limits.of(*id)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if arms.is_empty() {
            return Ok(Vec::new());
        }
        // One index range per webhook: the oldest due of each, then the oldest overall.
        let mut sql = Sql::new("update deliveries set status = 'in_flight', attempts = attempts + 1, updated_at = ");
        sql.bind(now_us)
            .push(", next_attempt_at = ")
            .bind(now_us)
            .push(" + ((select timeout from webhooks w where w.id = deliveries.webhook_id) + ")
            .bind(lease_margin_secs as i64)
            .push(") * 1000000 where id in (select id from (");
        for (i, (webhook_id, arm_limit)) in arms.iter().enumerate() {
            if i > 0 {
                sql.push(" union all ");
            }
            sql.push("select * from (select id, next_attempt_at from deliveries indexed by deliveries_due_webhook where webhook_id = ")
                .bind(*webhook_id)
                .push(" and status in ('queued', 'retrying', 'in_flight') and next_attempt_at <= ")
                .bind(now_us)
                .push(" order by next_attempt_at, id limit ")
                .bind(*arm_limit as i64)
                .push(")");
        }
        sql.push(") order by next_attempt_at, id limit ")
            .bind(limits.total as i64)
            .push(") returning id, event_id, webhook_id, attempts");
        // One job on the writer: the claim, then its events' rows (parsed off the writer).
        let (claimed, raw): (Vec<(i64, i64, i64, i64)>, Vec<RawEvent>) = self
            .write
            .run(move |c| {
                let claimed = sql.rows(c, |r| {
                    Ok((
                        col(r, "id")?,
                        col(r, "webhook_id")?,
                        col(r, "attempts")?,
                        col(r, "event_id")?,
                    ))
                })?;
                let mut event_ids: Vec<i64> = claimed.iter().map(|c: &(i64, i64, i64, i64)| c.3).collect();
                event_ids.sort_unstable();
                event_ids.dedup();
                let mut raw = Vec::with_capacity(event_ids.len());
                for chunk in event_ids.chunks(CHUNK) {
                    let mut q = Sql::new("select * from events where id in ");
                    q.ids(chunk);
                    raw.extend(q.rows(c, RawEvent::from_row)?);
                }
                Ok((claimed, raw))
            })
            .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut events: HashMap<i64, Arc<Event>> = HashMap::with_capacity(raw.len());
        for r in raw {
            let e = r.parse()?;
            events.insert(e.id, Arc::new(e));
        }
        claimed
            .into_iter()
            .map(|(delivery_id, webhook_id, attempt, event_id)| {
                let event = events.get(&event_id).cloned().ok_or(StoreError::NotFound)?;
                Ok(Claimed {
                    delivery_id,
                    webhook_id,
                    attempt,
                    event,
                })
            })
            .collect()
    }

    async fn complete(&self, outcomes: Vec<Outcome>, now: DateTime<Utc>) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now_us = micros(now);
        self.write
            .run(move |c| {
                match immediate(c, |c| write_outcomes(c, &outcomes, now_us)) {
                    Err(StoreError::Conflict(msg)) if msg.starts_with(FOREIGN_KEY) => {}
                    done => return done,
                }
                // Rare: a delivery vanished while in flight (its webhook was deleted). Record the rest.
                immediate(c, |c| {
                    let ids: Vec<i64> = outcomes.iter().map(|o| o.delivery_id).collect();
                    let mut alive = std::collections::HashSet::with_capacity(ids.len());
                    for chunk in ids.chunks(CHUNK) {
                        let mut sql = Sql::new("select id from deliveries where id in ");
                        sql.ids(chunk);
                        alive.extend(sql.rows(c, |r| col::<i64>(r, "id"))?);
                    }
                    let kept: Vec<Outcome> = outcomes
                        .iter()
                        .filter(|o| alive.contains(&o.delivery_id))
                        .cloned()
                        .collect();
                    write_outcomes(c, &kept, now_us)
                })
            })
            .await
    }

    async fn release(&self, delivery_ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        let ids = delivery_ids.to_vec();
        self.write
            .run(move |c| {
                immediate(c, |c| {
                    for chunk in ids.chunks(CHUNK) {
                        let mut sql = Sql::new(
                            "update deliveries set status = 'queued', attempts = max(attempts - 1, 0), next_attempt_at = ",
                        );
                        sql.bind(micros(now)).push(" where status = 'in_flight' and id in ").ids(chunk);
                        sql.execute(c)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = self
            .read
            .run(|c| {
                c.prepare_cached(
                    "select min(next_attempt_at) from deliveries indexed by deliveries_due \
                     where status in ('queued', 'retrying', 'in_flight')",
                )
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(other)
            })
            .await?;
        Ok(next.map(from_micros))
    }

    async fn deliveries(&self, filter: &DeliveryFilter, limit: i64, offset: i64) -> Result<(i64, Vec<Delivery>)> {
        let filter = filter.clone();
        self.read
            .run(move |c| {
                let mut count = Sql::new("select count(*) from deliveries d");
                push_filter(&mut count, &filter);
                let total: i64 = count.scalar(c)?;
                let mut sql = Sql::new(DELIVERY_SELECT);
                push_filter(&mut sql, &filter);
                sql.push(" order by d.id desc limit ")
                    .bind(limit)
                    .push(" offset ")
                    .bind(offset);
                Ok((total, sql.rows(c, delivery_from_row)?))
            })
            .await
    }

    async fn delivery(&self, id: i64) -> Result<Delivery> {
        self.read
            .run(move |c| {
                let mut sql = Sql::new(DELIVERY_SELECT);
                sql.push(" where d.id = ").bind(id);
                one(sql.rows(c, delivery_from_row)?)
            })
            .await
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>> {
        self.read
            .run(move |c| {
                let mut sql = Sql::new("select * from attempts where delivery_id = ");
                sql.bind(delivery_id).push(" order by id");
                sql.rows(c, |row| {
                    let req_h: String = col(row, "request_headers")?;
                    let resp_h: String = col(row, "response_headers")?;
                    Ok(Attempt {
                        delivery_id,
                        started: from_micros(col(row, "started_at")?),
                        duration_ms: col::<i64>(row, "duration_us")? as f64 / 1000.0,
                        request_method: col(row, "request_method")?,
                        request_url: col(row, "request_url")?,
                        request_headers: serde_json::from_str(&req_h).map_err(json_err)?,
                        request_body: col(row, "request_body")?,
                        response_status: col::<Option<i64>>(row, "response_status")?.map(|s| s as u16),
                        response_headers: serde_json::from_str(&resp_h).map_err(json_err)?,
                        response_body: col(row, "response_body")?,
                        error: col(row, "error")?,
                    })
                })
            })
            .await
    }

    async fn event(&self, id: i64) -> Result<Event> {
        self.read.run(move |c| one(events_by_id(c, &[id])?)).await
    }

    async fn queue_counts(&self) -> Result<Vec<(Status, i64)>> {
        self.read.run(queue_counts).await
    }

    async fn queue_stats(&self, since: DateTime<Utc>) -> Result<QueueStats> {
        self.read
            .run(move |c| {
                let counts = queue_counts(c)?;
                let oldest: Option<i64> = c
                    .query_row(
                        "select created_at from deliveries where id = \
                         (select min(id) from deliveries where status in ('queued', 'retrying'))",
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(other)?;
                let failed_attempts: i64 = c
                    .query_row(
                        "select count(*) from attempts where started_at >= ? and error is not null",
                        params![micros(since)],
                        |r| r.get(0),
                    )
                    .map_err(other)?;
                Ok(QueueStats {
                    counts,
                    oldest_waiting: oldest.map(from_micros),
                    failed_attempts,
                })
            })
            .await
    }

    async fn requeue(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64> {
        let mut sql = Sql::new("update deliveries set status = 'queued', next_attempt_at = ");
        sql.bind(micros(now)).push(", updated_at = ").bind(micros(now));
        sql.push(" where id in (select d.id from deliveries d");
        push_filter(&mut sql, filter);
        sql.push(" and d.status != 'in_flight')");
        self.write
            .run(move |c| immediate(c, |c| sql.execute(c)).map(|n| n as u64))
            .await
    }

    async fn delete_deliveries(&self, filter: &DeliveryFilter) -> Result<u64> {
        let mut sql = Sql::new("delete from deliveries where id in (select d.id from deliveries d");
        push_filter(&mut sql, filter);
        sql.push(" and d.status in ('queued', 'retrying', 'failed'))");
        self.write
            .run(move |c| immediate(c, |c| sql.execute(c)).map(|n| n as u64))
            .await
    }

    async fn purge(&self, succeeded_before: DateTime<Utc>, failed_before: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.write
            .run(move |c| {
                immediate(c, |c| {
                    let deliveries = c
                        .execute(
                            "delete from deliveries where id in (select id from deliveries \
                             where (status = 'succeeded' and updated_at < ?1) or (status = 'failed' and updated_at < ?2) limit ?3)",
                            params![micros(succeeded_before), micros(failed_before), limit],
                        )
                        .map_err(other)?;
                    let events = c
                        .execute(
                            "delete from events where id in (select e.id from events e where e.created_at < ?1 \
                             and not exists (select 1 from deliveries d where d.event_id = e.id) limit ?2)",
                            params![micros(succeeded_before), limit],
                        )
                        .map_err(other)?;
                    Ok((deliveries + events) as u64)
                })
            })
            .await
    }

    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.write
            .run(move |c| {
                c.execute(
                    "delete from object_changes where id in (select id from object_changes where time < ? order by id limit ?)",
                    params![micros(before), limit],
                )
                .map(|n| n as u64)
                .map_err(other)
            })
            .await
    }

    async fn worker_heartbeat(&self, id: &str, host: &str, pid: u32, now: DateTime<Utc>) -> Result<()> {
        let (id, host) = (id.to_string(), host.to_string());
        self.write
            .run(move |c| {
                c.execute(
                    "insert into workers (id, host, pid, started_at, seen_at) values (?1, ?2, ?3, ?4, ?4) \
                     on conflict (id) do update set seen_at = excluded.seen_at",
                    params![id, host, i64::from(pid), micros(now)],
                )
                .map(|_| ())
                .map_err(other)
            })
            .await
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.write
            .run(move |c| {
                c.execute("delete from workers where id = ?", params![id])
                    .map(|_| ())
                    .map_err(other)
            })
            .await
    }

    async fn workers_seen_since(&self, since: DateTime<Utc>) -> Result<i64> {
        self.read
            .run(move |c| {
                c.query_row(
                    "select count(*) from workers where seen_at >= ?",
                    params![micros(since)],
                    |r| r.get(0),
                )
                .map_err(other)
            })
            .await
    }
}

fn queue_counts(c: &mut Connection) -> Result<Vec<(Status, i64)>> {
    let rows = Sql::new("select status, count(*) as n from deliveries group by status")
        .rows(c, |r| Ok((col::<String>(r, "status")?, col::<i64>(r, "n")?)))?;
    let mut counts: Vec<(Status, i64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, n) in rows {
        if let Some(slot) = counts.iter_mut().find(|(s, _)| s.as_str() == status) {
            slot.1 = n;
        }
    }
    Ok(counts)
}
