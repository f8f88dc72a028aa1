//! The scenarios, each bounded in count and time; `Bench` holds what they share.

mod api;
mod delivery;
mod guarantees;
mod inventory;
mod load;
mod open_loop;
mod storage;
mod ui;
mod workers;

use crate::process::{Database, Herald};
use crate::receiver::Receiver;
use std::path::PathBuf;

pub struct Bench {
    pub exe: PathBuf,
    pub quick: bool,
    pub events: u64,
    pub backlog: u64,
    /// IP addresses in the inventory scenario.
    pub objects: u64,
    /// The PostgreSQL server to make databases on; SQLite files when `None`.
    pub postgres: Option<String>,
}

impl Bench {
    /// A fresh database of the backend measured.
    async fn database(&self) -> anyhow::Result<Database> {
        Database::fresh(self.postgres.as_deref()).await
    }

    async fn herald(&self, db: &Database, worker: bool) -> anyhow::Result<Herald> {
        Herald::start(&self.exe, &db.url(), worker).await
    }

    /// A `serve` with its worker on a fresh database, a receiver, and one webhook to it (the
    /// database is returned to keep it alive).
    async fn with_webhook(&self, name: &str) -> anyhow::Result<(Database, Herald, Receiver)> {
        let db = self.database().await?;
        let h = self.herald(&db, true).await?;
        let rx = crate::receiver::start(false).await;
        h.create_webhook(name, &rx.url(), 15).await?;
        Ok((db, h, rx))
    }
}
