//! Templates compiled and rendered in child processes (`herald sandbox`), each under a memory
//! bound set by the kernel (RLIMIT_DATA) and a time bound the parent enforces by killing it.
//! No template can take Herald's memory, or hold a worker, past those bounds: whatever it
//! builds, when compiled (minijinja folds constant expressions then) or rendered, a child that
//! runs out dies alone and is started again. A child keeps compiled templates up to a bound in
//! bytes; secrets never enter it (requests are signed by the parent).
//!
//! Parent and child speak one JSON object a line over the child's stdin and stdout.

use super::request::{BuildError, Compiled, Failure, Outgoing};
use super::{HttpMethod, Webhook};
use crate::events::Event;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

/// The first line a child writes, so the parent knows it started the right program.
const HELLO: &str = concat!("herald-sandbox ", env!("CARGO_PKG_VERSION"));
/// Compiled webhooks a child keeps at most.
const CACHED: usize = 64;
/// Bytes of compiled templates a child keeps at most (a fraction of its memory bound).
const CACHED_BYTES: usize = 8 * 1024 * 1024;
/// Longest answer line read from a child (a rendered request with its body).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

/// What a child needs of a webhook to build its request.
#[derive(Serialize, Deserialize, Clone)]
struct Spec {
    payload_url: String,
    additional_headers: String,
    body_template: String,
    http_content_type: String,
    http_method: String,
}

impl Spec {
    fn of(w: &Webhook) -> Spec {
        Spec {
            payload_url: w.payload_url.clone(),
            additional_headers: w.additional_headers.clone(),
            body_template: w.body_template.clone(),
            http_content_type: w.http_content_type.clone(),
            http_method: w.http_method.as_str().into(),
        }
    }

    /// Which compiled templates in a child's cache this spec can use.
    fn key(&self) -> u64 {
        let mut h = DefaultHasher::new();
        (&self.payload_url, &self.additional_headers, &self.body_template).hash(&mut h);
        h.finish()
    }

    fn webhook(&self) -> Webhook {
        let mut w = Webhook::blank();
        w.payload_url = self.payload_url.clone();
        w.additional_headers = self.additional_headers.clone();
        w.body_template = self.body_template.clone();
        w.http_content_type = self.http_content_type.clone();
        w.http_method = HttpMethod::parse(&self.http_method).unwrap_or(HttpMethod::Post);
        w
    }
}

#[derive(Serialize, Deserialize)]
struct Ask {
    spec: Spec,
    event: Event,
    delivery: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum Answer {
    Built(Outgoing),
    Failed {
        field: String,
        message: String,
        failure: Failure,
    },
}

/// Limits of the children.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The `herald` binary to run as `herald sandbox`.
    pub program: PathBuf,
    pub processes: usize,
    pub memory_bytes: u64,
    pub timeout: Duration,
}

/// A running child.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Asks it has answered (each may have left compiled templates in its cache).
    asked: u64,
}

/// An ask that brought no request back.
enum Lost {
    /// The child answered that the templates failed.
    Failed(BuildError),
    /// No child could be started.
    Unstarted(String),
    /// The child died (out of memory, or crashed); it held others' templates as well, or not.
    Died { why: String, held_others: bool },
    /// The child took longer than the time bound and was stopped.
    TimedOut,
}

impl Lost {
    fn error(self, webhook: &Webhook, timeout: Duration) -> BuildError {
        match self {
            Lost::Failed(e) => e,
            Lost::Unstarted(why) => lost(webhook, why, Failure::Render),
            Lost::Died { why, .. } => lost(webhook, why, Failure::Exhausted),
            Lost::TimedOut => lost(
                webhook,
                format!(
                    "compiling and rendering took longer than {} s and were stopped",
                    timeout.as_secs_f64()
                ),
                Failure::Exhausted,
            ),
        }
    }
}

/// The pool of sandbox children.
pub struct Sandbox {
    limits: Limits,
    slots: Vec<Mutex<Option<Proc>>>,
    next: AtomicUsize,
}

