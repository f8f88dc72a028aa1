//! Scratch PostgreSQL databases: each test and each benchmark scenario runs on one of its own,
//! made on the server named by `HERALD_TEST_POSTGRES_URL` and dropped after. A database left
//! by a process that died (its id is in the name) is dropped by the next process that makes
//! one.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio_postgres::NoTls;

/// Prefix of every scratch database, followed by the making process's id.
const PREFIX: &str = "herald_t_";

/// A database that is dropped with this value.
pub struct ScratchDb {
    /// Its URL.
    pub url: String,
    server: String,
    name: String,
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at {}: {e}",
            herald::store::redact_url(url)
        )
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// Drops scratch databases of processes that are gone.
async fn sweep(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let rows = client
        .query(
            "select datname from pg_database where datname like 'herald\\_t\\_%'",
            &[],
        )
        .await?;
    for row in rows {
        let name: String = row.get(0);
        let pid = name[PREFIX.len()..].split('_').next().unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            client
                .batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
                .await?;
        }
    }
    Ok(())
}

impl ScratchDb {
    /// A new, empty database on the server at `server` (a URL naming any database on it).
    pub async fn create(server: &str) -> anyhow::Result<ScratchDb> {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{PREFIX}{}_{n}_{nanos}", std::process::id());
        let client = connect(server).await?;
        if n == 0 {
            sweep(&client).await?;
        }
        client.batch_execute(&format!("create database \"{name}\"")).await?;
        Ok(ScratchDb {
            url: with_database(server, &name),
            server: server.to_string(),
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes the database takes on disk.
    pub async fn size(&self) -> anyhow::Result<u64> {
        let client = connect(&self.server).await?;
        let row = client
            .query_one("select pg_database_size($1::text)", &[&self.name])
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        // Drop may run inside or outside a runtime: use a thread with one of its own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let client = connect(&server).await?;
                client
                    .batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
                    .await?;
                Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = done {
            let e: anyhow::Error = e;
            eprintln!("dropping the scratch database {} failed: {e:#}", self.name);
        }
    }
}

/// The variable naming the test server (a database on it to connect to first).
pub const VAR: &str = "HERALD_TEST_POSTGRES_URL";

/// When set (to anything), a test that needs PostgreSQL fails without a server instead of
/// skipping: CI sets it.
pub const REQUIRE_VAR: &str = "HERALD_TEST_REQUIRE_POSTGRES";

/// The server URL; `None` (saying on stderr what is skipped) when the variable is unset,
/// unless PostgreSQL is required, which fails the test instead.
pub fn server_url(what: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os(REQUIRE_VAR).is_none(),
                "{REQUIRE_VAR} is set, but {VAR} is not: {what}"
            );
            // Straight to stderr: the test harness hides what tests print with eprintln.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: {what} ({VAR} is not set)");
            None
        }
    }
}

/// A new database on `server`, dropped with the value; a failure to make one fails the test.
pub async fn scratch_db(server: &str) -> ScratchDb {
    ScratchDb::create(server)
        .await
        .unwrap_or_else(|e| panic!("making a scratch database: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn urls_get_another_database() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://u@h/db?connect_timeout=3", "x"),
            "postgres://u@h/x?connect_timeout=3"
        );
    }
}
