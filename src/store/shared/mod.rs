//! The contract's methods that only run statements, written once over `exec::Exec` for every
//! backend: users, tokens and sessions, groups and permissions, webhooks and event rules,
//! objects' reads and the change log, the queue's reads, requeues and purges, heartbeats.

mod access;
mod objects;
mod queue;
mod records;
mod users;

use crate::store::exec::Exec;
use crate::store::rows::one;
use crate::store::Result;

/// The schema version the database is at (its last migration applied), and `latest`, the one
/// this build's backend makes: what `Store::schema_version` answers.
pub async fn schema_version<E: Exec>(e: &E, latest: i64) -> Result<(i64, i64)> {
    let q = e.sql("select coalesce(max(version), 0) as v from herald_migrations");
    Ok((one(e.rows(q, |r| r.int("v")).await?)?, latest))
}
