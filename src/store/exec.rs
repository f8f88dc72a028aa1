//! The seam between the contract and a backend: running one built statement (`Exec`), or
//! several in one transaction (`Tx`). The methods of the contract that only run statements
//! are written once over it (`shared`); a backend implements `Exec` and keeps to itself what
//! truly differs (claims, outcome batches, object writes, its transactions and errors).

use super::rows::Columns;
use super::sql::{Dialect, Sql};
use super::statements::PageSql;
use super::{Result, StoreError};
use crate::page::Page;
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// How a row becomes a record.
pub type RowFn<T> = fn(&dyn Columns) -> Result<T>;

/// What takes each row of a statement run in a transaction.
pub type EachRow<'a> = dyn FnMut(&dyn Columns) -> Result<()> + Send + 'a;

/// Running statements on a backend.
#[async_trait]
pub trait Exec: Send + Sync + 'static {
    /// How this backend spells what databases spell differently.
    fn dialect(&self) -> &'static dyn Dialect;

    /// A statement in this backend's dialect.
    fn sql(&self, text: &str) -> Sql {
        Sql::new(self.dialect(), text)
    }

    /// Runs a read, each row made a record by `map`.
    async fn rows<T: Send + 'static>(&self, q: Sql, map: RowFn<T>) -> Result<Vec<T>>;

    /// Runs a page's two reads together: how many match, and the page's rows.
    async fn page<T: Send + 'static>(&self, page: PageSql, map: RowFn<T>) -> Result<Page<T>>;

    /// Runs one write, in a transaction of its own; returns the rows it touched.
    async fn exec(&self, q: Sql) -> Result<u64>;

    /// Runs one write that makes deliveries due; when it touched any, wakes the workers
    /// waiting in this process (and in others, where the backend can) with its commit.
    async fn exec_and_signal(&self, q: Sql) -> Result<u64>;

    /// Runs `job` in one write transaction, all or none (again, from the start, when the
    /// backend knows the first run did not commit and may be run again).
    async fn transact<T: Send + 'static>(&self, job: TxJob<T>) -> Result<T>;
}

/// Statements run inside one transaction.
#[async_trait]
pub trait Tx: Send {
    /// How the backend spells what databases spell differently.
    fn dialect(&self) -> &'static dyn Dialect;
    /// Runs `q`, giving each row to `each`.
    async fn each_row(&mut self, q: &Sql, each: &mut EachRow<'_>) -> Result<()>;
    /// Runs `q`; returns the rows it touched.
    async fn exec(&mut self, q: &Sql) -> Result<u64>;
}

/// Work in a transaction: it may run more than once, so it borrows what it uses.
pub type TxJob<T> = Arc<dyn for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T>> + Send + Sync>;

impl dyn Tx + '_ {
    /// A statement in the backend's dialect.
    pub fn sql(&self, text: &str) -> Sql {
        Sql::new(self.dialect(), text)
    }

    /// Runs `q`, each row made a record by `map`.
    pub async fn rows<T: Send>(&mut self, q: &Sql, map: RowFn<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.each_row(q, &mut |r| {
            out.push(map(r)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// The integer in column `name` of the one row of `q` (an insert's `returning id`).
    pub async fn int(&mut self, q: &Sql, name: &'static str) -> Result<i64> {
        let mut found = None;
        self.each_row(q, &mut |r| {
            found = Some(r.int(name)?);
            Ok(())
        })
        .await?;
        found.ok_or(StoreError::NotFound)
    }
}

/// `NotFound` when a write touched no row.
pub fn found(rows: u64) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}
