//! Real webhook receivers on 127.0.0.1:0, over one accept loop. `Recorder` keeps every
//! request and answers as it is told (200, another status, hang, close), over plain HTTP or
//! HTTPS (with the `tls` feature; certificates made with rcgen): the tests'. `Counter` answers
//! 204 as fast as it can, checks every signature and notes when each event arrived: the
//! benchmark's.

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls `check` until it returns `Some`, failing after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Serves HTTP/1.1 on `listener` with `handle` for every request, each connection on its own
/// task, until the returned task is aborted.
fn accept<H, Fut, B>(listener: TcpListener, tls: Option<TlsAcceptor>, handle: H) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, std::io::Error>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let (handle, tls) = (handle.clone(), tls.clone());
            tokio::spawn(async move { serve_connection(stream, tls, handle).await });
        }
    })
}

async fn serve_connection<H, Fut, B>(stream: TcpStream, tls: Option<TlsAcceptor>, handle: H)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, std::io::Error>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = service_fn(handle);
    let http = hyper::server::conn::http1::Builder::new();
    match tls {
        None => {
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        }
        #[cfg(feature = "tls")]
        Some(acceptor) => {
            if let Ok(s) = acceptor.0.accept(stream).await {
                let _ = http.serve_connection(TokioIo::new(s), service).await;
            }
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    }
}

/// Accepts TLS connections (with the `tls` feature).
#[cfg(feature = "tls")]
#[derive(Clone)]
pub struct TlsAcceptor(tokio_rustls::TlsAcceptor);

/// Without the `tls` feature there is no TLS to accept.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub enum TlsAcceptor {}

/// Certificates for an HTTPS receiver.
#[cfg(feature = "tls")]
pub struct Tls {
    /// PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    acceptor: TlsAcceptor,
}

#[cfg(feature = "tls")]
impl Tls {
    /// A CA, and a certificate for 127.0.0.1 and localhost signed by it.
    pub fn generate() -> Tls {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        use tokio_rustls::rustls;
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Herald test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        Tls {
            ca_pem: ca.pem(),
            acceptor: TlsAcceptor(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        }
    }
}

/// How a `Recorder` answers.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// This status, with this body.
    Status(u16, String),
    /// Never answer (for 60 s at most).
    Hang,
    /// Close the connection without answering.
    Close,
    /// Answer `status` to the first `times` requests whose body holds every one of `holding`,
    /// and 200 to all others.
    Refuse {
        holding: Vec<String>,
        times: usize,
        status: u16,
    },
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When its body had arrived.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

struct Shared {
    received: Mutex<Vec<Received>>,
    behavior: Mutex<Behavior>,
    headers: Mutex<Vec<(String, String)>>,
    /// Requests refused by `Behavior::Refuse` so far.
    refused: Mutex<usize>,
}

/// A receiver that records every request and answers as told (200 "ok" at first).
pub struct Recorder {
    pub addr: SocketAddr,
    pub scheme: &'static str,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// A plain HTTP receiver.
    pub async fn start() -> Recorder {
        Recorder::listen(None, "http").await
    }

    /// An HTTPS receiver with `tls`'s certificate.
    #[cfg(feature = "tls")]
    pub async fn start_tls(tls: &Tls) -> Recorder {
        Recorder::listen(Some(tls.acceptor.clone()), "https").await
    }

