//! Running Herald: the HTTP API and, unless told otherwise, a delivery worker in-process.

use crate::api::{self, AppState};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::delivery::Worker;
use crate::store;
use anyhow::Context;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// An opened Herald: its database migrated, ready to serve.
pub struct App {
    pub state: AppState,
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
        let store = store::open(&config.database_url).await?;
        store.migrate().await?;
        Ok(App {
            state: AppState {
                store,
                catalog: Arc::new(catalog),
                config: Arc::new(config),
                wake: Arc::new(Notify::new()),
                worker_running: Arc::new(AtomicBool::new(false)),
            },
        })
    }

    fn worker(&self) -> Arc<Worker> {
        let st = &self.state;
        Worker::new(
            st.store.clone(),
            st.config.worker.clone(),
            st.config.retention.clone(),
            st.wake.clone(),
            st.worker_running.clone(),
        )
    }

    /// Serves the API on `listener` (with a worker when `with_worker`) until `shutdown` fires;
    /// then stops accepting, and lets the worker finish what it has in flight.
    pub async fn serve(
        self,
        listener: TcpListener,
        with_worker: bool,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let worker = with_worker.then(|| tokio::spawn(self.worker().run(shutdown.clone())));
        let app = api::router(self.state.clone());
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        if let Some(w) = worker {
            w.await?;
        }
        served?;
        Ok(())
    }

    /// Runs only the delivery worker until `shutdown` fires.
    pub async fn work(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.worker().run(shutdown).await;
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