/// A render that did not come back: it is pinned on the template most likely at fault.
fn lost(webhook: &Webhook, message: String, failure: Failure) -> BuildError {
    let templated = |s: &str| s.contains("{{") || s.contains("{%");
    let field = if !webhook.body_template.is_empty() {
        "body_template"
    } else if templated(&webhook.additional_headers) {
        "additional_headers"
    } else {
        "payload_url"
    };
    BuildError::new(field, message, failure)
}

impl Sandbox {
    pub fn new(limits: Limits) -> Sandbox {
        let slots = (0..limits.processes.max(1)).map(|_| Mutex::new(None)).collect();
        Sandbox {
            limits,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    /// Builds the request `webhook` sends for `event` in a child, compiling its templates there
    /// first (or reusing them). A child that runs out of memory or time is replaced; a child
    /// that died while holding other templates too is tried once more, fresh, so that only
    /// this webhook's own templates decide. The request is not signed.
    pub async fn build(&self, webhook: &Webhook, event: &Event, delivery: Option<i64>) -> Result<Outgoing, BuildError> {
        let ask = Ask {
            spec: Spec::of(webhook),
            event: event.clone(),
            delivery,
        };
        let mut line = serde_json::to_string(&ask)
            .map_err(|e| lost(webhook, format!("cannot send the event: {e}"), Failure::Render))?;
        line.push('\n');
        match self.ask(&line, false).await {
            Err(Lost::Died { held_others: true, .. }) => self.ask(&line, true).await,
            other => other,
        }
        .map_err(|l| l.error(webhook, self.limits.timeout))
    }

    /// One ask on one child; on a child that has answered nothing before when `fresh`.
    async fn ask(&self, line: &str, fresh: bool) -> Result<Outgoing, Lost> {
        let mut slot = self.slot().await;
        if fresh && slot.as_ref().is_some_and(|p| p.asked > 0) {
            if let Some(p) = slot.take() {
                let _ = end(p).await;
            }
        }
        if slot.is_none() {
            *slot = Some(self.spawn().await.map_err(Lost::Unstarted)?);
        }
        let Some(proc) = slot.as_mut() else {
            return Err(Lost::Unstarted("no sandbox process".into()));
        };
        let held_others = proc.asked > 0;
        proc.asked += 1;
        match tokio::time::timeout(self.limits.timeout, exchange(proc, line)).await {
            Ok(Ok(Answer::Built(out))) => Ok(out),
            Ok(Ok(Answer::Failed {
                field,
                message,
                failure,
            })) => Err(Lost::Failed(BuildError::new(field_name(&field), message, failure))),
            Ok(Err(e)) => {
                let why = match slot.take() {
                    Some(p) => end(p).await,
                    None => e,
                };
                Err(Lost::Died { why, held_others })
            }
            Err(_) => {
                if let Some(p) = slot.take() {
                    let _ = end(p).await;
                }
                Err(Lost::TimedOut)
            }
        }
    }

    /// A free child's slot, else the next one in turn (waiting for it).
    async fn slot(&self) -> tokio::sync::MutexGuard<'_, Option<Proc>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(guard) = self.slots[(start + i) % n].try_lock() {
                return guard;
            }
        }
        self.slots[start % n].lock().await
    }

    async fn spawn(&self) -> Result<Proc, String> {
        let mut child = Command::new(&self.limits.program)
            .arg("sandbox")
            .env("HERALD_SANDBOX_MEMORY", self.limits.memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the template sandbox {}: {e}",
                    self.limits.program.display()
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the template sandbox has no pipes".into());
        };
        let mut stdout = BufReader::new(stdout);
        let mut hello = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut hello)).await;
        if !matches!(read, Ok(Ok(_))) || hello.trim_end() != HELLO {
            let _ = child.kill().await;
            return Err(format!(
                "{} did not start as Herald's template sandbox",
                self.limits.program.display()
            ));
        }
        Ok(Proc {
            child,
            stdin,
            stdout,
            asked: 0,
        })
    }
}

