//! Connections on their own threads, each running whole units of work sent to it as closures:
//! a transaction of many statements costs one hand-off between threads, not one per statement.
//!
//! Write transactions sent together are committed together (group commit): the writer takes
//! every write job already waiting, runs each in a savepoint of its own inside one transaction
//! and commits once. A job that fails is rolled back to its savepoint and answers its own error;
//! the others keep their work. No job is answered before the commit that holds it returns, so
//! an answered write is as durable as a write committed alone. Nothing waits to fill a group: a
//! lone write commits at once.

use crate::store::{Result, StoreError};
use rusqlite::Connection;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Write jobs committed together at most (a bound on what one failed commit can take back).
const GROUP: usize = 128;

/// A grouped job's work, done inside the group's transaction.
trait GroupJob: Send {
    /// Runs the work; the answer waits for the commit.
    fn run(self: Box<Self>, conn: &mut Connection) -> Box<dyn Answer>;
    /// Answers without running: the group's transaction could not begin.
    fn refuse(self: Box<Self>, why: &StoreError);
}

/// A grouped job's result, held until the group's commit is known.
trait Answer: Send {
    /// Whether the work succeeded (its savepoint is kept).
    fn held(&self) -> bool;
    /// Answers: the work's own result, or the commit's error when the commit failed.
    fn send(self: Box<Self>, commit: Option<&StoreError>);
}

enum Job {
    /// Runs on its own, outside any transaction of the lane's.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Runs inside a write transaction shared with the write jobs waiting beside it.
    Grouped(Box<dyn GroupJob>),
}

struct Work<F, T, E> {
    f: F,
    tx: tokio::sync::oneshot::Sender<std::result::Result<T, E>>,
}

struct Done<T, E> {
    result: std::result::Result<T, E>,
    tx: tokio::sync::oneshot::Sender<std::result::Result<T, E>>,
}

impl<F, T, E> GroupJob for Work<F, T, E>
where
    F: FnOnce(&mut Connection) -> std::result::Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &mut Connection) -> Box<dyn Answer> {
        let result = (self.f)(conn);
        Box::new(Done { result, tx: self.tx })
    }

    fn refuse(self: Box<Self>, why: &StoreError) {
        let _ = self.tx.send(Err(E::from(again(why))));
    }
}

impl<T: Send, E: From<StoreError> + Send> Answer for Done<T, E> {
    fn held(&self) -> bool {
        self.result.is_ok()
    }

    fn send(self: Box<Self>, commit: Option<&StoreError>) {
        let result = match (self.result, commit) {
            (Ok(_), Some(e)) => Err(E::from(again(e))),
            (result, _) => result,
        };
        let _ = self.tx.send(result);
    }
}

/// The same error, for each job of a group that one failure answers.
fn again(e: &StoreError) -> StoreError {
    match e {
        StoreError::Lost(why) => StoreError::Lost(why.clone()),
        StoreError::NotFound => StoreError::NotFound,
        StoreError::ForeignKey => StoreError::ForeignKey,
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        e => StoreError::Other(anyhow::anyhow!("{e:#}")),
    }
}

/// How many commits the lane's groups made, and how many write jobs they held.
#[derive(Default)]
pub struct GroupStats {
    commits: AtomicU64,
    jobs: AtomicU64,
}

impl GroupStats {
    /// (commits, write jobs committed or rolled back in them).
    pub fn get(&self) -> (u64, u64) {
        (self.commits.load(Ordering::Relaxed), self.jobs.load(Ordering::Relaxed))
    }
}

fn step(conn: &Connection, text: &str) -> Result<()> {
    conn.prepare_cached(text)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(super::map_err)
}

