//! A real webhook receiver on 127.0.0.1:0, plain HTTP or HTTPS (certificates made with rcgen),
//! that records every request and answers as told.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// This status, with this body.
    Status(u16, String),
    /// Never answer (for 60 s at most).
    Hang,
    /// Close the connection without answering.
    Close,
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
    pub at: std::time::Instant,
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

/// Certificates for an HTTPS receiver.
pub struct Tls {
    /// PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// A CA and a certificate for 127.0.0.1 and localhost signed by it.
    pub fn generate() -> Tls {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
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
            config: Arc::new(config),
        }
    }
}

struct Shared {
    received: Mutex<Vec<Received>>,
    behavior: Mutex<Behavior>,
    headers: Mutex<Vec<(String, String)>>,
}

pub struct TestReceiver {
    pub addr: std::net::SocketAddr,
    pub scheme: &'static str,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestReceiver {
    /// A plain HTTP receiver answering 200.
    pub async fn start() -> TestReceiver {
        TestReceiver::start_with(None).await
    }

    /// HTTPS when `tls` is given.
    pub async fn start_with(tls: Option<&Tls>) -> TestReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            behavior: Mutex::new(Behavior::Status(200, "ok".into())),
            headers: Mutex::new(Vec::new()),
        });
        let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(s.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        TestReceiver {
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
        *self.shared.behavior.lock().unwrap() = behavior;
    }

    /// Adds a header to every answer.
    pub fn set_header(&self, name: &str, value: &str) {
        self.shared.headers.lock().unwrap().push((name.into(), value.into()));
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
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
        super::wait_for(
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

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
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
    shared.received.lock().unwrap().push(Received {
        method,
        path,
        headers,
        body,
        at: std::time::Instant::now(),
    });
    let behavior = shared.behavior.lock().unwrap().clone();
    match behavior {
        Behavior::Status(code, body) => {
            let mut resp = Response::builder().status(code);
            for (name, value) in shared.headers.lock().unwrap().iter() {
                resp = resp.header(name, value);
            }
            Ok(resp.body(Full::new(Bytes::from(body))).unwrap())
        }
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Response::new(Full::new(Bytes::new())))
        }
        Behavior::Close => Err(std::io::Error::other("closing without an answer")),
    }
}
