//! The PostgreSQL store: any number of `herald serve` and `herald worker` processes on one
//! database. A pool of connections (deadpool over tokio-postgres, chosen by measurement: see
//! the README); write transactions in READ COMMITTED with row locks where the rules need them
//! (see `objects::ObjectTx::lock`), run again when PostgreSQL breaks a deadlock; claims with
//! `FOR UPDATE SKIP LOCKED`; workers woken by `LISTEN`/`NOTIFY`, with a slow poll besides.
//!
//! This file opens the pool and runs write transactions; the other files hold the SQL of each
//! part of the contract.

mod access;
mod events;
mod listen;
mod migrate;
mod objects;
mod queue;
pub mod scratch;
mod tls;
mod users;
mod webhooks;

use super::redact_url;
use super::rows::{self, Columns};
use super::sql::{Arg, Dialect, FieldAs, Sql};
use super::statements::PageSql;
use super::{Result, Store, StoreError, WriteError, WriteJob};
use crate::page::Page;
use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Row};

/// The pool's settings: `[postgres]` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostgresConfig {
    pub pool_size: usize,
    pub connect_timeout_secs: f64,
    pub statement_timeout_secs: f64,
    pub acquire_timeout_secs: f64,
    /// PEM certificates to verify the server's with (`sslmode=require`); empty: public roots.
    pub ca_file: String,
}

/// The channel workers listen on.
const CHANNEL: &str = "herald_queue";
/// Times a write transaction is run again after PostgreSQL broke a deadlock in it.
const WRITE_TRIES: usize = 5;

pub struct PgStore {
    pool: Pool,
    /// Object types whose ids come from a sequence of their own (`prepare_object_types`).
    sequenced: Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
    queued: Arc<Notify>,
    /// The LISTEN task, kept for its drop (which stops it).
    _listener: listen::Listener,
}

/// PostgreSQL's spelling of what databases spell differently.
struct PgDialect;

impl Dialect for PgDialect {
    fn placeholder(&self, out: &mut String, n: usize) {
        out.push('$');
        out.push_str(&n.to_string());
    }

    fn field(&self, out: &mut String, field: &str, as_: FieldAs) {
        let name = super::sql::quote(field);
        match as_ {
            FieldAs::Text => out.push_str(&format!("(o.data->>{name})")),
            FieldAs::Int => out.push_str(&format!("((o.data->>{name})::bigint)")),
            FieldAs::Real => out.push_str(&format!("((o.data->>{name})::float8)")),
            FieldAs::Bool => out.push_str(&format!("((o.data->>{name})::boolean)")),
            FieldAs::Any => out.push_str(&format!("(o.data->{name})")),
        }
    }

    fn ip_key(&self, out: &mut String, field: &str) {
        out.push_str(&format!("((o.data->>{})::inet)", super::sql::quote(field)));
    }

    fn ilike(&self) -> &'static str {
        "ilike"
    }

    fn int_set(&self, out: &mut String, n: usize) {
        out.push_str(&format!("(select unnest(${n}::bigint[]))"));
    }
}

static DIALECT: PgDialect = PgDialect;

fn sql(text: &str) -> Sql {
    Sql::new(&DIALECT, text)
}

/// An argument bound as the type PostgreSQL expects where it stands (SQLite-like leniency:
/// the shared SQL does not know every parameter's type).
#[derive(Debug)]
struct Param<'a>(&'a Arg);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().to_sql(ty, out),
            },
            Arg::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_string().to_sql(ty, out),
            },
            Arg::Text(s) => pg_text(s).as_ref().to_sql(ty, out),
            Arg::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                Type::INT8 => i64::from(*b).to_sql(ty, out),
                _ => b.to_string().to_sql(ty, out),
            },
            Arg::IntSet(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The parameters of `q`, as tokio-postgres takes them.
fn params(q: &Sql) -> Vec<Param<'_>> {
    q.args.iter().map(Param).collect()
}

fn refs<'a>(p: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    p.iter().map(|x| x as &(dyn ToSql + Sync)).collect()
}

/// Runs `q`, returning its rows.
async fn query<C: GenericClient>(c: &C, q: &Sql) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(&q.text).await.map_err(map_err)?;
    let p = params(q);
    c.query(&stmt, &refs(&p)).await.map_err(map_err)
}

/// Runs `q`, returning its rows as records.
async fn fetch<C: GenericClient, T>(c: &C, q: &Sql, map: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    query(c, q).await?.iter().map(map).collect()
}

/// Runs `q`, returning the rows it touched.
async fn execute<C: GenericClient>(c: &C, q: &Sql) -> Result<u64> {
    let stmt = c.prepare_cached(&q.text).await.map_err(map_err)?;
    let p = params(q);
    c.execute(&stmt, &refs(&p)).await.map_err(map_err)
}

