//! Templates rendered in child processes (`herald sandbox`), each under a memory bound set by
//! the kernel (RLIMIT_DATA) and a time bound the parent enforces by killing it. No template
//! can take Herald's memory, or hold a worker, past those bounds: whatever it builds, and
//! however it builds it, a child that runs out dies alone and is started again.
//!
//! Parent and child speak one JSON object a line over the child's stdin and stdout.

use super::request::{BuildError, Compiled, Outgoing};
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
/// Compiled webhooks a child keeps.
const CACHED: usize = 64;
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
    secret: String,
}

impl Spec {
    fn of(w: &Webhook) -> Spec {
        Spec {
            payload_url: w.payload_url.clone(),
            additional_headers: w.additional_headers.clone(),
            body_template: w.body_template.clone(),
            http_content_type: w.http_content_type.clone(),
            http_method: w.http_method.as_str().into(),
            secret: w.secret.clone(),
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
        w.secret = self.secret.clone();
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
    Failed { field: String, message: String },
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
}

/// The pool of sandbox children.
pub struct Sandbox {
    limits: Limits,
    slots: Vec<Mutex<Option<Proc>>>,
    next: AtomicUsize,
}

/// A render that did not come back: it is pinned on the template most likely at fault.
fn lost(webhook: &Webhook, message: String, exhausted: bool) -> BuildError {
    let templated = |s: &str| s.contains("{{") || s.contains("{%");
    let field = if !webhook.body_template.is_empty() {
        "body_template"
    } else if templated(&webhook.additional_headers) {
        "additional_headers"
    } else {
        "payload_url"
    };
    BuildError {
        field,
        message,
        exhausted,
    }
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

    /// Builds the request `webhook` sends for `event` in a child. A child that runs out of
    /// memory or time is replaced; the render fails with a message saying which.
    pub async fn build(&self, webhook: &Webhook, event: &Event, delivery: Option<i64>) -> Result<Outgoing, BuildError> {
        let ask = Ask {
            spec: Spec::of(webhook),
            event: event.clone(),
            delivery,
        };
        let mut line =
            serde_json::to_string(&ask).map_err(|e| lost(webhook, format!("cannot send the event: {e}"), false))?;
        line.push('\n');
        let mut slot = self.slot().await;
        if slot.is_none() {
            *slot = Some(self.spawn().await.map_err(|e| lost(webhook, e, false))?);
        }
        let proc = slot
            .as_mut()
            .ok_or_else(|| lost(webhook, "no sandbox process".into(), false))?;
        let answered = tokio::time::timeout(self.limits.timeout, exchange(proc, &line)).await;
        let answer = match answered {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                let why = match slot.take() {
                    Some(p) => end(p).await,
                    None => e,
                };
                return Err(lost(webhook, why, true));
            }
            Err(_) => {
                if let Some(p) = slot.take() {
                    let _ = end(p).await;
                }
                let secs = self.limits.timeout.as_secs_f64();
                return Err(lost(
                    webhook,
                    format!("rendering took longer than {secs} s and was stopped"),
                    true,
                ));
            }
        };
        match answer {
            Answer::Built(out) => Ok(out),
            Answer::Failed { field, message } => Err(BuildError {
                field: field_name(&field),
                exhausted: message.contains("fuel"),
                message,
            }),
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
        Ok(Proc { child, stdin, stdout })
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
        "the templates needed more memory than the sandbox allows, and were stopped".into()
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
    let mut cache: HashMap<u64, Result<Compiled, BuildError>> = HashMap::new();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<Ask>(&line) {
            Ok(ask) => render(&mut cache, ask),
            Err(e) => Answer::Failed {
                field: "template".into(),
                message: format!("bad ask: {e}"),
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

fn render(cache: &mut HashMap<u64, Result<Compiled, BuildError>>, ask: Ask) -> Answer {
    let webhook = ask.spec.webhook();
    let key = ask.spec.key();
    if !cache.contains_key(&key) && cache.len() >= CACHED {
        cache.clear();
    }
    let compiled = cache.entry(key).or_insert_with(|| Compiled::new(&webhook));
    let built = match compiled {
        Ok(c) => c.build(&webhook, &ask.event, ask.delivery),
        Err(e) => Err(e.clone()),
    };
    match built {
        Ok(out) => Answer::Built(out),
        Err(e) => Answer::Failed {
            field: e.field.into(),
            message: e.message,
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
