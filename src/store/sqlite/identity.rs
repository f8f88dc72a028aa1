//! A database file is never silently replaced. Beside `herald.db`, Herald keeps
//! `herald.db.id`, the identity the database holds in `herald_meta`. On start, a database file
//! that is gone while its identity file is there, or a file whose identity differs, is refused
//! with what to do; so is a file Herald cannot write. A new database is made only where there
//! is neither. While Herald runs, the writer's every commit first checks that the path still
//! names the file it opened (`FileGuard`): a file deleted or replaced under it fails the write
//! instead of acknowledging what no file will keep.

use rusqlite::{Connection, OptionalExtension};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a write refused by `FileGuard` answers.
pub const LOST: &str =
    "The database file Herald opened was deleted or replaced while Herald ran, so nothing more is written \
     (GET /api/status/ says which). Put the file back, or restore it from a backup, and restart Herald.";

/// The database file as opened, by device and inode.
pub struct FileGuard {
    path: String,
    file: (u64, u64),
    problem: Mutex<Option<String>>,
}

impl FileGuard {
    pub fn new(path: &str) -> anyhow::Result<Arc<FileGuard>> {
        let m = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
        Ok(Arc::new(FileGuard {
            path: path.to_string(),
            file: (m.dev(), m.ino()),
            problem: Mutex::new(None),
        }))
    }

    /// Whether the path no longer names the file opened; why is kept for `problem`.
    pub fn lost(&self) -> bool {
        let why = match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.file => {
                // Put back where it was: writes go to a file the path names again.
                crate::sync::lock(&self.problem).take();
                return false;
            }
            Ok(_) => "was replaced by another file".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        let mut problem = crate::sync::lock(&self.problem);
        if problem.is_none() {
            *problem = Some(format!(
                "the database file {} {why} while Herald ran: writes are refused; put it back, or restore it from a backup, and restart Herald",
                self.path
            ));
        }
        true
    }

    /// Why writes are refused, once they are.
    pub fn problem(&self) -> Option<String> {
        crate::sync::lock(&self.problem).clone()
    }
}

fn id_file(db: &str) -> PathBuf {
    PathBuf::from(format!("{db}.id"))
}

/// Before anything is opened (or created): a database whose file is gone is not made anew.
pub fn check_present(db: &str) -> anyhow::Result<()> {
    let id_file = id_file(db);
    if !Path::new(db).exists() && id_file.exists() {
        anyhow::bail!(
            "the database {db} is gone, but {} says Herald kept one there. Restore {db} from a backup; \
             or, to start again with a new, empty database, delete {}",
            id_file.display(),
            id_file.display()
        );
    }
    Ok(())
}

/// After opening: Herald must be able to write it.
pub fn check_writable(conn: &Connection, db: &str) -> anyhow::Result<()> {
    if conn.is_readonly(rusqlite::DatabaseName::Main)? {
        anyhow::bail!(
            "the database {db} is read-only: give the user running Herald write access to it and to its folder \
             (SQLite writes {db}-wal and {db}-shm beside it)"
        );
    }
    Ok(())
}

/// The identity a database holds (`herald_meta`), if it has one.
pub fn stored_id(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let has_table: i64 = conn.query_row(
        "select count(*) from sqlite_master where type = 'table' and name = 'herald_meta'",
        [],
        |r| r.get(0),
    )?;
    if has_table == 0 {
        return Ok(None);
    }
    conn.query_row("select value from herald_meta where key = 'id'", [], |r| r.get(0))
        .optional()
}

/// After opening: a file whose identity is not the one noted beside it is another database.
pub fn check_same(conn: &Connection, db: &str) -> anyhow::Result<()> {
    let Ok(noted) = std::fs::read_to_string(id_file(db)) else {
        return Ok(());
    };
    match stored_id(conn)? {
        Some(id) if id != noted.trim() => anyhow::bail!(
            "{db} is not the database Herald kept here (its identity differs from {}). Put the right file back; \
             or, to use this one from now on, delete {}",
            id_file(db).display(),
            id_file(db).display()
        ),
        _ => Ok(()),
    }
}

/// After migrating: notes the identity beside the file, once.
pub fn note(conn: &Connection, db: &str) -> anyhow::Result<()> {
    let file = id_file(db);
    if file.exists() {
        return Ok(());
    }
    if let Some(id) = stored_id(conn)? {
        std::fs::write(&file, format!("{id}\n"))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
    }
    Ok(())
}
