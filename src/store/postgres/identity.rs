//! A PostgreSQL database is never silently replaced, as a SQLite file is not: each process
//! notes the identity of every database it has used (its `herald_meta` id), a line per server
//! and database name, in `postgres.identity_file`. A process pointed at a database it has used
//! before refuses to start when that database is now empty (dropped and made anew) or holds
//! another Herald's data, before it migrates anything, and says what to do.

use super::map_err;
use crate::store::{Result, StoreError};
use deadpool_postgres::GenericClient;
use std::path::PathBuf;

/// Where a process notes the databases it has used, and which one this is.
pub struct Noted {
    /// Empty: identities are not noted (nor checked).
    pub file: PathBuf,
    /// `host:port/dbname`, as the URL names them.
    pub target: String,
}

impl Noted {
    /// The target a configuration connects to.
    pub fn new(file: &str, pg: &tokio_postgres::Config) -> Noted {
        let hosts: Vec<String> = pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = pg.get_ports().iter().map(u16::to_string).collect();
        let target = format!(
            "{}:{}/{}",
            hosts.join(","),
            if ports.is_empty() {
                "5432".into()
            } else {
                ports.join(",")
            },
            pg.get_dbname().unwrap_or_default()
        );
        Noted {
            file: PathBuf::from(file),
            target,
        }
    }

    /// The identity noted for this target, if any.
    fn noted(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        text.lines().find_map(|l| {
            let (target, id) = l.rsplit_once(' ')?;
            (target == self.target).then(|| id.trim().to_string())
        })
    }

    /// Before migrating: a database this process has used must still hold the same identity.
    pub fn check(&self, stored: Option<&str>) -> Result<()> {
        if self.file.as_os_str().is_empty() {
            return Ok(());
        }
        let Some(noted) = self.noted() else {
            return Ok(());
        };
        let what = match stored {
            Some(id) if id == noted => return Ok(()),
            Some(_) => "holds another Herald database (its identity differs)",
            None => "is empty: it was dropped, or re-created, since",
        };
        Err(StoreError::Other(anyhow::anyhow!(
            "the PostgreSQL database {} {what} Herald last used it (noted in {}). Restore it from a backup; \
             or, to use this database from now on (an empty one is set up anew, with a new admin), remove its \
             line from {}",
            self.target,
            self.file.display(),
            self.file.display()
        )))
    }

    /// After migrating: notes the identity, once.
    pub fn note(&self, stored: &str) -> Result<()> {
        if self.file.as_os_str().is_empty() || self.noted().is_some() {
            return Ok(());
        }
        let mut text = std::fs::read_to_string(&self.file).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{} {stored}\n", self.target));
        std::fs::write(&self.file, text)
            .map_err(|e| StoreError::Other(anyhow::anyhow!("cannot write {}: {e}", self.file.display())))
    }
}

/// The identity a database holds, if it holds Herald's tables.
pub async fn stored<C: GenericClient>(c: &C) -> Result<Option<String>> {
    let exists: bool = c
        .query_one("select to_regclass('herald_meta') is not null", &[])
        .await
        .map_err(map_err)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = c
        .query_opt("select value from herald_meta where key = 'id'", &[])
        .await
        .map_err(map_err)?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_noted_per_database_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ids");
        let file = file.to_str().unwrap();
        let a = Noted::new(file, &"postgres://u@db.example:5433/herald".parse().unwrap());
        let b = Noted::new(file, &"postgres://u@db.example/other".parse().unwrap());
        assert_eq!(a.target, "db.example:5433/herald");
        // Nothing noted: anything goes.
        assert!(a.check(None).is_ok() && a.check(Some("x")).is_ok());
        a.note("id-a").unwrap();
        b.note("id-b").unwrap();
        a.note("id-other").unwrap();
        assert!(a.check(Some("id-a")).is_ok());
        assert!(b.check(Some("id-b")).is_ok());
        let empty = a.check(None).unwrap_err().to_string();
        assert!(empty.contains("is empty") && empty.contains(file), "{empty}");
        let other = a.check(Some("id-b")).unwrap_err().to_string();
        assert!(other.contains("another Herald database"), "{other}");
        // Off when no file is set.
        assert!(Noted::new("", &"postgres://u@h/d".parse().unwrap()).check(None).is_ok());
    }
}
