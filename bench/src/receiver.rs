//! The benchmark's receiver: hyper, keep-alive, answers 204, verifies every signature, and
//! notes when each event arrived.

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub const SECRET: &str = "bench-secret";

#[derive(Default)]
pub struct Counts {
    pub received: AtomicU64,
    pub bad_signatures: AtomicU64,
    /// Event number (`data.id`) → first arrival; repeated ids are duplicates.
    pub arrivals: Mutex<HashMap<u64, Instant>>,
    pub duplicates: AtomicU64,
    pub last: Mutex<Option<Instant>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    /// When set, requests are held until the client gives up.
    hang: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(hang: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let counts = Arc::new(Counts::default());
        let hang = Arc::new(AtomicBool::new(hang));
        let (c, h) = (counts.clone(), hang.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let (c, h) = (c.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(c.clone(), h.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            counts,
            hang,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> u64 {
        self.counts.received.load(Ordering::Relaxed)
    }

    pub fn unique(&self) -> usize {
        self.counts.arrivals.lock().unwrap().len()
    }

    /// Waits (bounded) until `n` distinct events arrived; false on timeout.
    pub async fn wait_unique(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.unique() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.unique() >= n
    }

    pub fn stop_hanging(&self) {
        self.hang.store(false, Ordering::Relaxed);
    }
}

/// The number after `"id": ` in `"data": {"id": N` of a body as NetBox (and Herald) write
/// them, or in `"data":{"id":N` of a compact one.
fn event_number(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let at = ["\"data\": {\"id\": ", "\"data\":{\"id\":"]
        .iter()
        .find_map(|marker| text.find(marker).map(|at| at + marker.len()))?;
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

async fn handle(
    counts: Arc<Counts>,
    hang: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, hyper::Error> {
    let signature = req.headers().get("x-hook-signature").map(|v| v.as_bytes().to_vec());
    let body = req.into_body().collect().await?.to_bytes();
    let now = Instant::now();
    if hang.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let expected = herald::webhooks::signature::netbox(SECRET, &body);
    if signature.as_deref() != Some(expected.as_bytes()) {
        counts.bad_signatures.fetch_add(1, Ordering::Relaxed);
    }
    counts.received.fetch_add(1, Ordering::Relaxed);
    if let Some(n) = event_number(&body) {
        let mut arrivals = counts.arrivals.lock().unwrap();
        if arrivals.insert(n, now).is_some() {
            counts.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    *counts.last.lock().unwrap() = Some(now);
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Empty::new())
        .expect("static response"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_event_number() {
        let body = br#"{"event": "created", "data": {"id": 4821, "name": "x"}}"#;
        assert_eq!(super::event_number(body), Some(4821));
        assert_eq!(super::event_number(b"{}"), None);
        assert_eq!(super::event_number(br#"{"data":{"id":7}}"#), Some(7));
    }
}
