//! Connections on their own threads, each running whole units of work sent to it as closures:
//! a transaction of many statements costs one hand-off between threads, not one per statement.

use crate::store::{Result, StoreError};
use rusqlite::Connection;
use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A group of connection threads taking jobs from one queue.
pub struct Lane {
    jobs: mpsc::Sender<Job>,
}

impl Lane {
    /// Starts one thread per connection, named `herald-{name}-{i}`.
    pub fn open(connections: Vec<Connection>, name: &str) -> std::io::Result<Lane> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for (i, mut conn) in connections.into_iter().enumerate() {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("herald-{name}-{i}"))
                .spawn(move || loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&mut conn),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Lane { jobs })
    }

    /// A second handle on the same threads.
    pub fn share(&self) -> Lane {
        Lane {
            jobs: self.jobs.clone(),
        }
    }

    /// Runs `f` on one of the lane's connections.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.run_any(f).await?
    }

    /// Runs `f`, whatever it returns.
    pub async fn run_any<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the database thread has stopped")))?;
        rx.await
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the database thread stopped mid-job")))
    }
}

/// Runs a future that must not wait: work on a connection already in hand, on its own thread.
/// A future that waits would stall the database thread, so waiting is an error, not a spin.
pub fn run_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_futures_run_and_waiting_ones_are_refused() {
        assert_eq!(run_ready(async { 2 + 2 }), Some(4));
        let waits = async {
            let mut yielded = false;
            std::future::poll_fn(|_| {
                if yielded {
                    Poll::Ready(())
                } else {
                    yielded = true;
                    Poll::Pending
                }
            })
            .await
        };
        assert_eq!(run_ready(waits), None);
    }
}