/// Inserts `rows` (values in the order of `columns`, each a name and a type) with one
/// statement, whatever their number: each column is bound as one array. `tail` ends the
/// statement (`on conflict ...`, `returning ...`); returns the rows it returns.
async fn insert_rows_with<C: GenericClient>(
    c: &C,
    table: &str,
    columns: &[(&str, &str)],
    rows: &[Vec<Arg>],
    tail: &str,
) -> Result<Vec<Row>> {
    let arrays: Vec<Vec<Param<'_>>> = (0..columns.len())
        .map(|i| rows.iter().map(|r| Param(&r[i])).collect())
        .collect();
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let unnest: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    let text = format!(
        "insert into {table} ({}) select * from unnest({}){tail}",
        names.join(", "),
        unnest.join(", ")
    );
    let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    let stmt = c.prepare_cached(&text).await.map_err(map_err)?;
    c.query(&stmt, &params).await.map_err(map_err)
}

/// `insert_rows_with`, nothing returned.
async fn insert_rows<C: GenericClient>(c: &C, table: &str, columns: &[(&str, &str)], rows: &[Vec<Arg>]) -> Result<()> {
    insert_rows_with(c, table, columns, rows, "").await.map(|_| ())
}

/// The first column of the one row of `q`.
async fn scalar<C: GenericClient, T>(c: &C, q: &Sql) -> Result<T>
where
    T: for<'r> tokio_postgres::types::FromSql<'r>,
{
    let rows = query(c, q).await?;
    let row = rows.first().ok_or(StoreError::NotFound)?;
    row.try_get(0).map_err(map_err)
}

/// The index of column `name` and its type.
fn column<'r>(row: &'r Row, name: &str) -> Result<(usize, &'r Type)> {
    row.columns()
        .iter()
        .enumerate()
        .find(|(_, c)| c.name() == name)
        .map(|(i, c)| (i, c.type_()))
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("no column {name} in the row")))
}

impl Columns for Row {
    fn text(&self, name: &str) -> Result<String> {
        self.try_get(name).map_err(map_err)
    }

    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        self.try_get(name).map_err(map_err)
    }

    fn int(&self, name: &str) -> Result<i64> {
        self.opt_int(name)?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("column {name} is null")))
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        let (i, ty) = column(self, name)?;
        match *ty {
            Type::INT2 => Ok(self.try_get::<_, Option<i16>>(i).map_err(map_err)?.map(i64::from)),
            Type::INT4 => Ok(self.try_get::<_, Option<i32>>(i).map_err(map_err)?.map(i64::from)),
            _ => self.try_get(i).map_err(map_err),
        }
    }

    fn flag(&self, name: &str) -> Result<bool> {
        self.try_get(name).map_err(map_err)
    }

    fn json(&self, name: &str) -> Result<serde_json::Value> {
        let (i, ty) = column(self, name)?;
        if *ty == Type::JSONB || *ty == Type::JSON {
            let v: Option<serde_json::Value> = self.try_get(i).map_err(map_err)?;
            return Ok(v.unwrap_or_default());
        }
        match self.opt_text(name)? {
            Some(text) => rows::parse_json(&text),
            None => Ok(serde_json::Value::Null),
        }
    }
}

/// `NotFound` when a statement touched no row.
fn found(rows: u64) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// PostgreSQL's errors as storage errors. A broken unique rule is reported bare: the call
/// that broke it knows which rule that is.
fn map_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Unique(super::Unique {
            record: "record",
            fields: &[],
        }),
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::ForeignKey,
        _ => {
            let detail = match e.as_db_error() {
                Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
                None => format!("PostgreSQL: {e}"),
            };
            StoreError::Other(anyhow::Error::new(e).context(detail))
        }
    }
}

