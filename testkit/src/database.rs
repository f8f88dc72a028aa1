//! A fresh database for one test or one benchmark scenario: a SQLite file in a temporary
//! folder, or a scratch database on the PostgreSQL test server. Which one is always said by
//! the caller.

use crate::postgres::ScratchDb;
use std::path::Path;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A database that is removed (or dropped) with this value.
pub enum Database {
    /// The folder holds `herald.db`.
    Sqlite(tempfile::TempDir),
    Postgres(ScratchDb),
}

/// The SQLite file's name in its folder.
pub const SQLITE_FILE: &str = "herald.db";

impl Database {
    /// A new SQLite database, in a folder of its own.
    pub fn sqlite() -> anyhow::Result<Database> {
        Ok(Database::Sqlite(tempfile::tempdir()?))
    }

    /// A new database on the PostgreSQL server at `server` if given, else SQLite.
    pub async fn fresh(postgres: Option<&str>) -> anyhow::Result<Database> {
        Ok(match postgres {
            Some(server) => Database::Postgres(ScratchDb::create(server).await?),
            None => Database::sqlite()?,
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Database::Sqlite(_) => Backend::Sqlite,
            Database::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(dir) => format!("sqlite://{}", dir.path().join(SQLITE_FILE).display()),
            Database::Postgres(db) => db.url.clone(),
        }
    }

    /// Bytes the database takes (SQLite: the file and its WAL).
    pub async fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            Database::Sqlite(dir) => Ok(sqlite_bytes(dir.path())),
            Database::Postgres(db) => db.size().await,
        }
    }
}

fn sqlite_bytes(dir: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(dir.join(format!("{SQLITE_FILE}{suffix}"))).ok())
        .map(|m| m.len())
        .sum()
}
