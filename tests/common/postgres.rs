//! Scratch PostgreSQL databases for tests: each test creates its own on the server named by
//! `HERALD_TEST_POSTGRES_URL` and drops it when done. Databases left by a test process that
//! died are dropped by the next one.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use tokio_postgres::NoTls;

/// The variable naming the server (a database on it to connect to first).
pub const VAR: &str = "HERALD_TEST_POSTGRES_URL";

/// Prefix of every scratch database, followed by the test process's id.
const PREFIX: &str = "herald_t_";

/// The server URL, or `None` (with a note on stderr saying what is skipped) when unset.
pub fn server_url(what: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: the test harness hides what tests print with eprintln.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{VAR} is not set: {what}");
            None
        }
    }
}

/// A database that is dropped with this value.
pub struct ScratchDb {
    pub url: String,
    server: String,
    name: String,
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Drops scratch databases of test processes that are gone.
async fn sweep(client: &tokio_postgres::Client) {
    let rows = client
        .query(
            "select datname from pg_database where datname like 'herald\\_t\\_%'",
            &[],
        )
        .await
        .expect("list databases");
    for row in rows {
        let name: String = row.get(0);
        let pid = name[PREFIX.len()..].split('_').next().unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = client
                .batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
                .await;
        }
    }
}

impl ScratchDb {
    /// A new, empty database on the server at `server`.
    pub async fn create(server: &str) -> ScratchDb {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{PREFIX}{}_{n}_{nanos}", std::process::id());
        let client = connect(server).await;
        if n == 0 {
            sweep(&client).await;
        }
        client
            .batch_execute(&format!("create database \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        ScratchDb {
            url: with_database(server, &name),
            server: server.to_string(),
            name,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        // Drop may run inside or outside a runtime: use a thread with one of its own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&server, NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
                    .await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("dropping scratch database {}: {e}", self.name);
        }
    }
}