/// An error and its causes, as one line ("a: b: c"), each said once.
fn causes(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Whether the transaction that failed with `e` is known not to have committed and may be run
/// again: PostgreSQL broke a deadlock or a serialization conflict, or the connection was lost
/// (its server process terminated) before the commit was sent. Commits that fail are never
/// retried: whether they took effect is unknown (`commit`).
fn retryable(e: &StoreError) -> bool {
    let StoreError::Other(e) = e else {
        return false;
    };
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(|e| {
            e.is_closed()
                || e.code().is_some_and(|c| {
                    *c == SqlState::T_R_DEADLOCK_DETECTED
                        || *c == SqlState::T_R_SERIALIZATION_FAILURE
                        || c.code().starts_with("57P")
                })
        })
}

/// Times a transaction is run again when `retryable` allows it.
const TX_TRIES: usize = WRITE_TRIES;

/// Commits `tx`. A failure leaves the outcome unknown, so it is reported without the driver's
/// error (which `retryable` would take for a reason to run the transaction again).
async fn commit(tx: deadpool_postgres::Transaction<'_>) -> Result<()> {
    tx.commit().await.map_err(|e| {
        StoreError::Other(anyhow::anyhow!(
            "PostgreSQL: the commit failed, its outcome is unknown: {e}"
        ))
    })
}

/// A boxed future over a transaction.
type TxWork<'t, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 't>>;

/// Text as PostgreSQL stores it: it cannot hold NUL characters (a receiver may send them in a
/// response body), so those become U+FFFD.
fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    match s.contains('\0') {
        true => std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}")),
        false => std::borrow::Cow::Borrowed(s),
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host/db`).
    pub async fn open(url: &str, config: &PostgresConfig) -> anyhow::Result<PgStore> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("bad PostgreSQL URL {:?}: {e}", redact_url(url)))?;
        let tls = tls::Tls::for_config(&pg, config)?;
        pg.application_name("herald")
            .connect_timeout(Duration::from_secs_f64(config.connect_timeout_secs))
            .options(format!(
                "-c statement_timeout={}",
                (config.statement_timeout_secs * 1000.0) as u64
            ));
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            tls::Tls::Off => Manager::from_config(pg.clone(), NoTls, manager_config()),
            tls::Tls::On(connect) => Manager::from_config(pg.clone(), connect.clone(), manager_config()),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs_f64(config.acquire_timeout_secs)))
            .create_timeout(Some(Duration::from_secs_f64(config.connect_timeout_secs)))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot make the PostgreSQL pool: {e}"))?;
        // Fail now, with the reason, if the database cannot be reached.
        let client = pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {}: {}", redact_url(url), causes(&e)))?;
        drop(client);
        let queued = Arc::new(Notify::new());
        let listener = listen::Listener::start(pg, tls, CHANNEL, queued.clone());
        Ok(PgStore {
            pool,
            sequenced: Arc::default(),
            queued,
            _listener: listener,
        })
    }

    /// A connection from the pool: `Unavailable` when none is free in time or the server
    /// cannot be reached.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("no PostgreSQL connection: {}", causes(&e))))
    }

    /// Runs `q` on a connection of the pool, returning its rows as records. A read that lost
    /// its connection is run once more on another.
    async fn read<T>(&self, q: &Sql, map: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        let mut tries = 0;
        loop {
            tries += 1;
            let c = self.client().await?;
            match query(&c, q).await {
                Ok(rows) => return rows.iter().map(&map).collect(),
                Err(e) if tries < 2 && retryable(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A page of records: the count and the rows, on one connection.
    async fn page<T>(&self, page: PageSql, map: impl Fn(&Row) -> Result<T>) -> Result<Page<T>> {
        let c = self.client().await?;
        let total: i64 = scalar(&c, &page.count).await?;
        Ok(Page::new(total, fetch(&c, &page.items, map).await?))
    }

    /// Runs `q` on a connection of the pool, returning the rows it touched.
    async fn exec(&self, q: &Sql) -> Result<u64> {
        let c = self.client().await?;
        execute(&c, q).await
    }

    /// The first column of the one row of `q`, on a connection of the pool.
    async fn value<T>(&self, q: &Sql) -> Result<T>
    where
        T: for<'r> tokio_postgres::types::FromSql<'r>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let c = self.client().await?;
            match scalar(&c, q).await {
                Err(e) if tries < 2 && retryable(&e) => continue,
                done => return done,
            }
        }
    }

    /// Runs `f` in a transaction on a connection of the pool.
    async fn in_tx<T>(
        &self,
        f: impl for<'t> FnOnce(&'t deadpool_postgres::Transaction<'t>) -> TxWork<'t, T>,
    ) -> Result<T> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let value = f(&tx).await?;
        commit(tx).await?;
        Ok(value)
    }

    /// Runs `f` in a transaction, again (in a new one) while `retryable` allows it.
    async fn in_tx_retried<T>(
        &self,
        f: impl for<'t> Fn(&'t deadpool_postgres::Transaction<'t>) -> TxWork<'t, T>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.in_tx(&f).await {
                Err(e) if tries < TX_TRIES && retryable(&e) => {
                    tracing::debug!(tries, error = %e, "running a transaction again");
                    tokio::time::sleep(Duration::from_millis(5 * tries as u64)).await;
                }
                done => return done,
            }
        }
    }

    /// Runs one attempt of `job` in a transaction.
    async fn write_once(&self, job: &WriteJob) -> Result<bool, WriteError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let mut wtx = objects::PgTx::new(tx, self.sequenced.clone());
        job(&mut wtx).await?;
        let (tx, queued) = wtx.finish();
        if queued {
            tx.execute("select pg_notify($1, '')", &[&CHANNEL])
                .await
                .map_err(map_err)?;
        }
        commit(tx).await?;
        Ok(queued)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        migrate::migrate(&mut client).await
    }

    async fn prepare_object_types(&self, types: &[&str]) -> Result<()> {
        let mut client = self.client().await?;
        migrate::sequences(&mut client, types).await?;
        let mut known = self.sequenced.write().unwrap_or_else(|p| p.into_inner());
        known.extend(types.iter().map(|t| t.to_string()));
        Ok(())
    }

    async fn write(&self, job: WriteJob) -> Result<(), WriteError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.write_once(&job).await {
                Ok(queued) => {
                    if queued {
                        self.queued.notify_one();
                    }
                    return Ok(());
                }
                Err(WriteError::Store(e)) if tries < WRITE_TRIES && retryable(&e) => {
                    tracing::debug!(tries, error = %e, "running a write transaction again");
                    tokio::time::sleep(Duration::from_millis(5 * tries as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn queue_signal(&self) -> Arc<Notify> {
        self.queued.clone()
    }
}
