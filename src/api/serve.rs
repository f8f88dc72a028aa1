//! The HTTP server: HTTP/1.1 with a bound on connections, each request told where it came
//! from (for rate limits), and every connection watched (`connections`): one that has not sent
//! a whole request head in `header_read_timeout_secs`, or sits idle between requests for
//! `idle_timeout_secs`, is closed; and when all slots are taken, a new client takes the slot
//! of the connection that has waited longest without a request in progress, so clients that
//! open connections and send nothing cannot keep honest ones out.

mod connections;

use crate::config::ApiConfig;
use axum::extract::ConnectInfo;
use axum::Router;
use connections::{Registry, Watched};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// How long open requests get to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`; then stops accepting and lets open
/// requests finish (for a while).
pub async fn serve(listener: TcpListener, router: Router, limits: &ApiConfig, shutdown: CancellationToken) {
    let registry = Registry::new(
        limits.max_connections,
        Duration::from_secs_f64(limits.header_read_timeout_secs),
        Duration::from_secs_f64(limits.idle_timeout_secs),
    );
    let sweeper = tokio::spawn(registry.clone().sweep(shutdown.clone()));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // Head and idle timeouts are the registry's; hyper's own would not tell them apart.
    http.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    loop {
        // With every slot taken by requests in progress, excess clients wait in the kernel's
        // backlog instead of costing memory here.
        if !registry.wait_for_room(&shutdown).await {
            break;
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn_state = registry.admit();
        let router = router.clone();
        let on_request = conn_state.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let guard = on_request.request_started();
            let call = router.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let resp = call.await?;
                Ok::<_, std::convert::Infallible>(resp.map(|body| connections::guarded(body, guard)))
            }
        });
        let io = TokioIo::new(Watched::new(stream, conn_state.clone()));
        let conn = graceful.watch(http.serve_connection(io, service));
        let registry = registry.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    debug!(error = %e, %peer, "connection ended with an error");
                },
                why = conn_state.closed() => debug!(%peer, why, "connection closed"),
            }
            registry.remove(&conn_state);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        warn!("requests still open after the shutdown grace period were cut");
    }
    let _ = sweeper.await;
}
