//! The scenarios, each bounded in count and time; `Bench` holds what they share.

mod api;
mod delivery;
mod load;

use crate::process::{database_url, Herald};
use crate::receiver::Receiver;
use std::path::PathBuf;

pub struct Bench {
    pub exe: PathBuf,
    pub quick: bool,
    pub events: u64,
    pub backlog: u64,
}

impl Bench {
    async fn herald(&self, dir: &tempfile::TempDir, worker: bool) -> anyhow::Result<Herald> {
        Herald::start(&self.exe, &database_url(dir.path()), worker).await
    }

    /// A `serve` with its worker on a fresh database, a receiver, and one webhook to it (its
    /// folder is returned to keep it alive).
    async fn with_webhook(&self, name: &str) -> anyhow::Result<(tempfile::TempDir, Herald, Receiver)> {
        let dir = tempfile::tempdir()?;
        let h = self.herald(&dir, true).await?;
        let rx = Receiver::start(false).await;
        h.create_webhook(name, &rx.url(), 15).await?;
        Ok((dir, h, rx))
    }
}
