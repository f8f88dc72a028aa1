//! Sending one request: HTTP clients per TLS setting (pooled, keep-alive, no redirects, no
//! proxies, names resolved through the destination policy), and readable errors.

use super::destinations::{Policy, Refused, Resolver};
use crate::queue::Attempt;
use crate::webhooks::request::Outgoing;
use crate::webhooks::{ca, Webhook};
use chrono::Utc;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which client a request goes through: its TLS options, and the port its requests go to
/// (the resolver checks addresses with it).
type ClientKey = (bool, Option<String>, u16);

/// Pooled clients per TLS setting and port, each resolving names through the destination
/// policy.
pub struct Clients {
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
    policy: Arc<Policy>,
    ca_dir: Option<PathBuf>,
}

impl Clients {
    pub fn new(policy: Arc<Policy>, ca_dir: Option<PathBuf>) -> Clients {
        Clients {
            clients: Mutex::new(HashMap::new()),
            policy,
            ca_dir,
        }
    }

    /// The client for `webhook`'s TLS options and `url`'s port; the CA file is read off the
    /// async threads. Refuses a URL the destination policy refuses outright.
    pub async fn for_request(&self, webhook: &Webhook, url: &str) -> Result<reqwest::Client, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        self.policy.check_url(&parsed).map_err(|e| e.to_string())?;
        let port = parsed.port_or_known_default().unwrap_or(0);
        let key = (webhook.ssl_verification, webhook.ca_file_path.clone(), port);
        if let Some(c) = crate::sync::lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(Resolver {
                policy: self.policy.clone(),
                port,
            }))
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        if !webhook.ssl_verification {
            builder = builder.danger_accept_invalid_certs(true);
        } else if let Some(path) = webhook.ca_file_path.clone() {
            let dir = self.ca_dir.clone();
            let certs = tokio::task::spawn_blocking(move || ca::read(&path, dir.as_deref()))
                .await
                .map_err(|e| format!("reading the CA file failed: {e}"))?
                .map_err(|e| format!("TLS: {e}"))?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build HTTP client: {}", describe(&e)))?;
        crate::sync::lock(&self.clients).insert(key, client.clone());
        Ok(client)
    }

    /// Forgets clients, e.g. after a CA file changed.
    pub fn clear(&self) {
        crate::sync::lock(&self.clients).clear();
    }
}

/// An attempt holding the request and no response yet.
pub fn unsent_attempt(req: &Outgoing, delivery_id: i64) -> Attempt {
    Attempt {
        delivery_id,
        started: Utc::now(),
        duration_ms: 0.0,
        request_method: req.method.as_str().to_string(),
        request_url: req.url.clone(),
        request_headers: req.headers.clone(),
        request_body: (!req.body_is_event).then(|| req.body.clone()),
        response_status: None,
        response_headers: Vec::new(),
        response_body: None,
        error: None,
    }
}

/// Sends `req` and records the exchange. `error` is set unless the status is 2xx.
pub async fn send(
    client: &reqwest::Client,
    req: &Outgoing,
    delivery_id: i64,
    timeout: Duration,
    body_limit: usize,
) -> (Attempt, bool) {
    let clock = Instant::now();
    let mut attempt = unsent_attempt(req, delivery_id);
    let mut builder = client
        .request(req.method.into(), &req.url)
        .timeout(timeout)
        .body(req.body.clone());
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let result = async {
        let mut resp = builder.send().await?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            let room = body_limit.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= body_limit {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, headers, body))
    }
    .await;
    attempt.duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok((status, headers, body)) => {
            let text = String::from_utf8_lossy(&body).into_owned();
            if !(200..300).contains(&status) {
                let head: String = text
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(200)
                    .collect();
                attempt.error = Some(if head.is_empty() {
                    format!("status {status}")
                } else {
                    format!("status {status}: {head}")
                });
            }
            attempt.response_status = Some(status);
            attempt.response_headers = headers;
            attempt.response_body = Some(text);
        }
        Err(e) if e.is_timeout() => {
            attempt.error = Some(format!("timed out after {}", human_secs(timeout)));
            return (attempt, true);
        }
        Err(e) => attempt.error = Some(describe(&e)),
    }
    (attempt, false)
}

/// `host:port` of a URL, the unit of per-destination concurrency.
pub fn destination(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?))
}

/// The destination of a payload URL whose scheme, host and port hold no template.
pub fn static_destination(payload_url: &str) -> Option<String> {
    let rest = payload_url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('{') || payload_url[..payload_url.len() - rest.len()].contains('{') {
        return None;
    }
    destination(&format!(
        "{}{}/",
        &payload_url[..payload_url.len() - rest.len()],
        authority
    ))
}

fn human_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// The most telling cause in an error chain: TLS and connection failures by name.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut innermost = err.to_string();
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return format!("TLS: {tls}");
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error's source() skips the error it wraps; look inside, through nesting.
            let mut inner = io.get_ref();
            while let Some(i) = inner {
                if let Some(tls) = i.downcast_ref::<rustls::Error>() {
                    return format!("TLS: {tls}");
                }
                inner = i.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset by peer".into(),
                std::io::ErrorKind::ConnectionAborted => return "connection aborted".into(),
                _ => {}
            }
        }
        innermost = e.to_string();
        source = e.source();
    }
    if let Some(hyper_closed) = find_closed(err) {
        return hyper_closed;
    }
    innermost
}

/// A receiver that closed the connection without answering, found by hyper's error kind.
fn find_closed(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return Some("connection closed by the receiver before a response".into());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(destination("https://h.example/x").as_deref(), Some("h.example:443"));
        assert_eq!(
            static_destination("http://127.0.0.1:9000/{{ model }}").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(static_destination("http://{{ data.host }}/x"), None);
    }
}
