//! `herald receiver`: a webhook receiver for debugging, as NetBox's `webhook_receiver` is. It
//! prints each request (method, path, headers, the body, pretty when it is JSON) and whether
//! its signatures are valid for `--secret`: `X-Hook-Signature` (and `X-Hook-Signature-Next`
//! during a rotation) and Standard Webhooks' `webhook-signature`; then answers `--status`.

use crate::webhooks::signature::{self, NETBOX, NETBOX_NEXT, STANDARD_ID, STANDARD_SIGNATURE, STANDARD_TIMESTAMP};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// Bodies past this are refused (413), so the receiver's memory stays bounded.
pub const MAX_BODY: usize = 16 << 20;
/// What of a body that is not JSON is printed, at most.
const PRINTED_AT_MOST: usize = 64 << 10;
/// How far a Standard Webhooks timestamp may be from now (the specification's tolerance).
const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// How the receiver answers.
pub struct Settings {
    pub secret: Option<String>,
    pub status: StatusCode,
}

/// Serves until `shutdown`, printing each request on standard output.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(Arc::new(settings))
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn receive(
    State(settings): State<Arc<Settings>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            println!(
                "{} {} from {peer}: body over {} MiB or cut short; answered 413\n",
                parts.method,
                parts.uri,
                MAX_BODY >> 20
            );
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    };
    let report = describe(
        parts.method.as_str(),
        &parts.uri.to_string(),
        &parts.headers,
        &body,
        &settings,
        peer,
        chrono::Utc::now(),
    );
    print!("{report}");
    settings.status.into_response()
}

/// What is printed for one request.
pub fn describe(
    method: &str,
    uri: &str,
    headers: &HeaderMap,
    body: &Bytes,
    settings: &Settings,
    peer: SocketAddr,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{method} {uri} from {peer} at {}",
        now.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
    for (name, value) in headers {
        let _ = writeln!(
            out,
            "  {}: {}",
            name.as_str(),
            String::from_utf8_lossy(value.as_bytes()).escape_debug()
        );
    }
    out.push('\n');
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Err(_) if body.is_empty() => out.push_str("(no body)\n"),
        Err(_) => match std::str::from_utf8(body) {
            Ok(text) if text.len() <= PRINTED_AT_MOST => {
                let _ = writeln!(out, "{}", printable(text));
            }
            Ok(text) => {
                let cut = (0..=PRINTED_AT_MOST)
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                let _ = writeln!(out, "{}\n… ({} bytes more)", printable(&text[..cut]), text.len() - cut);
            }
            Err(_) => {
                let _ = writeln!(out, "({} bytes, not text)", body.len());
            }
        },
    }
    out.push('\n');
    for line in verdicts(headers, body, settings.secret.as_deref(), now.timestamp()) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "answered {}\n", settings.status.as_u16());
    out
}

/// `text` with control characters other than newlines and tabs escaped, so a body cannot
/// drive the terminal it is printed on (colours, cursor moves, a title).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// One line per signature the request carries: valid, invalid, or not checked.
pub fn verdicts(headers: &HeaderMap, body: &[u8], secret: Option<&str>, now: i64) -> Vec<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let mut lines = Vec::new();
    for name in [NETBOX, NETBOX_NEXT] {
        let Some(given) = text(name) else { continue };
        lines.push(match secret {
            None => format!("{name}: not checked (start the receiver with --secret)"),
            Some(s) if signature::netbox_valid(s, body, given) => format!("{name}: valid"),
            Some(_) => format!("{name}: INVALID for this secret"),
        });
    }
    if let Some(given) = text(STANDARD_SIGNATURE) {
        let id = text(STANDARD_ID).unwrap_or("");
        let timestamp = text(STANDARD_TIMESTAMP).and_then(|t| t.parse::<i64>().ok());
        lines.push(match (secret, timestamp) {
            (None, _) => format!("{STANDARD_SIGNATURE}: not checked (start the receiver with --secret)"),
            (Some(_), None) => format!("{STANDARD_SIGNATURE}: INVALID ({STANDARD_TIMESTAMP} is missing or not a number)"),
            (Some(s), Some(ts)) => {
                let expected = signature::standard(s, id, ts, body);
                let found = given
                    .split(' ')
                    .any(|sig| crate::auth::sessions::same_secret(&expected, sig));
                match (found, (now - ts).abs() <= TIMESTAMP_TOLERANCE_SECS) {
                    (true, true) => format!("{STANDARD_SIGNATURE}: valid"),
                    (true, false) => format!(
                        "{STANDARD_SIGNATURE}: valid, but {STANDARD_TIMESTAMP} is {} s from now (receivers refuse past {TIMESTAMP_TOLERANCE_SECS} s)",
                        now - ts
                    ),
                    (false, _) => format!("{STANDARD_SIGNATURE}: INVALID for this secret"),
                }
            }
        });
    }
    if lines.is_empty() {
        lines.push("no signature headers".into());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bodies_cannot_drive_the_terminal() {
        let settings = Settings {
            secret: None,
            status: StatusCode::OK,
        };
        let body = Bytes::from_static(b"plain\x1b]0;owned\x07 text\x1b[2J\nline two\tend");
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let out = describe(
            "POST",
            "/",
            &HeaderMap::new(),
            &body,
            &settings,
            peer,
            chrono::Utc::now(),
        );
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
        assert!(
            out.contains("plain\\u{1b}]0;owned\\u{7} text\\u{1b}[2J\nline two\tend"),
            "{out:?}"
        );
        let json = Bytes::from_static(b"{\"a\": \"\\u001b[31mred\"}");
        let out = describe(
            "POST",
            "/",
            &HeaderMap::new(),
            &json,
            &settings,
            peer,
            chrono::Utc::now(),
        );
        assert!(!out.contains('\x1b'), "{out:?}");
    }

    #[test]
    fn signatures_are_judged_for_the_secret() {
        let body = br#"{"event":"created"}"#;
        let good = headers(&[(NETBOX, signature::netbox("s3cret", body))]);
        assert_eq!(verdicts(&good, body, Some("s3cret"), 0), ["X-Hook-Signature: valid"]);
        assert_eq!(
            verdicts(&good, b"{}", Some("s3cret"), 0),
            ["X-Hook-Signature: INVALID for this secret"]
        );
        assert!(verdicts(&good, body, None, 0)[0].contains("not checked"));
        let ts = 1_700_000_000;
        let sig = signature::standard("whsec_c2VjcmV0", "msg_1", ts, body);
        let std = headers(&[
            (STANDARD_ID, "msg_1".into()),
            (STANDARD_TIMESTAMP, ts.to_string()),
            (STANDARD_SIGNATURE, format!("v1,bm9wZQ== {sig}")),
        ]);
        assert_eq!(
            verdicts(&std, body, Some("whsec_c2VjcmV0"), ts + 10),
            ["webhook-signature: valid"]
        );
        assert!(verdicts(&std, body, Some("whsec_c2VjcmV0"), ts + 1000)[0].contains("1000 s from now"));
        assert!(verdicts(&std, body, Some("whsec_b3RoZXI="), ts)[0].contains("INVALID"));
        assert_eq!(
            verdicts(&HeaderMap::new(), body, Some("x"), 0),
            ["no signature headers"]
        );
    }
}