/// Runs `jobs` in one write transaction, each in a savepoint, and answers each after the
/// commit. A lone job needs no savepoint: its failure rolls the whole transaction back.
fn run_group(conn: &mut Connection, jobs: Vec<Box<dyn GroupJob>>, stats: &GroupStats) {
    if let Err(e) = step(conn, "BEGIN IMMEDIATE") {
        jobs.into_iter().for_each(|j| j.refuse(&e));
        return;
    }
    let alone = jobs.len() == 1;
    let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(jobs.len());
    let mut broken: Option<StoreError> = None;
    for job in jobs {
        if let Some(e) = &broken {
            job.refuse(e);
            continue;
        }
        if !alone {
            if let Err(e) = step(conn, "SAVEPOINT herald_job") {
                job.refuse(&e);
                continue;
            }
        }
        let answer = job.run(conn);
        if conn.is_autocommit() {
            // SQLite ended the transaction itself (a full disk, an I/O error): every job
            // before this one lost its work with it.
            broken = Some(StoreError::Other(anyhow::anyhow!(
                "the database rolled back the write transaction"
            )));
        } else if !alone {
            let undo = if answer.held() {
                step(conn, "RELEASE herald_job")
            } else {
                step(conn, "ROLLBACK TO herald_job").and_then(|_| step(conn, "RELEASE herald_job"))
            };
            if let Err(e) = undo {
                broken = Some(e);
            }
        }
        answers.push(answer);
    }
    let commit = match &broken {
        Some(e) => Err(again(e)),
        None if alone && !answers.iter().all(|a| a.held()) => step(conn, "ROLLBACK"),
        None => step(conn, "COMMIT"),
    };
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.jobs.fetch_add(answers.len() as u64, Ordering::Relaxed);
    let commit = commit.err();
    for answer in answers {
        answer.send(commit.as_ref());
    }
}

/// A group of connection threads taking jobs from one queue.
pub struct Lane {
    jobs: mpsc::Sender<Job>,
    stats: Arc<GroupStats>,
}

