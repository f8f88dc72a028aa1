//! The real `herald` binary as a child process, with the tests' admin token.

use std::time::Duration;
use tokio::process::Child;

/// Starts `herald serve` on port 0 with the admin token `token`, extra arguments and
/// environment; returns it with its base URL once it listens.
pub async fn serve(db: &str, token: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut all = vec![("HERALD_ADMIN_TOKEN", token)];
    all.extend_from_slice(env);
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_herald"));
    herald_testkit::process::serve(exe, db, args, &all, Duration::from_secs(30))
        .await
        .expect("herald started within 30 s")
}

/// Starts `herald worker` on `db` with extra environment.
pub fn worker(db: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_herald"));
    herald_testkit::process::worker(exe, db, env).expect("start herald worker")
}

/// Starts `herald worker` on `db` with its metrics listener; returns it with that listener's
/// base URL.
pub async fn watched_worker(db: &str, env: &[(&str, &str)]) -> (Child, String) {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_herald"));
    herald_testkit::process::watched_worker(exe, db, env, Duration::from_secs(30))
        .await
        .expect("herald worker listening within 30 s")
}
