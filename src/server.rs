//! Running Herald: the HTTP API and, unless told otherwise, a delivery worker in-process.

use crate::api::{self, AppState};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::delivery::destinations::Policy;
use crate::delivery::Worker;
use crate::maintenance::notices::Notices;
use crate::maintenance::{health, heartbeat, retention};
use crate::service::Services;
use crate::store;
use crate::webhooks::health::Thresholds;
use anyhow::Context;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// An opened Herald: its database migrated, ready to serve.
pub struct App {
    pub state: AppState,
    /// The store, for what runs beside the API (the worker, heartbeats, purges): handlers,
    /// pages and the command line reach it only through `services()`.
    store: Arc<dyn store::Store>,
    /// Where notices go, when `[notices]` names a URL.
    notices: Option<Arc<Notices>>,
}

impl App {
    /// Opens and migrates the configured database.
    pub async fn open(config: Config) -> anyhow::Result<App> {
        let catalog = if config.catalog.is_empty() {
            Catalog::builtin()
        } else {
            let text = std::fs::read_to_string(&config.catalog)
                .with_context(|| format!("cannot read the catalog {}", config.catalog))?;
            Catalog::from_toml(&text).with_context(|| format!("the catalog {} is invalid", config.catalog))?
        };
        let store = store::open(&config.database_url, &config.postgres).await?;
        store.migrate().await?;
        let types: Vec<&str> = catalog.types().iter().map(|t| t.name()).collect();
        store.prepare_object_types(&types).await?;
        let own: Vec<std::net::SocketAddr> = config.listen.parse().into_iter().collect();
        let destinations = Policy::from_config(&config.destinations, own)?;
        let notices = Notices::ensure(store.as_ref(), &config.notices)
            .await
            .context("cannot ready the notices' webhook")?;
        Ok(App {
            state: AppState {
                svc: Services::new(store.clone(), Arc::new(catalog), Arc::new(config), destinations),
                worker_running: Arc::new(AtomicBool::new(false)),
            },
            store,
            notices,
        })
    }

    /// The services the API, the command line and the pages call.
    pub fn services(&self) -> &Services {
        &self.state.svc
    }

    /// The store itself: for the delivery worker and maintenance tasks, and for tests that
    /// look under the service layer.
    pub fn store(&self) -> &Arc<dyn store::Store> {
        &self.store
    }

    /// A delivery worker over this database (not started).
    pub fn worker(&self) -> Arc<Worker> {
        let svc = &self.state.svc;
        Worker::new(
            self.store.clone(),
            svc.config.worker.clone(),
            svc.clients(),
            svc.sandbox.clone(),
            self.state.worker_running.clone(),
            self.notices.clone(),
            svc.metrics.clone(),
        )
    }

    /// Runs a worker with its companions (heartbeat, retention purges) until `shutdown`.
    async fn run_worker(&self, shutdown: CancellationToken) {
        let svc = &self.state.svc;
        // Where the fleet's API nodes listen is known before the first delivery goes.
        heartbeat::refresh_api_nodes(self.store.as_ref(), &svc.destinations).await;
        let beats = tokio::spawn(heartbeat::run(
            self.store.clone(),
            svc.destinations.clone(),
            shutdown.clone(),
        ));
        let purges = tokio::spawn(retention::run(
            self.store.clone(),
            svc.config.retention.clone(),
            svc.config.ingest.dedup_window_secs,
            shutdown.clone(),
        ));
        let w = &svc.config.worker;
        let health = tokio::spawn(health::run(
            self.store.clone(),
            self.notices.clone(),
            Thresholds {
                failing_after: svc.config.notices.failing_after,
                disable_after: chrono::Duration::milliseconds((w.disable_failing_after_secs * 1000.0) as i64),
            },
            std::time::Duration::from_secs_f64(w.health_interval_secs),
            shutdown.clone(),
        ));
        self.worker().run(shutdown).await;
        let _ = health.await;
        let _ = purges.await;
        let _ = beats.await;
    }

    /// Serves the API on `listener` (with a worker when `with_worker`) until `shutdown` fires;
    /// then stops accepting, and lets the worker finish what it has in flight.
    pub async fn serve(
        self,
        listener: TcpListener,
        with_worker: bool,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut node = None;
        if let Ok(addr) = listener.local_addr() {
            self.state.svc.destinations.set_own(addr);
            let addresses = heartbeat::reachable_at(addr).await;
            let store = self.store.clone();
            node = Some(tokio::spawn(heartbeat::run_api_node(
                store,
                addresses,
                shutdown.clone(),
            )));
        }
        let ops = self.ops_listener(shutdown.clone()).await?;
        let app = api::router(self.state.clone(), crate::ui::pages(&self.state));
        let this = Arc::new(self);
        let worker = with_worker.then(|| {
            let (this, shutdown) = (this.clone(), shutdown.clone());
            tokio::spawn(async move { this.run_worker(shutdown).await })
        });
        api::serve::serve(listener, app, &this.state.svc.config.api, shutdown.clone()).await;
        shutdown.cancel();
        if let Some(w) = worker {
            w.await?;
        }
        if let Some(n) = node {
            let _ = n.await;
        }
        if let Some(o) = ops {
            let _ = o.await;
        }
        Ok(())
    }

    /// Keeps the metrics' histograms folded until `shutdown`, and serves `/metrics`,
    /// `/healthz` and `/readyz` on `metrics.listen`, when set; prints where (`Herald metrics on
    /// http://ADDR/metrics`).
    async fn ops_listener(&self, shutdown: CancellationToken) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        tokio::spawn(self.state.svc.metrics.clone().keep_up(shutdown.clone()));
        let config = self.state.svc.config.clone();
        let listen = &config.metrics.listen;
        if listen.is_empty() {
            return Ok(None);
        }
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (metrics.listen)"))?;
        println!("Herald metrics on http://{}/metrics", listener.local_addr()?);
        let router = api::ops::open_router(self.state.clone());
        Ok(Some(tokio::spawn(async move {
            api::serve::serve(listener, router, &config.api, shutdown).await;
        })))
    }

    /// Runs only the delivery worker until `shutdown` fires.
    pub async fn work(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ops = self.ops_listener(shutdown.clone()).await?;
        self.run_worker(shutdown.clone()).await;
        shutdown.cancel();
        if let Some(o) = ops {
            let _ = o.await;
        }
        Ok(())
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}