/// Sends one ask and reads its answer.
async fn exchange(proc: &mut Proc, line: &str) -> Result<Answer, String> {
    proc.stdin
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("the template sandbox went away: {e}"))?;
    proc.stdin
        .flush()
        .await
        .map_err(|e| format!("the template sandbox went away: {e}"))?;
    let mut answer = Vec::new();
    let mut limited = tokio::io::AsyncReadExt::take(&mut proc.stdout, MAX_ANSWER as u64);
    let n = tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut answer)
        .await
        .map_err(|e| format!("the template sandbox went away: {e}"))?;
    if n == 0 || answer.last() != Some(&b'\n') {
        return Err("the template sandbox ended without answering".into());
    }
    serde_json::from_slice(&answer).map_err(|e| format!("the template sandbox answered nonsense: {e}"))
}

/// Ends a child that failed, and says why it failed.
async fn end(mut proc: Proc) -> String {
    let _ = proc.child.start_kill();
    let status = tokio::time::timeout(Duration::from_secs(5), proc.child.wait()).await;
    let aborted = matches!(&status, Ok(Ok(s)) if std::os::unix::process::ExitStatusExt::signal(s) == Some(6));
    if aborted {
        "compiling and rendering the templates needed more memory than the sandbox allows, and were stopped".into()
    } else {
        "the template sandbox crashed while rendering".into()
    }
}

/// A field name as the `'static` one `BuildError` carries.
fn field_name(field: &str) -> &'static str {
    match field {
        "payload_url" => "payload_url",
        "additional_headers" => "additional_headers",
        "body_template" => "body_template",
        _ => "template",
    }
}

/// `herald sandbox`: sets the memory bound, says hello, then renders asks until stdin closes.
pub fn child_main() -> std::process::ExitCode {
    let budget: u64 = std::env::var("HERALD_SANDBOX_MEMORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 * 1024 * 1024);
    if let Err(e) = limit_memory(budget) {
        eprintln!("herald sandbox: cannot bound memory: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{HELLO}").and_then(|()| out.flush()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    let mut cache = Cache::default();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<Ask>(&line) {
            Ok(ask) => render(&mut cache, ask),
            Err(e) => Answer::Failed {
                field: "template".into(),
                message: format!("bad ask: {e}"),
                failure: Failure::Render,
            },
        };
        let Ok(text) = serde_json::to_string(&answer) else {
            break;
        };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

/// A child's compiled webhooks (or their compile errors), bounded in count and in bytes.
#[derive(Default)]
struct Cache {
    entries: HashMap<u64, (Result<Compiled, BuildError>, usize)>,
    bytes: usize,
}

impl Cache {
    /// Keeps `compiled` under `key`, emptying the cache first when it would go past a bound; a
    /// webhook bigger than the whole bound is not kept (it is compiled again when it renders).
    fn keep(&mut self, key: u64, compiled: Result<Compiled, BuildError>) {
        let weight = match &compiled {
            Ok(c) => c.weight(),
            Err(e) => e.message.len(),
        };
        if weight > CACHED_BYTES {
            return;
        }
        if self.entries.len() >= CACHED || self.bytes + weight > CACHED_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += weight;
        self.entries.insert(key, (compiled, weight));
    }
}

/// Builds an ask's request, with its webhook compiled now unless the cache has it.
fn render(cache: &mut Cache, ask: Ask) -> Answer {
    let webhook = ask.spec.webhook();
    let key = ask.spec.key();
    let build = |c: &Result<Compiled, BuildError>| match c {
        Ok(c) => c.build(&webhook, &ask.event, ask.delivery),
        Err(e) => Err(e.clone()),
    };
    let built = match cache.entries.get(&key) {
        Some((compiled, _)) => build(compiled),
        None => {
            let compiled = Compiled::new(&webhook);
            let built = build(&compiled);
            cache.keep(key, compiled);
            built
        }
    };
    match built {
        Ok(out) => Answer::Built(out),
        Err(e) => Answer::Failed {
            field: e.field.into(),
            message: e.message,
            failure: e.failure,
        },
    }
}

/// Bounds the heap (and every private mapping) of this process to what it holds now plus
/// `budget` bytes.
fn limit_memory(budget: u64) -> std::io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let data_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmData:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let limit = data_kib * 1024 + budget;
    rustix::process::setrlimit(
        rustix::process::Resource::Data,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )?;
    Ok(())
}
