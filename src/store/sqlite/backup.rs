//! `herald backup FILE`: a consistent copy of a SQLite database that may be in use, made with
//! SQLite's online backup in one step (one read transaction: every commit before it is in the
//! copy, none after), checked, and renamed into place only when whole; its identity is written
//! beside it (`FILE.id`), as Herald keeps one beside the database.

use super::identity;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// What a backup made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub bytes: u64,
    pub identity: Option<String>,
}

/// Copies the database at `url` into `dest` (which must not exist).
pub fn backup(url: &str, dest: &Path) -> anyhow::Result<Made> {
    let path = super::path_of(url)?;
    anyhow::ensure!(path != ":memory:", "an in-memory database cannot be backed up");
    anyhow::ensure!(Path::new(&path).exists(), "the database {path} does not exist");
    anyhow::ensure!(
        !dest.exists(),
        "{} exists already: name a new file (a backup never overwrites)",
        dest.display()
    );
    let source = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| anyhow::anyhow!("cannot open {path}: {e}"))?;
    source.busy_timeout(Duration::from_secs(30))?;
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let made = (|| {
        let mut copy =
            Connection::open(&partial).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))?;
        {
            let b = rusqlite::backup::Backup::new(&source, &mut copy)?;
            // All pages in one step: one snapshot, never restarted by writes meanwhile. A
            // writer holding a lock that a step needs makes it busy: it tries again, a while.
            let mut tries = 0;
            loop {
                match b.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    _ if tries < 600 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => anyhow::bail!("the database stayed locked for 30 s"),
                }
            }
        }
        let check: String = copy.query_row("pragma quick_check", [], |r| r.get(0))?;
        anyhow::ensure!(check == "ok", "the copy failed its check: {check}");
        let identity = identity::stored_id(&copy)?;
        drop(copy);
        Ok::<_, anyhow::Error>(identity)
    })();
    let identity = match made {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context(format!("backing up {path} failed")));
        }
    };
    std::fs::rename(&partial, dest).map_err(|e| anyhow::anyhow!("cannot name the copy {}: {e}", dest.display()))?;
    if let Some(id) = &identity {
        let id_file = format!("{}.id", dest.display());
        std::fs::write(&id_file, format!("{id}\n")).map_err(|e| anyhow::anyhow!("cannot write {id_file}: {e}"))?;
    }
    Ok(Made {
        bytes: std::fs::metadata(dest)?.len(),
        identity,
    })
}
