//! The real `herald` binary as a child process.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `herald serve` on port 0 with the admin token `token`, extra arguments and
/// environment; returns it with its base URL once it listens.
pub async fn serve(db: &str, token: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", db])
        .args(args)
        // Scratch PostgreSQL databases are not noted anywhere unless a test says where.
        .env("HERALD_POSTGRES__IDENTITY_FILE", "")
        .envs(env.iter().copied())
        .env("HERALD_ADMIN_TOKEN", token)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Herald listening on ") {
                return url.trim_end_matches("/api/").to_string();
            }
        }
        panic!("herald exited before listening");
    })
    .await
    .expect("herald started within 30 s");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

/// Starts `herald worker` on `db` with extra environment.
pub fn worker(db: &str, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["worker", "--database", db])
        .env("HERALD_POSTGRES__IDENTITY_FILE", "")
        .envs(env.iter().copied())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald worker")
}
