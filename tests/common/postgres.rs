//! Scratch PostgreSQL databases for tests: each test creates its own on the server named by
//! `HERALD_TEST_POSTGRES_URL` and drops it when done. Databases left by a test process that
//! died are dropped by the next one.
#![allow(dead_code)]

pub use herald::store::postgres::scratch::ScratchDb;

/// The variable naming the server (a database on it to connect to first).
pub const VAR: &str = "HERALD_TEST_POSTGRES_URL";

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

/// A new database on `server`, dropped with the value.
pub async fn scratch_db(server: &str) -> ScratchDb {
    ScratchDb::create(server)
        .await
        .unwrap_or_else(|e| panic!("making a scratch database: {e:#}"))
}