impl Lane {
    /// Starts one thread per connection, named `herald-{name}-{i}`.
    pub fn open(connections: Vec<Connection>, name: &str) -> std::io::Result<Lane> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let stats = Arc::new(GroupStats::default());
        for (i, mut conn) in connections.into_iter().enumerate() {
            let (queue, stats) = (queue.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("herald-{name}-{i}"))
                .spawn(move || {
                    let mut next: Option<Job> = None;
                    loop {
                        let job = match next.take() {
                            Some(job) => job,
                            None => match queue.lock().map(|q| q.recv()) {
                                Ok(Ok(job)) => job,
                                _ => return,
                            },
                        };
                        match job {
                            Job::Alone(job) => job(&mut conn),
                            Job::Grouped(first) => {
                                let mut group = vec![first];
                                if let Ok(q) = queue.lock() {
                                    while group.len() < GROUP {
                                        match q.try_recv() {
                                            Ok(Job::Grouped(job)) => group.push(job),
                                            Ok(other) => {
                                                next = Some(other);
                                                break;
                                            }
                                            Err(_) => break,
                                        }
                                    }
                                }
                                run_group(&mut conn, group, &stats);
                            }
                        }
                    }
                })?;
        }
        Ok(Lane { jobs, stats })
    }

    /// A second handle on the same threads.
    pub fn share(&self) -> Lane {
        Lane {
            jobs: self.jobs.clone(),
            stats: self.stats.clone(),
        }
    }

    /// The lane's group commits so far.
    pub fn stats(&self) -> &GroupStats {
        &self.stats
    }

    fn stopped() -> StoreError {
        StoreError::Other(anyhow::anyhow!("the database thread has stopped"))
    }

    fn stopped_mid_job() -> StoreError {
        StoreError::Other(anyhow::anyhow!("the database thread stopped mid-job"))
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
            .send(Job::Alone(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            })))
            .map_err(|_| Lane::stopped())?;
        rx.await.map_err(|_| Lane::stopped_mid_job())
    }

    /// Runs `f` in a write transaction, committed with the write jobs waiting beside it; all of
    /// `f`'s work or none is kept, and the answer comes after the commit. The job is queued when
    /// this is called, not when the future is first polled.
    pub fn write<T, E, F>(&self, f: F) -> impl Future<Output = std::result::Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Connection) -> std::result::Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .jobs
            .send(Job::Grouped(Box::new(Work { f, tx })))
            .map_err(|_| Lane::stopped());
        async move {
            sent?;
            rx.await.map_err(|_| E::from(Lane::stopped_mid_job()))?
        }
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

    fn scratch() -> (tempfile::TempDir, String, Lane) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lane.db").display().to_string();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.execute_batch("create table t (x integer primary key)").unwrap();
        (dir, path, Lane::open(vec![conn], "test").unwrap())
    }

    fn insert(x: i64) -> impl FnOnce(&mut Connection) -> Result<i64> {
        move |c: &mut Connection| {
            c.execute("insert into t (x) values (?)", [x])
                .map_err(crate::store::sqlite::map_err)?;
            Ok(x)
        }
    }

    /// Holds the lane's thread until the returned sender is dropped, so what is sent meanwhile
    /// waits together.
    fn hold(lane: &Lane) -> std::sync::mpsc::Sender<()> {
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let _held = lane.run_any(move |_| {
            let _ = gate.recv();
        });
        open
    }

    fn stored(path: &str) -> Vec<i64> {
        let conn = Connection::open(path).unwrap();
        let mut s = conn.prepare("select x from t order by x").unwrap();
        let rows = s.query_map([], |r| r.get(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    #[tokio::test]
    async fn writes_sent_together_commit_once_and_a_failure_keeps_to_itself() {
        let (_dir, path, lane) = scratch();
        let (commits, _) = lane.stats().get();
        let gate = hold(&lane);
        let writes: Vec<_> = (1..=10)
            .map(|x| {
                // The seventh write breaks the primary key: it fails alone.
                let x = if x == 7 { 3 } else { x };
                lane.write(insert(x))
            })
            .collect();
        // A write that does some work, then fails: none of its work is kept.
        let half = lane.write(|c: &mut Connection| -> Result<()> {
            c.execute("insert into t (x) values (100)", [])
                .map_err(crate::store::sqlite::map_err)?;
            Err(StoreError::NotFound)
        });
        drop(gate);
        let mut answers = Vec::new();
        for w in writes {
            answers.push(w.await);
        }
        assert!(matches!(half.await, Err(StoreError::NotFound)));
        for (i, a) in answers.iter().enumerate() {
            match i {
                6 => assert!(matches!(a, Err(StoreError::Unique(_))), "{a:?}"),
                _ => assert_eq!(a.as_ref().ok(), Some(&(i as i64 + 1))),
            }
        }
        assert_eq!(
            lane.stats().get(),
            (commits + 1, 11),
            "one commit for the eleven writes"
        );
        // Answered means committed: another connection reads every held write.
        assert_eq!(stored(&path), vec![1, 2, 3, 4, 5, 6, 8, 9, 10]);
    }

    #[tokio::test]
    async fn a_lone_write_commits_at_once_and_a_failed_one_keeps_nothing() {
        let (_dir, path, lane) = scratch();
        assert_eq!(lane.write(insert(1)).await.unwrap(), 1);
        assert_eq!(stored(&path), vec![1]);
        let failed = lane
            .write(|c: &mut Connection| -> Result<()> {
                c.execute("insert into t (x) values (2)", [])
                    .map_err(crate::store::sqlite::map_err)?;
                Err(StoreError::NotFound)
            })
            .await;
        assert!(matches!(failed, Err(StoreError::NotFound)));
        assert_eq!(stored(&path), vec![1]);
        assert_eq!(lane.stats().get(), (2, 2));
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_write_of_its_group() {
        let (_dir, path, lane) = scratch();
        // The commit hook turns the group's commit into a rollback.
        lane.run_any(|c| c.commit_hook(Some(|| true))).await.unwrap();
        let gate = hold(&lane);
        let writes: Vec<_> = (1..=3).map(|x| lane.write(insert(x))).collect();
        drop(gate);
        for w in writes {
            assert!(w.await.is_err(), "a write whose commit failed was answered as done");
        }
        assert!(stored(&path).is_empty());
    }
}
