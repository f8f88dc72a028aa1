//! Password hashing and checking on one thread of its own: argon2 is slow and takes 19 MiB per
//! hash on purpose, so it stays off the async threads, and one thread (one allocator arena)
//! keeps what a flood of logins can cost in memory to one hash's worth.

use super::{Error, Result};
use std::sync::mpsc;
use std::sync::Mutex;

type Job = Box<dyn FnOnce() + Send>;

pub struct Passwords {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Passwords {
    pub fn start() -> Passwords {
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("herald-passwords".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the password thread; password checks will fail");
        }
        Passwords { jobs: Mutex::new(jobs) }
    }

    /// Runs `f` on the password thread.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        crate::sync::lock(&self.jobs)
            .send(job)
            .map_err(|_| Error::Internal(anyhow::anyhow!("the password thread has stopped")))?;
        rx.await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the password thread stopped mid-check")))
    }
}
