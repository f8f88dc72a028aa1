//! The real `herald` binary as a child process: `serve` on port 0 (its address read from what
//! it prints), `worker`, and stopping either as an operator would.

use anyhow::{bail, Context};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What every child gets unless the caller says otherwise: quiet logs, and scratch PostgreSQL
/// databases noted nowhere.
const QUIET: [(&str, &str); 2] = [("RUST_LOG", "error"), ("HERALD_POSTGRES__IDENTITY_FILE", "")];

/// Starts `herald serve --listen 127.0.0.1:0 --database DB ARGS` with `env` (over `QUIET`);
/// returns it with its base URL once it listens (within `within`). Its standard output is read
/// to the end, so it never blocks on a full pipe.
pub async fn serve(
    exe: &Path,
    db: &str,
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> anyhow::Result<(Child, String)> {
    let mut child = herald(exe, &["serve", "--listen", "127.0.0.1:0", "--database", db], &[], env)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let url = printed(&mut child, "Herald listening on ", within).await?;
    Ok((child, url.trim_end_matches("/api/").to_string()))
}

/// What follows `prefix` on the first line of `child`'s standard output that starts with it
/// (within `within`); the rest of the output is read to the end, so the child never blocks on
/// a full pipe.
async fn printed(child: &mut Child, prefix: &str, within: Duration) -> anyhow::Result<String> {
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let found = tokio::time::timeout(within, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.to_string());
            }
        }
        bail!("herald exited before printing {prefix:?}")
    })
    .await
    .with_context(|| format!("herald did not print {prefix:?} within {within:?}"))??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

/// Starts `herald worker --database DB` with `env` (over `QUIET`); it ends with the value.
pub fn worker(exe: &Path, db: &str, env: &[(&str, &str)]) -> anyhow::Result<Child> {
    herald(exe, &["worker", "--database", db], &[], env)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} worker", exe.display()))
}

/// `exe args` with `QUIET`, then `defaults`, then `env`; its standard error passed through,
/// killed when dropped.
fn herald(exe: &Path, args: &[&str], defaults: &[(&str, &str)], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(exe);
    command
        .args(args)
        .envs(QUIET)
        .envs(defaults.iter().copied())
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Starts `herald worker --database DB` with `env` (over `QUIET`) and `metrics.listen` on a
/// port of its own; returns it with that listener's base URL once it listens (within `within`).
pub async fn watched_worker(
    exe: &Path,
    db: &str,
    env: &[(&str, &str)],
    within: Duration,
) -> anyhow::Result<(Child, String)> {
    let listen = [("HERALD_METRICS__LISTEN", "127.0.0.1:0")];
    let mut child = herald(exe, &["worker", "--database", db], &listen, env)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} worker", exe.display()))?;
    let url = printed(&mut child, "Herald metrics on ", within).await?;
    Ok((child, url.trim_end_matches("/metrics").to_string()))
}

/// SIGTERM, then a bounded wait; SIGKILL if it has not exited by then.
pub async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Resident memory of process `pid` now and at its peak, in KiB (from `/proc`).
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
