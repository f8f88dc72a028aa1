//! The PostgreSQL store: any number of `herald serve` and `herald worker` processes on one
//! database. A pool of connections (deadpool over tokio-postgres, chosen by measurement: see
//! the README); write transactions in READ COMMITTED with row locks where the rules need them
//! (see `objects::ObjectTx::lock`), run again when PostgreSQL breaks a deadlock; claims with
//! `FOR UPDATE SKIP LOCKED`; workers woken by `LISTEN`/`NOTIFY`, with a slow poll besides.
//!
//! This file opens the pool and runs write transactions; the other files hold the SQL of each
//! part of the contract.

mod events;
mod identity;
mod listen;
mod migrate;
mod objects;
mod queue;
mod run;
mod tls;

use super::exec::{EachRow, Exec, RowFn, Tx, TxJob};
use super::redact_url;
use super::sql::{Dialect, FieldAs, Sql};
use super::statements::PageSql;
use super::{Result, Store, StoreError, WriteError, WriteJob};
use crate::page::Page;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use run::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
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
    /// Where this process notes the identity of each database it has used (empty: nowhere).
    pub identity_file: String,
}

/// The channel workers listen on.
pub(super) const CHANNEL: &str = "herald_queue";

/// Tells every process listening that deliveries are due, when the transaction commits.
async fn notify<C: GenericClient>(c: &C) -> Result<()> {
    c.execute("select pg_notify($1, '')", &[&CHANNEL])
        .await
        .map(|_| ())
        .map_err(map_err)
}
/// Times a write transaction is run again after PostgreSQL broke a deadlock in it.
const WRITE_TRIES: usize = 5;
/// Times a transaction is run again when `retryable` allows it.
const TX_TRIES: usize = WRITE_TRIES;

pub struct PgStore {
    pool: Pool,
    /// Object types whose ids come from a sequence of their own (`prepare_object_types`).
    sequenced: Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
    queued: Arc<Notify>,
    /// Where this database's identity is noted.
    identity: identity::Noted,
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

    fn for_update(&self, out: &mut String) {
        out.push_str(" for update");
    }

    fn int_set(&self, out: &mut String, n: usize) {
        out.push_str(&format!("(select unnest(${n}::bigint[]))"));
    }
}

static DIALECT: PgDialect = PgDialect;

fn sql(text: &str) -> Sql {
    Sql::new(&DIALECT, text)
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host/db`).
    pub async fn open(url: &str, config: &PostgresConfig) -> anyhow::Result<PgStore> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("bad PostgreSQL URL {:?}: {e}", redact_url(url)))?;
        let tls = tls::Tls::for_config(&pg, config)?;
        let identity = identity::Noted::new(&config.identity_file, &pg);
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
            identity,
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
    async fn read_page<T>(&self, page: PageSql, map: impl Fn(&Row) -> Result<T>) -> Result<Page<T>> {
        let c = self.client().await?;
        let total: i64 = scalar(&c, &page.count).await?;
        Ok(Page::new(total, fetch(&c, &page.items, map).await?))
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
        wtx.flush().await?;
        // Deliveries were queued with the workers' wake-up in the same statement.
        let (tx, queued) = wtx.finish();
        commit(tx).await?;
        Ok(queued)
    }
}

#[async_trait]
impl Exec for PgStore {
    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    async fn rows<T: Send + 'static>(&self, q: Sql, map: RowFn<T>) -> Result<Vec<T>> {
        self.read(&q, |r| map(r)).await
    }

    async fn page<T: Send + 'static>(&self, page: PageSql, map: RowFn<T>) -> Result<Page<T>> {
        self.read_page(page, |r| map(r)).await
    }

    async fn exec(&self, q: Sql) -> Result<u64> {
        let c = self.client().await?;
        execute(&c, &q).await
    }

    async fn exec_and_signal(&self, q: Sql) -> Result<u64> {
        let q = Arc::new(q);
        let n = self
            .in_tx(move |tx| {
                Box::pin(async move {
                    let n = execute(tx, &q).await?;
                    if n > 0 {
                        notify(tx).await?;
                    }
                    Ok(n)
                })
            })
            .await?;
        if n > 0 {
            self.queued.notify_one();
        }
        Ok(n)
    }

    async fn transact<T: Send + 'static>(&self, job: TxJob<T>) -> Result<T> {
        self.in_tx_retried(move |tx| {
            let job = job.clone();
            Box::pin(async move {
                let mut statements = Statements(tx);
                job(&mut statements).await
            })
        })
        .await
    }
}

/// Statements in a transaction of the pool.
struct Statements<'t>(&'t deadpool_postgres::Transaction<'t>);

#[async_trait]
impl Tx for Statements<'_> {
    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    async fn each_row(&mut self, q: &Sql, each: &mut EachRow<'_>) -> Result<()> {
        for row in query(self.0, q).await? {
            each(&row)?;
        }
        Ok(())
    }

    async fn exec(&mut self, q: &Sql) -> Result<u64> {
        execute(self.0, q).await
    }
}

#[async_trait]
impl Store for PgStore {
    async fn schema_version(&self) -> Result<(i64, i64)> {
        super::shared::schema_version(self, migrate::LATEST).await
    }

    fn pool_status(&self) -> Option<(usize, usize, usize)> {
        let s = self.pool.status();
        Some((s.size, s.available, s.waiting))
    }
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        self.identity.check(identity::stored(&client).await?.as_deref())?;
        migrate::migrate(&mut client).await?;
        match identity::stored(&client).await? {
            Some(id) => self.identity.note(&id),
            None => Ok(()),
        }
    }

    async fn prepare_object_types(&self, types: &[&str]) -> Result<()> {
        let mut client = self.client().await?;
        migrate::sequences(&mut client, types).await?;
        let mut known = crate::sync::write(&self.sequenced);
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

    fn dialect(&self) -> &'static dyn Dialect {
        &DIALECT
    }

    fn queue_signal(&self) -> Arc<Notify> {
        self.queued.clone()
    }
}
