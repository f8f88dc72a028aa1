//! Heartbeats: each worker notes itself in the database every few seconds, so `/api/status/`
//! counts the workers running anywhere on the same database; each API node notes the
//! addresses it listens on, and every worker reads them into its destination policy, so no
//! worker of a fleet delivers to Herald's own API.

use crate::delivery::destinations::Policy;
use crate::store::Store;
use chrono::Utc;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often a worker or an API node reports.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A worker silent for this long (three reports missed) is not counted.
pub fn stale_after() -> chrono::Duration {
    chrono::Duration::seconds(15)
}

/// An API node silent for this long is no longer refused as Herald's own (a node killed
/// without a word may come back on the same address within this).
pub fn api_node_forgotten_after() -> chrono::Duration {
    chrono::Duration::hours(1)
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Reports every `INTERVAL` until cancelled, then removes the worker's entry. Each time, it
/// also reads where the fleet's API nodes listen into `policy`.
pub async fn run(store: Arc<dyn Store>, policy: Arc<Policy>, cancel: CancellationToken) {
    let id = uuid::Uuid::new_v4().to_string();
    let (host, pid) = (host(), std::process::id());
    loop {
        if let Err(e) = store.worker_heartbeat(&id, &host, pid, Utc::now()).await {
            warn!(error = ?e, "worker heartbeat failed");
        }
        refresh_api_nodes(store.as_ref(), &policy).await;
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => break,
        }
    }
    if let Err(e) = store.worker_gone(&id).await {
        warn!(error = ?e, "removing the worker's heartbeat failed");
    }
}

/// Reads where the fleet's API nodes listen into `policy`.
pub async fn refresh_api_nodes(store: &dyn Store, policy: &Policy) {
    match store.api_addresses_since(Utc::now() - api_node_forgotten_after()).await {
        Ok(list) => policy.set_fleet(list.iter().filter_map(|a| a.parse().ok()).collect()),
        Err(e) => warn!(error = ?e, "reading the API nodes' addresses failed"),
    }
}

/// The addresses an API node listening on `bound` can be reached at: that address, and, when
/// it listens on every address, the host's own addresses (by its name) on that port.
pub async fn reachable_at(bound: SocketAddr) -> Vec<SocketAddr> {
    let mut out = vec![bound];
    if bound.ip().is_unspecified() {
        if let Ok(found) = tokio::net::lookup_host((host().as_str(), bound.port())).await {
            out.extend(found);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Notes this API node's addresses every `INTERVAL` until cancelled, then removes its entry.
pub async fn run_api_node(store: Arc<dyn Store>, addresses: Vec<SocketAddr>, cancel: CancellationToken) {
    let id = uuid::Uuid::new_v4().to_string();
    let (host, pid) = (host(), std::process::id());
    let listed: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
    loop {
        if let Err(e) = store.api_node_seen(&id, &host, pid, &listed, Utc::now()).await {
            warn!(error = ?e, "API node heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => break,
        }
    }
    if let Err(e) = store.api_node_gone(&id).await {
        warn!(error = ?e, "removing the API node's heartbeat failed");
    }
}
