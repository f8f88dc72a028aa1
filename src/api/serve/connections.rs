//! The server's connections, each in one phase: reading a request head (from its first byte,
//! or from being accepted), busy with a request (until its response is written), or idle
//! between requests. The registry closes heads and idle connections that outlast their
//! timeouts, and, at the connection cap, makes room for a new client by closing the
//! connection that has waited longest without a request in progress (heads before idle ones).

use axum::body::{Body, Bytes, HttpBody};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// Why the registry closed a connection.
const WHY: [&str; 4] = [
    "",
    "its request head took too long",
    "idle for too long",
    "its slot went to a new client",
];

/// One connection's phase, and the means to close it.
pub struct ConnState {
    id: u64,
    phase: AtomicU8,
    /// When the phase began, in milliseconds since the registry's epoch.
    since: AtomicU64,
    epoch: Instant,
    /// Set (to an index of `WHY`) when the registry closes it.
    why: AtomicU8,
    close: Notify,
    /// The registry's: told when this connection becomes idle.
    changed: Arc<Notify>,
}

impl ConnState {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn enter(&self, phase: u8) {
        self.since.store(self.now(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    /// A request's head is complete: busy until the returned guard (its response) is dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.enter(BUSY);
        RequestGuard(self.clone())
    }

    /// Bytes arrived: an idle connection is reading a head from now.
    fn bytes_read(&self) {
        if self
            .phase
            .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.since.store(self.now(), Ordering::Relaxed);
        }
    }

    fn shut(&self, why: u8) {
        self.why.store(why, Ordering::Relaxed);
        self.close.notify_one();
    }

    /// Resolves when the registry closes this connection, with why.
    pub async fn closed(&self) -> &'static str {
        self.close.notified().await;
        WHY[usize::from(self.why.load(Ordering::Relaxed)).min(WHY.len() - 1)]
    }

    /// Its eviction order when evictable: heads first, then the longest waiting.
    fn evictable(&self) -> Option<(u8, u64)> {
        match self.phase.load(Ordering::Acquire) {
            BUSY => None,
            phase => Some((phase, self.since.load(Ordering::Relaxed))),
        }
    }
}

/// Held while a request is handled and its response written.
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.enter(IDLE);
        self.0.changed.notify_one();
    }
}

/// The open connections.
pub struct Registry {
    cap: usize,
    head_timeout: Duration,
    idle_timeout: Duration,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    changed: Arc<Notify>,
}

impl Registry {
    pub fn new(cap: usize, head_timeout: Duration, idle_timeout: Duration) -> Arc<Registry> {
        Arc::new(Registry {
            cap: cap.max(1),
            head_timeout,
            idle_timeout,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
        })
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        crate::sync::lock(&self.conns)
    }

    /// Waits until a new connection can be taken: a free slot, or one to evict. False when
    /// `shutdown` fired first.
    pub async fn wait_for_room(&self, shutdown: &CancellationToken) -> bool {
        loop {
            {
                let conns = self.conns();
                if conns.len() < self.cap || conns.values().any(|c| c.evictable().is_some()) {
                    return true;
                }
            }
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = shutdown.cancelled() => return false,
            }
        }
    }

    /// Registers a connection just accepted, reading its first head; at the cap, first closes
    /// the connection that has waited longest without a request in progress.
    pub fn admit(&self) -> Arc<ConnState> {
        let mut conns = self.conns();
        if conns.len() >= self.cap {
            let oldest = conns
                .values()
                .filter_map(|c| c.evictable().map(|order| (order, c)))
                .min_by_key(|(order, _)| *order)
                .map(|(_, c)| c.clone());
            if let Some(c) = oldest {
                c.shut(3);
                conns.remove(&c.id);
            }
        }
        let state = Arc::new(ConnState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            epoch: self.epoch,
            why: AtomicU8::new(0),
            close: Notify::new(),
            changed: self.changed.clone(),
        });
        conns.insert(state.id, state.clone());
        state
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, state: &ConnState) {
        self.conns().remove(&state.id);
        self.changed.notify_one();
    }

    /// Closes heads and idle connections past their timeouts, until `shutdown`.
    pub async fn sweep(self: Arc<Self>, shutdown: CancellationToken) {
        let tick =
            (self.head_timeout.min(self.idle_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let (head, idle) = (
            self.head_timeout.as_millis() as u64,
            self.idle_timeout.as_millis() as u64,
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = self.epoch.elapsed().as_millis() as u64;
            for c in self.conns().values() {
                match c.evictable() {
                    Some((HEAD, since)) if now.saturating_sub(since) > head => c.shut(1),
                    Some((IDLE, since)) if now.saturating_sub(since) > idle => c.shut(2),
                    _ => {}
                }
            }
        }
    }
}

/// A connection's stream, telling its state when bytes arrive.
pub struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Watched<S> {
        Watched { inner, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its connection busy until it is written (or dropped).
struct Guarded {
    inner: Body,
    _guard: RequestGuard,
}

/// `body`, with the connection busy until it is done.
pub fn guarded(body: Body, guard: RequestGuard) -> Body {
    Body::new(Guarded {
        inner: body,
        _guard: guard,
    })
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_heads_go_first_then_the_longest_idle() {
        let r = Registry::new(3, Duration::from_secs(10), Duration::from_secs(60));
        let busy = r.admit();
        let _request = busy.request_started();
        let idle = r.admit();
        drop(idle.request_started());
        let head = r.admit();
        // Full: the head goes, not the idle one nor the busy one.
        let newer = r.admit();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), head.closed()).await,
            Ok(WHY[3])
        );
        // Full again: the newer head goes before the older idle connection.
        let newest = r.admit();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), newer.closed()).await,
            Ok(WHY[3])
        );
        // Only busy and idle ones: the idle one goes.
        let _second = newest.request_started();
        let _last = r.admit();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), idle.closed()).await,
            Ok(WHY[3])
        );
        assert_eq!(r.conns().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn heads_and_idle_connections_time_out_apart() {
        let r = Registry::new(10, Duration::from_secs(2), Duration::from_secs(30));
        let shutdown = CancellationToken::new();
        tokio::spawn(r.clone().sweep(shutdown.clone()));
        let head = r.admit();
        let idle = r.admit();
        drop(idle.request_started());
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), head.closed()).await,
            Ok(WHY[1])
        );
        // Bytes of a new request: a head from now, on the head's timeout.
        idle.bytes_read();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), idle.closed()).await,
            Ok(WHY[1])
        );
        let quiet = r.admit();
        drop(quiet.request_started());
        assert!(tokio::time::timeout(Duration::from_secs(20), quiet.closed())
            .await
            .is_err());
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), quiet.closed()).await,
            Ok(WHY[2])
        );
        shutdown.cancel();
    }
}