    async fn listen(tls: Option<TlsAcceptor>, scheme: &'static str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            behavior: Mutex::new(Behavior::Status(200, "ok".into())),
            headers: Mutex::new(Vec::new()),
            refused: Mutex::new(0),
        });
        let s = shared.clone();
        let task = accept(listener, tls, move |req| record(s.clone(), req));
        Recorder {
            addr,
            scheme,
            shared,
            task,
        }
    }

    /// `scheme://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn set(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Adds a header to every answer.
    pub fn set_header(&self, name: &str, value: &str) {
        lock(&self.shared.headers).push((name.into(), value.into()));
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// The `data.id` of every default body received, in arrival order.
    pub fn event_ids(&self) -> Vec<i64> {
        self.received()
            .iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON body");
                body["data"]["id"].as_i64().expect("data.id")
            })
            .collect()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        wait_for(
            Duration::from_secs(30),
            &format!("{n} requests at the receiver"),
            || async {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

async fn record(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let method = req.method().to_string();
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    lock(&shared.received).push(Received {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    });
    let mut behavior = lock(&shared.behavior).clone();
    if let Behavior::Refuse { holding, times, status } = &behavior {
        let text = String::from_utf8_lossy(&lock(&shared.received).last().expect("just recorded").body).into_owned();
        let mut refused = lock(&shared.refused);
        behavior = if *refused < *times && holding.iter().all(|h| text.contains(h.as_str())) {
            *refused += 1;
            Behavior::Status(*status, "refused".into())
        } else {
            Behavior::Status(200, "ok".into())
        };
    }
    match behavior {
        Behavior::Refuse { .. } => unreachable!("answered above"),
        Behavior::Status(code, body) => {
            let mut resp = Response::builder().status(code);
            for (name, value) in lock(&shared.headers).iter() {
                resp = resp.header(name, value);
            }
            resp.body(Full::new(Bytes::from(body))).map_err(std::io::Error::other)
        }
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Response::new(Full::new(Bytes::new())))
        }
        Behavior::Close => Err(std::io::Error::other("closing without an answer")),
    }
}

/// What a `Counter` saw.
#[derive(Default)]
pub struct Counts {
    pub received: AtomicU64,
    pub bad_signatures: AtomicU64,
    /// Event number (`data.id`) → first arrival; repeated ids are duplicates.
    pub arrivals: Mutex<HashMap<u64, Instant>>,
    pub duplicates: AtomicU64,
    pub last: Mutex<Option<Instant>>,
}

/// A receiver that answers 204 at once, checks each `X-Hook-Signature` against `secret`, and
/// notes when each event arrived.
pub struct Counter {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    /// When set, requests are held until the client gives up.
    hang: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Counter {
    pub async fn start(secret: &'static str, hang: bool) -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let counts = Arc::new(Counts::default());
        let hang = Arc::new(AtomicBool::new(hang));
        let (c, h) = (counts.clone(), hang.clone());
        let task = accept(listener, None, move |req| count(secret, c.clone(), h.clone(), req));
        Counter {
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
        lock(&self.counts.arrivals).len()
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

/// The numbers after `"id": ` in each `"data": {"id": N` of a body as NetBox (and Herald)
/// write them, or `"data":{"id":N` of a compact one: one for an event, each event's for a
/// batch (a list of them).
fn event_numbers(body: &[u8]) -> Vec<u64> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for marker in ["\"data\": {\"id\": ", "\"data\":{\"id\":"] {
        for (at, _) in text.match_indices(marker) {
            let digits: String = text[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            found.extend(digits.parse::<u64>().ok());
        }
    }
    found
}

async fn count(
    secret: &'static str,
    counts: Arc<Counts>,
    hang: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, std::io::Error> {
    let signature = req
        .headers()
        .get(herald::webhooks::signature::NETBOX)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let now = Instant::now();
    if hang.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let valid = signature.is_some_and(|s| herald::webhooks::signature::netbox_valid(secret, &body, &s));
    if !valid {
        counts.bad_signatures.fetch_add(1, Ordering::Relaxed);
    }
    counts.received.fetch_add(1, Ordering::Relaxed);
    let mut arrivals = lock(&counts.arrivals);
    for n in event_numbers(&body) {
        if arrivals.insert(n, now).is_some() {
            counts.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(arrivals);
    *lock(&counts.last) = Some(now);
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Empty::new())
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_event_number() {
        let body = br#"{"event": "created", "data": {"id": 4821, "name": "x"}}"#;
        assert_eq!(super::event_numbers(body), [4821]);
        assert!(super::event_numbers(b"{}").is_empty());
        assert_eq!(super::event_numbers(br#"{"data":{"id":7}}"#), [7]);
        let batch = br#"[{"data": {"id": 1, "region": {"id": 9}}}, {"data": {"id": 2}}]"#;
        assert_eq!(super::event_numbers(batch), [1, 2]);
    }
}
