//! The SQLite store: one file in WAL mode. Each connection lives on its own thread and runs
//! whole units of work (`lane`). Writes go through a single connection (SQLite has one writer;
//! queueing them in-process avoids lock retries) and begin IMMEDIATE so other processes on the
//! same file wait instead of failing; reads use a few connections. `synchronous=NORMAL` in WAL
//! mode keeps every commit across a process crash (kill -9).
//!
//! This file opens the database and runs write transactions; the other files hold the SQL of
//! each part of the contract.

pub mod backup;
mod events;
mod identity;
mod lane;
mod migrate;
mod objects;
mod queue;

use super::exec::{EachRow, Exec, RowFn, Tx, TxJob};
use super::rows::Columns;
use super::sql::{Arg, Dialect, FieldAs, Sql};
use super::statements::PageSql;
use super::{Result, Store, StoreError, WriteError, WriteJob};
use crate::page::Page;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lane::{run_ready, Lane};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Rows per multi-row statement, well under SQLite's bound-parameter limit.
const CHUNK: usize = 500;

/// Reading connections (each on its own thread).
const READERS: usize = 4;

pub struct SqliteStore {
    write: Lane,
    read: Lane,
    queued: Arc<Notify>,
    /// The file (none in memory).
    path: Option<String>,
    /// Whether that file is still the one opened (none in memory).
    file: Option<Arc<identity::FileGuard>>,
}

/// SQLite's spelling of what databases spell differently.
struct SqliteDialect;

impl Dialect for SqliteDialect {
    fn placeholder(&self, out: &mut String, _n: usize) {
        out.push('?');
    }

    fn field(&self, out: &mut String, field: &str, _as: FieldAs) {
        // json_extract gives JSON values as SQLite values (true/false as 1/0), so one spelling
        // compares as every kind.
        out.push_str("json_extract(o.data, ");
        out.push_str(&super::sql::quote(&format!("$.{field}")));
        out.push(')');
    }

    fn ip_key(&self, out: &mut String, field: &str) {
        out.push_str("herald_ip_key(");
        self.field(out, field, FieldAs::Text);
        out.push(')');
    }

    fn ilike(&self) -> &'static str {
        // SQLite's LIKE ignores case (of ASCII letters).
        "like"
    }

    fn int_set(&self, out: &mut String, _n: usize) {
        // The integers arrive as one JSON array.
        out.push_str("(select value from json_each(?))");
    }

    fn index_hint(&self, out: &mut String, index: &str) {
        out.push_str(" indexed by ");
        out.push_str(index);
    }
}

static DIALECT: SqliteDialect = SqliteDialect;

/// A statement in SQLite's dialect.
fn sql(text: &str) -> Sql {
    Sql::new(&DIALECT, text)
}

fn sql_value(arg: &Arg) -> SqlValue {
    match arg {
        Arg::Null => SqlValue::Null,
        Arg::Int(i) => SqlValue::Integer(*i),
        Arg::Real(f) => SqlValue::Real(*f),
        Arg::Text(s) => SqlValue::Text(s.clone()),
        Arg::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Arg::IntSet(ints) => SqlValue::Text(serde_json::Value::from(ints.clone()).to_string()),
    }
}

/// Running a built statement on a connection.
trait Run {
    fn execute(&self, conn: &Connection) -> Result<usize>;
    fn rows<T>(&self, conn: &Connection, map: impl FnMut(&Row<'_>) -> Result<T>) -> Result<Vec<T>>;
    fn scalar<T: rusqlite::types::FromSql>(&self, conn: &Connection) -> Result<T>;
}

impl Run for Sql {
    fn execute(&self, conn: &Connection) -> Result<usize> {
        let args = self.args.iter().map(sql_value);
        conn.prepare_cached(&self.text)
            .and_then(|mut s| s.execute(params_from_iter(args)))
            .map_err(map_err)
    }

    fn rows<T>(&self, conn: &Connection, mut map: impl FnMut(&Row<'_>) -> Result<T>) -> Result<Vec<T>> {
        let mut stmt = conn.prepare_cached(&self.text).map_err(map_err)?;
        let mut rows = stmt
            .query(params_from_iter(self.args.iter().map(sql_value)))
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            out.push(map(row)?);
        }
        Ok(out)
    }

    fn scalar<T: rusqlite::types::FromSql>(&self, conn: &Connection) -> Result<T> {
        conn.prepare_cached(&self.text)
            .and_then(|mut s| s.query_row(params_from_iter(self.args.iter().map(sql_value)), |r| r.get(0)))
            .map_err(map_err)
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl Columns for Row<'_> {
    fn text(&self, name: &str) -> Result<String> {
        col(self, name)
    }

    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        col(self, name)
    }

    fn int(&self, name: &str) -> Result<i64> {
        col(self, name)
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        col(self, name)
    }

    fn flag(&self, name: &str) -> Result<bool> {
        col(self, name)
    }

    fn opt_real(&self, name: &str) -> Result<Option<f64>> {
        col(self, name)
    }
}

/// SQLite's errors as storage errors. A broken unique rule is reported bare: the call that
/// broke it knows which rule that is (`StoreResultExt::on_unique`).
fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    match e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
            StoreError::ForeignKey
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.extended_code,
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
        {
            StoreError::Unique(super::Unique {
                record: "record",
                fields: &[],
            })
        }
        // The writer's commit hook turned a commit into a rollback: the file is gone.
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == ffi::SQLITE_CONSTRAINT_COMMITHOOK => {
            StoreError::Lost(identity::LOST.into())
        }
        e => StoreError::Other(anyhow::Error::new(e).context("SQLite")),
    }
}

