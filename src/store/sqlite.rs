//! The SQLite store: one file in WAL mode. Writes go through a single connection (SQLite has
//! one writer; queueing them in-process avoids lock retries) and begin IMMEDIATE so other
//! processes on the same file wait instead of failing; reads use a small pool.
//! `synchronous=NORMAL` in WAL mode keeps every commit across a process crash (kill -9).

#[path = "sqlite_objects.rs"]
mod objects;

use super::{
    Attempt, ClaimLimits, Claimed, Delivery, DeliveryFilter, Outcome, QueueStats, Recorded, Result, Status, Store,
    StoreError, Token, User,
};
use crate::events::{Event, EventKind};
use crate::objects::engine::{WriteError, WriteRequest, Written};
use crate::objects::query::ObjectQuery;
use crate::objects::{Change, ChangeFilter, Obj, ObjectTx};
use crate::webhooks::Webhook;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Rows per multi-row statement, well under SQLite's bound-parameter limit.
const CHUNK: usize = 500;

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// `NotFound` when a statement touched no row.
fn found(done: &sqlx::sqlite::SqliteQueryResult) -> Result<()> {
    if done.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// How a broken foreign key shows in `StoreError::Conflict`.
const FOREIGN_KEY: &str = "foreign key: ";

fn other(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Conflict(format!("{FOREIGN_KEY}{}", db.message()))
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_string()),
        e => StoreError::Other(anyhow::Error::new(e)),
    }
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Other(anyhow::Error::new(e).context("stored JSON is invalid"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`.
    pub async fn open(url: &str) -> anyhow::Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        // Page cache: 8 MiB for the writer, SQLite's default 2 MiB for each reader.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone().pragma("cache_size", "-8000"))
            .await
            .with_context(|| format!("cannot open database {url}"))?;
        let read = if memory {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.read_only(false))
                .await
                .with_context(|| format!("cannot open database {url}"))?
        };
        Ok(SqliteStore { write, read })
    }

    /// Deletes the row `id` of `table` (a name from this file, never from input).
    async fn delete_row(&self, table: &'static str, id: i64) -> Result<()> {
        let done = sqlx::query(&format!("delete from {table} where id = ?"))
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(other)?;
        found(&done)
    }

    /// Enabled webhooks, read off the writer before a write transaction: a webhook change
    /// committed before the request is seen, as in any later transaction.
    async fn enabled_webhooks(&self) -> Result<Vec<Webhook>> {
        let rows = sqlx::query("select * from webhooks where enabled = 1")
            .fetch_all(&self.read)
            .await
            .map_err(other)?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(other)
    }
}

fn webhook_from_row(row: &SqliteRow) -> Result<Webhook> {
    let types: String = row.try_get("content_types").map_err(other)?;
    Ok(Webhook {
        id: row.try_get("id").map_err(other)?,
        name: row.try_get("name").map_err(other)?,
        content_types: serde_json::from_str(&types).map_err(json_err)?,
        type_create: row.try_get("type_create").map_err(other)?,
        type_update: row.try_get("type_update").map_err(other)?,
        type_delete: row.try_get("type_delete").map_err(other)?,
        enabled: row.try_get("enabled").map_err(other)?,
        payload_url: row.try_get("payload_url").map_err(other)?,
        http_method: row.try_get("http_method").map_err(other)?,
        http_content_type: row.try_get("http_content_type").map_err(other)?,
        additional_headers: row.try_get("additional_headers").map_err(other)?,
        body_template: row.try_get("body_template").map_err(other)?,
        secret: row.try_get("secret").map_err(other)?,
        ssl_verification: row.try_get("ssl_verification").map_err(other)?,
        ca_file_path: row.try_get("ca_file_path").map_err(other)?,
        timeout: row.try_get::<i64, _>("timeout").map_err(other)? as u32,
        retry_schedule: match row.try_get::<Option<String>, _>("retry_schedule").map_err(other)? {
            Some(text) => Some(serde_json::from_str(&text).map_err(json_err)?),
            None => None,
        },
        conditions: match row.try_get::<Option<String>, _>("conditions").map_err(other)? {
            Some(text) => Some(serde_json::from_str(&text).map_err(json_err)?),
            None => None,
        },
        created: from_micros(row.try_get("created_at").map_err(other)?),
        last_updated: from_micros(row.try_get("updated_at").map_err(other)?),
    })
}

fn event_from_row(row: &SqliteRow) -> Result<Event> {
    let kind: String = row.try_get("event").map_err(other)?;
    let data: String = row.try_get("data").map_err(other)?;
    let snapshots: String = row.try_get("snapshots").map_err(other)?;
    Ok(Event {
        id: row.try_get("id").map_err(other)?,
        kind: EventKind::parse(&kind).ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad event kind {kind:?}")))?,
        timestamp: row.try_get("timestamp").map_err(other)?,
        object_type: row.try_get("object_type").map_err(other)?,
        username: row.try_get("username").map_err(other)?,
        request_id: row.try_get("request_id").map_err(other)?,
        data: serde_json::from_str(&data).map_err(json_err)?,
        snapshots: serde_json::from_str(&snapshots).map_err(json_err)?,
    })
}

fn delivery_from_row(row: &SqliteRow) -> Result<Delivery> {
    let status: String = row.try_get("status").map_err(other)?;
    Ok(Delivery {
        id: row.try_get("id").map_err(other)?,
        event_id: row.try_get("event_id").map_err(other)?,
        webhook_id: row.try_get("webhook_id").map_err(other)?,
        webhook_name: row.try_get("webhook_name").map_err(other)?,
        event_kind: row.try_get("event").map_err(other)?,
        object_type: row.try_get("object_type").map_err(other)?,
        status: Status::parse(&status).ok_or_else(|| StoreError::Other(anyhow::anyhow!("bad status {status:?}")))?,
        attempts: row.try_get("attempts").map_err(other)?,
        next_attempt_at: from_micros(row.try_get("next_attempt_at").map_err(other)?),
        created: from_micros(row.try_get("created_at").map_err(other)?),
        last_updated: from_micros(row.try_get("updated_at").map_err(other)?),
        last_error: row.try_get("last_error").map_err(other)?,
        last_status_code: row.try_get("last_status_code").map_err(other)?,
    })
}

fn push_ids(qb: &mut QueryBuilder<'_, Sqlite>, ids: &[i64]) {
    qb.push("(");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    qb.push(")");
}

fn bind_webhook<'a>(
    mut q: sqlx::query::Query<'a, Sqlite, sqlx::sqlite::SqliteArguments<'a>>,
    w: &'a Webhook,
    types: String,
) -> sqlx::query::Query<'a, Sqlite, sqlx::sqlite::SqliteArguments<'a>> {
    q = q
        .bind(&w.name)
        .bind(types)
        .bind(w.type_create)
        .bind(w.type_update)
        .bind(w.type_delete)
        .bind(w.enabled)
        .bind(&w.payload_url)
        .bind(&w.http_method)
        .bind(&w.http_content_type)
        .bind(&w.additional_headers)
        .bind(&w.body_template)
        .bind(&w.secret)
        .bind(w.ssl_verification)
        .bind(&w.ca_file_path)
        .bind(w.timeout as i64)
        .bind(
            w.retry_schedule
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default()),
        )
        .bind(w.conditions.as_ref().map(Value::to_string));
    q
}

/// Writes attempts and delivery states for `outcomes`, successes in one statement.
async fn write_outcomes(tx: &mut sqlx::Transaction<'static, Sqlite>, outcomes: &[Outcome], now_us: i64) -> Result<()> {
    let attempts: Vec<&Attempt> = outcomes.iter().filter_map(|o| o.attempt.as_ref()).collect();
    for chunk in attempts.chunks(CHUNK / 2) {
        let mut qb = QueryBuilder::new(
                "insert into attempts (delivery_id, started_at, duration_us, request_method, request_url, request_headers, \
                 request_body, response_status, response_headers, response_body, error) ",
            );
        let mut encoded = Vec::with_capacity(chunk.len());
        for a in chunk {
            encoded.push((
                serde_json::to_string(&a.request_headers).map_err(json_err)?,
                serde_json::to_string(&a.response_headers).map_err(json_err)?,
            ));
        }
        qb.push_values(chunk.iter().zip(&encoded), |mut b, (a, (req_h, resp_h))| {
            b.push_bind(a.delivery_id)
                .push_bind(micros(a.started))
                .push_bind((a.duration_ms * 1000.0) as i64)
                .push_bind(&a.request_method)
                .push_bind(&a.request_url)
                .push_bind(req_h)
                .push_bind(&a.request_body)
                .push_bind(a.response_status.map(i64::from))
                .push_bind(resp_h)
                .push_bind(&a.response_body)
                .push_bind(&a.error);
        });
        qb.build().execute(&mut **tx).await.map_err(other)?;
    }
    // Successes share one statement; the rest carry their own error and time.
    let succeeded: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == Status::Succeeded).collect();
    for chunk in succeeded.chunks(CHUNK) {
        let mut qb = QueryBuilder::new("update deliveries set status = 'succeeded', last_error = null, updated_at = ");
        qb.push_bind(now_us);
        qb.push(", next_attempt_at = ").push_bind(now_us);
        qb.push(", last_status_code = case id");
        for o in chunk {
            qb.push(" when ")
                .push_bind(o.delivery_id)
                .push(" then ")
                .push_bind(o.status_code.map(i64::from));
        }
        qb.push(" end where status = 'in_flight' and id in ");
        let ids: Vec<i64> = chunk.iter().map(|o| o.delivery_id).collect();
        push_ids(&mut qb, &ids);
        qb.build().execute(&mut **tx).await.map_err(other)?;
    }
    for o in outcomes.iter().filter(|o| o.status != Status::Succeeded) {
        sqlx::query(
                "update deliveries set status = ?, last_error = ?, last_status_code = ?, next_attempt_at = ?, updated_at = ? \
                 where id = ? and status = 'in_flight'",
            )
            .bind(o.status.as_str())
            .bind(&o.error)
            .bind(o.status_code.map(i64::from))
            .bind(o.next_attempt_at.map(micros).unwrap_or(now_us))
            .bind(now_us)
            .bind(o.delivery_id)
            .execute(&mut **tx)
            .await
            .map_err(other)?;
    }
    Ok(())
}

/// Appends ` where ...` for `f` to a query over `deliveries d`.
fn push_filter(qb: &mut QueryBuilder<'_, Sqlite>, f: &DeliveryFilter) {
    qb.push(" where 1 = 1");
    if !f.id.is_empty() {
        qb.push(" and d.id in ");
        push_ids(qb, &f.id);
    }
    if !f.webhook_id.is_empty() {
        qb.push(" and d.webhook_id in ");
        push_ids(qb, &f.webhook_id);
    }
    for (column, values) in [
        (
            "d.status",
            f.status.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>(),
        ),
        ("d.object_type", f.object_type.clone()),
        ("d.event", f.event.clone()),
    ] {
        if values.is_empty() {
            continue;
        }
        qb.push(format!(" and {column} in ("));
        let mut sep = qb.separated(", ");
        for v in values {
            sep.push_bind(v);
        }
        qb.push(")");
    }
    if let Some(since) = f.since {
        qb.push(" and d.created_at >= ").push_bind(micros(since));
    }
}

/// Inserts events and one queued delivery per matching webhook, in the caller's transaction.
async fn insert_events(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    matcher: &crate::webhooks::Matcher<'_>,
    events: &[Event],
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>> {
    // The write lock is held, so ids after the current maximum are ours.
    let last: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from events")
        .fetch_one(&mut **tx)
        .await
        .map_err(other)?;
    let now_us = micros(now);
    let mut recorded = Vec::with_capacity(events.len());
    let mut pending: Vec<(i64, i64, &'static str, &str)> = Vec::new();
    for (i, chunk) in events.chunks(CHUNK).enumerate() {
        let mut qb = QueryBuilder::new(
                "insert into events (id, event, timestamp, object_type, username, request_id, data, snapshots, created_at) ",
            );
        let base = last + (i * CHUNK) as i64;
        let mut encoded = Vec::with_capacity(chunk.len());
        for e in chunk {
            encoded.push((
                serde_json::to_string(&e.data).map_err(json_err)?,
                serde_json::to_string(&e.snapshots).map_err(json_err)?,
            ));
        }
        qb.push_values(
            chunk.iter().zip(&encoded).enumerate(),
            |mut b, (j, (e, (data, snaps)))| {
                b.push_bind(base + j as i64 + 1)
                    .push_bind(e.kind.as_str())
                    .push_bind(&e.timestamp)
                    .push_bind(&e.object_type)
                    .push_bind(&e.username)
                    .push_bind(&e.request_id)
                    .push_bind(data)
                    .push_bind(snaps)
                    .push_bind(now_us);
            },
        );
        qb.build().execute(&mut **tx).await.map_err(other)?;
        for (j, e) in chunk.iter().enumerate() {
            let event_id = base + j as i64 + 1;
            let mut n = 0;
            for w in matcher.matching(e) {
                pending.push((event_id, w.id, e.kind.as_str(), &e.object_type));
                n += 1;
            }
            recorded.push(Recorded {
                event_id,
                deliveries: n,
            });
        }
    }
    for chunk in pending.chunks(CHUNK) {
        let mut qb = QueryBuilder::new(
                "insert into deliveries (event_id, webhook_id, event, object_type, status, attempts, next_attempt_at, created_at, updated_at) ",
            );
        qb.push_values(chunk, |mut b, (event_id, webhook_id, kind, object_type)| {
            b.push_bind(*event_id)
                .push_bind(*webhook_id)
                .push_bind(*kind)
                .push_bind(*object_type)
                .push_bind("queued")
                .push_bind(0i64)
                .push_bind(now_us)
                .push_bind(now_us)
                .push_bind(now_us);
        });
        qb.build().execute(&mut **tx).await.map_err(other)?;
    }
    Ok(recorded)
}

const USER_SELECT: &str =
    "select id as user_id, username, password_hash, is_superuser, created_at as user_created from users";

const TOKEN_SELECT: &str = "select t.id, t.user_id, t.write_enabled, t.description, t.created_at, u.username, \
     u.password_hash, u.is_superuser, u.created_at as user_created from tokens t join users u on u.id = t.user_id";

fn user_from_row(row: &SqliteRow) -> Result<User> {
    Ok(User {
        id: row.try_get("user_id").map_err(other)?,
        username: row.try_get("username").map_err(other)?,
        password_hash: row.try_get("password_hash").map_err(other)?,
        is_superuser: row.try_get("is_superuser").map_err(other)?,
        created: from_micros(row.try_get("user_created").map_err(other)?),
    })
}

fn token_from_row(row: &SqliteRow) -> Result<Token> {
    Ok(Token {
        id: row.try_get("id").map_err(other)?,
        user_id: row.try_get("user_id").map_err(other)?,
        write_enabled: row.try_get("write_enabled").map_err(other)?,
        description: row.try_get("description").map_err(other)?,
        created: from_micros(row.try_get("created_at").map_err(other)?),
    })
}

const WEBHOOK_COLUMNS: &str = "name, content_types, type_create, type_update, type_delete, enabled, payload_url, \
     http_method, http_content_type, additional_headers, body_template, secret, ssl_verification, ca_file_path, timeout, \
     retry_schedule, conditions";

const DELIVERY_SELECT: &str = "select d.id, d.event_id, d.webhook_id, w.name as webhook_name, d.event, d.object_type, \
     d.status, d.attempts, d.next_attempt_at, d.created_at, d.updated_at, d.last_error, d.last_status_code \
     from deliveries d join webhooks w on w.id = d.webhook_id";

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.write)
            .await
            .map_err(|e| StoreError::Other(anyhow::Error::new(e).context("migrating the SQLite database")))
    }

    async fn user_count(&self) -> Result<i64> {
        sqlx::query_scalar("select count(*) from users")
            .fetch_one(&self.read)
            .await
            .map_err(other)
    }

    async fn create_user(&self, username: &str, password_hash: &str, superuser: bool) -> Result<User> {
        let id: i64 = sqlx::query_scalar(
            "insert into users (username, password_hash, is_superuser, created_at) values (?, ?, ?, ?) returning id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(superuser)
        .bind(micros(Utc::now()))
        .fetch_one(&self.write)
        .await
        .map_err(other)?;
        self.user(id).await
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        let row = sqlx::query(&format!("{USER_SELECT} where username = ?"))
            .bind(username)
            .fetch_one(&self.read)
            .await
            .map_err(other)?;
        user_from_row(&row)
    }

    async fn user(&self, id: i64) -> Result<User> {
        let row = sqlx::query(&format!("{USER_SELECT} where id = ?"))
            .bind(id)
            .fetch_one(&self.read)
            .await
            .map_err(other)?;
        user_from_row(&row)
    }

    async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("{USER_SELECT} order by username"))
            .fetch_all(&self.read)
            .await
            .map_err(other)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let done = sqlx::query("update users set username = ?, password_hash = ?, is_superuser = ? where id = ?")
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.is_superuser)
            .bind(user.id)
            .execute(&self.write)
            .await
            .map_err(other)?;
        found(&done)
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
        let id: i64 = sqlx::query_scalar(
            "insert into tokens (user_id, key_hash, write_enabled, description, created_at) values (?, ?, ?, ?, ?) returning id",
        )
        .bind(user_id)
        .bind(key_hash)
        .bind(write_enabled)
        .bind(description)
        .bind(micros(Utc::now()))
        .fetch_one(&self.write)
        .await
        .map_err(other)?;
        Ok(self.token(id).await?.0)
    }

    async fn token_by_hash(&self, key_hash: &str) -> Result<(Token, User)> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} where t.key_hash = ?"))
            .bind(key_hash)
            .fetch_one(&self.read)
            .await
            .map_err(other)?;
        Ok((token_from_row(&row)?, user_from_row(&row)?))
    }

    async fn token(&self, id: i64) -> Result<(Token, User)> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} where t.id = ?"))
            .bind(id)
            .fetch_one(&self.read)
            .await
            .map_err(other)?;
        Ok((token_from_row(&row)?, user_from_row(&row)?))
    }

    async fn tokens(&self, user_id: Option<i64>) -> Result<Vec<(Token, User)>> {
        let rows = match user_id {
            Some(u) => {
                sqlx::query(&format!("{TOKEN_SELECT} where t.user_id = ? order by t.id"))
                    .bind(u)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                sqlx::query(&format!("{TOKEN_SELECT} order by t.id"))
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(other)?;
        rows.iter()
            .map(|r| Ok((token_from_row(r)?, user_from_row(r)?)))
            .collect()
    }

    async fn delete_token(&self, id: i64) -> Result<()> {
        self.delete_row("tokens", id).await
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows = sqlx::query("select * from webhooks order by name, id")
            .fetch_all(&self.read)
            .await
            .map_err(other)?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as("select id, updated_at from webhooks order by id")
            .fetch_all(&self.read)
            .await
            .map_err(other)?;
        Ok(rows.into_iter().map(|(id, at)| (id, from_micros(at))).collect())
    }

    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::new("select * from webhooks where id in ");
            push_ids(&mut qb, chunk);
            let rows = qb.build().fetch_all(&self.read).await.map_err(other)?;
            for row in &rows {
                out.push(webhook_from_row(row)?);
            }
        }
        Ok(out)
    }

    async fn create_webhooks(&self, webhooks: Vec<Webhook>) -> Result<Vec<Webhook>> {
        let mut tx = self.begin().await?;
        let now = Utc::now();
        let sql = format!(
            "insert into webhooks ({WEBHOOK_COLUMNS}, created_at, updated_at) \
             values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning id"
        );
        let mut out = Vec::with_capacity(webhooks.len());
        for mut w in webhooks {
            let types = serde_json::to_string(&w.content_types).map_err(json_err)?;
            let q = bind_webhook(sqlx::query(&sql), &w, types)
                .bind(micros(now))
                .bind(micros(now));
            let id: i64 = q.fetch_one(&mut *tx).await.map_err(other)?.try_get(0).map_err(other)?;
            w.id = id;
            w.created = from_micros(micros(now));
            w.last_updated = w.created;
            out.push(w);
        }
        tx.commit().await.map_err(other)?;
        Ok(out)
    }

    async fn update_webhooks(&self, webhooks: Vec<Webhook>) -> Result<Vec<Webhook>> {
        let mut tx = self.begin().await?;
        let now = from_micros(micros(Utc::now()));
        let sets = WEBHOOK_COLUMNS
            .split(", ")
            .map(|c| format!("{c} = ?"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("update webhooks set {sets}, updated_at = ? where id = ?");
        let mut out = Vec::with_capacity(webhooks.len());
        for mut w in webhooks {
            let types = serde_json::to_string(&w.content_types).map_err(json_err)?;
            let done = bind_webhook(sqlx::query(&sql), &w, types)
                .bind(micros(now))
                .bind(w.id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
            found(&done)?;
            w.last_updated = now;
            out.push(w);
        }
        tx.commit().await.map_err(other)?;
        Ok(out)
    }

    async fn delete_webhooks(&self, ids: &[i64]) -> Result<()> {
        let mut tx = self.begin().await?;
        for id in ids {
            let done = sqlx::query("delete from webhooks where id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
            found(&done)?;
        }
        tx.commit().await.map_err(other)
    }

    async fn record_events(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<Vec<Recorded>> {
        let webhooks = self.enabled_webhooks().await?;
        let matcher = crate::webhooks::Matcher::new(&webhooks);
        let mut tx = self.begin().await?;
        let recorded = insert_events(&mut tx, &matcher, &events, now).await?;
        tx.commit().await.map_err(other)?;
        Ok(recorded)
    }

    async fn write_objects(
        &self,
        catalog: &crate::catalog::Catalog,
        req: &WriteRequest,
    ) -> std::result::Result<(Written, usize), WriteError> {
        let webhooks = self.enabled_webhooks().await?;
        let matcher = crate::webhooks::Matcher::new(&webhooks);
        let mut tx = self.begin().await?;
        let written = {
            let mut otx = objects::SqliteObjectTx { tx: &mut tx };
            let written = crate::objects::engine::apply(catalog, &mut otx, req).await?;
            otx.add_changes(&written.changes).await?;
            written
        };
        let recorded = insert_events(&mut tx, &matcher, &written.events, req.now).await?;
        tx.commit().await.map_err(other)?;
        Ok((written, recorded.iter().map(|r| r.deliveries).sum()))
    }

    async fn list_objects(&self, ty: &str, query: &ObjectQuery, limit: i64, offset: i64) -> Result<(i64, Vec<Obj>)> {
        objects::list(&self.read, ty, query, limit, offset).await
    }

    async fn get_objects(&self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            out.extend(objects::get(&self.read, ty, chunk).await?);
        }
        Ok(out)
    }

    async fn object_changes(&self, filter: &ChangeFilter, limit: i64, offset: i64) -> Result<(i64, Vec<Change>)> {
        objects::changes(&self.read, filter, limit, offset).await
    }

    async fn claim(&self, now: DateTime<Utc>, limits: &ClaimLimits, lease_margin_secs: u64) -> Result<Vec<Claimed>> {
        let now_us = micros(now);
        // The writer is the bottleneck: only the claim itself (one autocommit statement) runs
        // on it; the events come from the readers.
        let webhook_ids = limits.webhooks.iter().copied();
        let arms: Vec<(i64, usize)> = webhook_ids
            .map(|id| (id, limits.of(id)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if arms.is_empty() {
            return Ok(Vec::new());
        }
        // One index range per webhook: the oldest due of each, then the oldest overall.
        let mut qb =
            QueryBuilder::new("update deliveries set status = 'in_flight', attempts = attempts + 1, updated_at = ");
        qb.push_bind(now_us)
            .push(", next_attempt_at = ")
            .push_bind(now_us)
            .push(" + ((select timeout from webhooks w where w.id = deliveries.webhook_id) + ")
            .push_bind(lease_margin_secs as i64)
            .push(") * 1000000 where id in (select id from (");
        for (i, (webhook_id, arm_limit)) in arms.iter().enumerate() {
            if i > 0 {
                qb.push(" union all ");
            }
            qb.push("select * from (select id, next_attempt_at from deliveries indexed by deliveries_due_webhook where webhook_id = ")
                .push_bind(*webhook_id)
                .push(" and status in ('queued', 'retrying', 'in_flight') and next_attempt_at <= ")
                .push_bind(now_us)
                .push(" order by next_attempt_at, id limit ")
                .push_bind(*arm_limit as i64)
                .push(")");
        }
        qb.push(") order by next_attempt_at, id limit ")
            .push_bind(limits.total as i64)
            .push(") returning id, event_id, webhook_id, attempts");
        let rows = qb.build().fetch_all(&self.write).await.map_err(other)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = Vec::with_capacity(rows.len());
        let mut event_ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let event_id: i64 = row.try_get("event_id").map_err(other)?;
            event_ids.push(event_id);
            claimed.push((
                row.try_get::<i64, _>("id").map_err(other)?,
                row.try_get::<i64, _>("webhook_id").map_err(other)?,
                row.try_get::<i64, _>("attempts").map_err(other)?,
                event_id,
            ));
        }
        event_ids.sort_unstable();
        event_ids.dedup();
        let mut events: HashMap<i64, Arc<Event>> = HashMap::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::new("select * from events where id in ");
            push_ids(&mut qb, chunk);
            for row in qb.build().fetch_all(&self.read).await.map_err(other)? {
                let e = event_from_row(&row)?;
                events.insert(e.id, Arc::new(e));
            }
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
        let mut tx = self.begin().await?;
        match write_outcomes(&mut tx, &outcomes, now_us).await {
            Ok(()) => return tx.commit().await.map_err(other),
            Err(StoreError::Conflict(msg)) if msg.starts_with(FOREIGN_KEY) => tx.rollback().await.map_err(other)?,
            Err(e) => return Err(e),
        }
        // Rare: a delivery vanished while in flight (its webhook was deleted). Record the rest.
        let mut tx = self.begin().await?;
        let mut alive = std::collections::HashSet::with_capacity(outcomes.len());
        let ids: Vec<i64> = outcomes.iter().map(|o| o.delivery_id).collect();
        for chunk in ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::new("select id from deliveries where id in ");
            push_ids(&mut qb, chunk);
            for row in qb.build().fetch_all(&mut *tx).await.map_err(other)? {
                alive.insert(row.try_get::<i64, _>(0).map_err(other)?);
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .filter(|o| alive.contains(&o.delivery_id))
            .collect();
        write_outcomes(&mut tx, &outcomes, now_us).await?;
        tx.commit().await.map_err(other)
    }

    async fn release(&self, delivery_ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        for chunk in delivery_ids.chunks(CHUNK) {
            let mut qb = QueryBuilder::new(
                "update deliveries set status = 'queued', attempts = max(attempts - 1, 0), next_attempt_at = ",
            );
            qb.push_bind(micros(now)).push(" where status = 'in_flight' and id in ");
            push_ids(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.map_err(other)?;
        }
        tx.commit().await.map_err(other)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = sqlx::query_scalar(
            "select min(next_attempt_at) from deliveries indexed by deliveries_due \
             where status in ('queued', 'retrying', 'in_flight')",
        )
        .fetch_one(&self.read)
        .await
        .map_err(other)?;
        Ok(next.map(from_micros))
    }

    async fn deliveries(&self, filter: &DeliveryFilter, limit: i64, offset: i64) -> Result<(i64, Vec<Delivery>)> {
        let mut count = QueryBuilder::new("select count(*) from deliveries d");
        push_filter(&mut count, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.read).await.map_err(other)?;
        let mut qb = QueryBuilder::new(DELIVERY_SELECT);
        push_filter(&mut qb, filter);
        qb.push(" order by d.id desc limit ")
            .push_bind(limit)
            .push(" offset ")
            .push_bind(offset);
        let rows = qb.build().fetch_all(&self.read).await.map_err(other)?;
        Ok((total, rows.iter().map(delivery_from_row).collect::<Result<_>>()?))
    }

    async fn delivery(&self, id: i64) -> Result<Delivery> {
        let row = sqlx::query(&format!("{DELIVERY_SELECT} where d.id = ?"))
            .bind(id)
            .fetch_one(&self.read)
            .await
            .map_err(other)?;
        delivery_from_row(&row)
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>> {
        let rows = sqlx::query("select * from attempts where delivery_id = ? order by id")
            .bind(delivery_id)
            .fetch_all(&self.read)
            .await
            .map_err(other)?;
        rows.iter()
            .map(|row| {
                let req_h: String = row.try_get("request_headers").map_err(other)?;
                let resp_h: String = row.try_get("response_headers").map_err(other)?;
                Ok(Attempt {
                    delivery_id,
                    started: from_micros(row.try_get("started_at").map_err(other)?),
                    duration_ms: row.try_get::<i64, _>("duration_us").map_err(other)? as f64 / 1000.0,
                    request_method: row.try_get("request_method").map_err(other)?,
                    request_url: row.try_get("request_url").map_err(other)?,
                    request_headers: serde_json::from_str(&req_h).map_err(json_err)?,
                    request_body: row.try_get("request_body").map_err(other)?,
                    response_status: row
                        .try_get::<Option<i64>, _>("response_status")
                        .map_err(other)?
                        .map(|s| s as u16),
                    response_headers: serde_json::from_str(&resp_h).map_err(json_err)?,
                    response_body: row.try_get("response_body").map_err(other)?,
                    error: row.try_get("error").map_err(other)?,
                })
            })
            .collect()
    }

    async fn event(&self, id: i64) -> Result<Event> {
        let row = sqlx::query("select * from events where id = ?")
            .bind(id)
            .fetch_one(&self.read)
            .await
            .map_err(other)?;
        event_from_row(&row)
    }

    async fn queue_counts(&self) -> Result<Vec<(Status, i64)>> {
        let rows = sqlx::query("select status, count(*) as n from deliveries group by status")
            .fetch_all(&self.read)
            .await
            .map_err(other)?;
        let mut counts: Vec<(Status, i64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for row in rows {
            let status: String = row.try_get("status").map_err(other)?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| s.as_str() == status) {
                slot.1 = row.try_get("n").map_err(other)?;
            }
        }
        Ok(counts)
    }

    async fn queue_stats(&self, since: DateTime<Utc>) -> Result<QueueStats> {
        let counts = self.queue_counts().await?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "select created_at from deliveries where id = \
             (select min(id) from deliveries where status in ('queued', 'retrying'))",
        )
        .fetch_optional(&self.read)
        .await
        .map_err(other)?;
        let failed_attempts: i64 =
            sqlx::query_scalar("select count(*) from attempts where started_at >= ? and error is not null")
                .bind(micros(since))
                .fetch_one(&self.read)
                .await
                .map_err(other)?;
        Ok(QueueStats {
            counts,
            oldest_waiting: oldest.map(from_micros),
            failed_attempts,
        })
    }

    async fn requeue(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64> {
        let mut qb = QueryBuilder::new("update deliveries set status = 'queued', next_attempt_at = ");
        qb.push_bind(micros(now)).push(", updated_at = ").push_bind(micros(now));
        qb.push(" where id in (select d.id from deliveries d");
        push_filter(&mut qb, filter);
        qb.push(" and d.status != 'in_flight')");
        let mut tx = self.begin().await?;
        let done = qb.build().execute(&mut *tx).await.map_err(other)?;
        tx.commit().await.map_err(other)?;
        Ok(done.rows_affected())
    }

    async fn delete_deliveries(&self, filter: &DeliveryFilter) -> Result<u64> {
        let mut qb = QueryBuilder::new("delete from deliveries where id in (select d.id from deliveries d");
        push_filter(&mut qb, filter);
        qb.push(" and d.status in ('queued', 'retrying', 'failed'))");
        let mut tx = self.begin().await?;
        let done = qb.build().execute(&mut *tx).await.map_err(other)?;
        tx.commit().await.map_err(other)?;
        Ok(done.rows_affected())
    }

    async fn purge(&self, succeeded_before: DateTime<Utc>, failed_before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let deliveries = sqlx::query(
            "delete from deliveries where id in (select id from deliveries \
             where (status = 'succeeded' and updated_at < ?1) or (status = 'failed' and updated_at < ?2) limit ?3)",
        )
        .bind(micros(succeeded_before))
        .bind(micros(failed_before))
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(other)?
        .rows_affected();
        let events = sqlx::query(
            "delete from events where id in (select e.id from events e where e.created_at < ?1 \
             and not exists (select 1 from deliveries d where d.event_id = e.id) limit ?2)",
        )
        .bind(micros(succeeded_before))
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(other)?
        .rows_affected();
        tx.commit().await.map_err(other)?;
        Ok(deliveries + events)
    }

    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "delete from object_changes where id in (select id from object_changes where time < ? order by id limit ?)",
        )
        .bind(micros(before))
        .bind(limit)
        .execute(&self.write)
        .await
        .map_err(other)?;
        Ok(done.rows_affected())
    }

    async fn worker_heartbeat(&self, id: &str, host: &str, pid: u32, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "insert into workers (id, host, pid, started_at, seen_at) values (?1, ?2, ?3, ?4, ?4) \
             on conflict (id) do update set seen_at = excluded.seen_at",
        )
        .bind(id)
        .bind(host)
        .bind(i64::from(pid))
        .bind(micros(now))
        .execute(&self.write)
        .await
        .map_err(other)?;
        Ok(())
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        sqlx::query("delete from workers where id = ?")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn workers_seen_since(&self, since: DateTime<Utc>) -> Result<i64> {
        sqlx::query_scalar("select count(*) from workers where seen_at >= ?")
            .bind(micros(since))
            .fetch_one(&self.read)
            .await
            .map_err(other)
    }
}