fn col<T: rusqlite::types::FromSql>(row: &Row<'_>, name: &str) -> Result<T> {
    row.get(name).map_err(map_err)
}

/// Runs `f` in a write transaction (BEGIN IMMEDIATE), committing on success and rolling back
/// on error. `E` is any error a storage error converts into.
fn in_write_tx<T, E: From<StoreError>>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
    let result = f(conn).and_then(|v| conn.execute_batch("COMMIT").map_err(|e| E::from(map_err(e))).map(|_| v));
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
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
    if path != ":memory:" {
        identity::check_writable(&conn, path)?;
    }
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
        let queued = Arc::new(Notify::new());
        if path == ":memory:" {
            // One in-memory database: the same connection reads and writes.
            let write = Lane::open(vec![connect(&path, 8000)?], "db")?;
            let read = write.share();
            return Ok(SqliteStore {
                write,
                read,
                queued,
                path: None,
                file: None,
            });
        }
        identity::check_present(&path)?;
        // Page cache: 8 MiB for the writer, SQLite's default 2 MiB for each reader.
        let writer = connect(&path, 8000)?;
        identity::check_same(&writer, &path)?;
        // No commit is acknowledged once the path no longer names the file opened.
        let file = identity::FileGuard::new(&path)?;
        let guard = file.clone();
        writer.commit_hook(Some(move || guard.lost()));
        let readers = (0..READERS)
            .map(|_| connect(&path, 2000))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SqliteStore {
            write: Lane::open(vec![writer], "writer")?,
            read: Lane::open(readers, "reader")?,
            queued,
            path: Some(path),
            file: Some(file),
        })
    }

    /// Runs `f` in a write transaction on the writer (committed with the writes beside it).
    async fn write_tx<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.write.write(f).await
    }

    /// Tells waiting workers that deliveries are due.
    fn signal(&self) {
        self.queued.notify_one();
    }
}

#[async_trait]
impl Exec for SqliteStore {
    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    async fn rows<T: Send + 'static>(&self, q: Sql, map: RowFn<T>) -> Result<Vec<T>> {
        self.read.run(move |c| q.rows(c, |r| map(r))).await
    }

    async fn page<T: Send + 'static>(&self, page: PageSql, map: RowFn<T>) -> Result<Page<T>> {
        self.read
            .run(move |c| Ok(Page::new(page.count.scalar(c)?, page.items.rows(c, |r| map(r))?)))
            .await
    }

    async fn exec(&self, q: Sql) -> Result<u64> {
        self.write_tx(move |c| q.execute(c).map(|n| n as u64)).await
    }

    async fn exec_and_signal(&self, q: Sql) -> Result<u64> {
        let n = self.exec(q).await?;
        if n > 0 {
            self.signal();
        }
        Ok(n)
    }

    async fn transact<T: Send + 'static>(&self, job: TxJob<T>) -> Result<T> {
        self.write_tx(move |c| {
            let mut tx = Statements(c);
            run_ready(job(&mut tx)).unwrap_or_else(|| {
                Err(StoreError::Other(anyhow::anyhow!(
                    "a transaction waited on something outside it"
                )))
            })
        })
        .await
    }
}

/// Statements in a write transaction on the writer's connection.
struct Statements<'c>(&'c mut Connection);

#[async_trait]
impl Tx for Statements<'_> {
    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    async fn each_row(&mut self, q: &Sql, each: &mut EachRow<'_>) -> Result<()> {
        q.rows(self.0, |r| each(r)).map(|_| ())
    }

    async fn exec(&mut self, q: &Sql) -> Result<u64> {
        q.execute(self.0).map(|n| n as u64)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn schema_version(&self) -> Result<(i64, i64)> {
        super::shared::schema_version(self, migrate::LATEST).await
    }
    async fn migrate(&self) -> Result<()> {
        let path = self.path.clone();
        self.write
            .run(move |c| {
                migrate::migrate(c)?;
                match &path {
                    Some(p) => identity::note(c, p).map_err(StoreError::Other),
                    None => Ok(()),
                }
            })
            .await
    }

    async fn write(&self, job: WriteJob) -> Result<(), WriteError> {
        let queued = self
            .write
            .write(move |c| {
                let mut tx = objects::SqliteTx::new(c);
                let done = run_ready(job(&mut tx)).unwrap_or_else(|| {
                    Err(WriteError::Store(StoreError::Other(anyhow::anyhow!(
                        "a write job waited on something outside its transaction"
                    ))))
                });
                done.map(|()| tx.queued)
            })
            .await?;
        if queued {
            self.signal();
        }
        Ok(())
    }

    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    fn write_groups(&self) -> Option<(u64, u64)> {
        Some(self.write.stats().get())
    }

    fn queue_signal(&self) -> Arc<Notify> {
        self.queued.clone()
    }

    fn lost(&self) -> Option<String> {
        // Looked at again: a file put back answers again.
        self.file.as_ref().filter(|f| f.lost()).and_then(|f| f.problem())
    }
}
