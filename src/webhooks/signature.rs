//! Signing a request: a step of its own, taken by the process that sends it (the worker just
//! before sending, a preview, a test send), after the request is built. The template sandbox
//! never sees a secret.

use super::request::Outgoing;
use super::Webhook;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

/// NetBox's signature header: the hex HMAC-SHA512 of the body, keyed by the secret.
pub const NETBOX: &str = "X-Hook-Signature";
/// During a rotation, NetBox's signature by the new secret (`X-Hook-Signature` keeps the
/// previous one, so receivers not yet updated keep verifying).
pub const NETBOX_NEXT: &str = "X-Hook-Signature-Next";
/// Standard Webhooks' headers: the message id (the delivery's, the same on every attempt),
/// when this attempt was signed (Unix seconds), and the signatures (`v1,<base64>` each,
/// space-separated).
pub const STANDARD_ID: &str = "webhook-id";
pub const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE: &str = "webhook-signature";

/// How a webhook signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hook-Signature`, as NetBox signs.
    NetBox,
    /// Standard Webhooks v1 (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
    Both,
}

impl Scheme {
    pub const ALL: [Scheme; 3] = [Scheme::NetBox, Scheme::Standard, Scheme::Both];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::NetBox => "netbox",
            Scheme::Standard => "standard",
            Scheme::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|x| x.as_str() == s)
    }

    fn netbox(self) -> bool {
        self != Scheme::Standard
    }

    fn standard(self) -> bool {
        self != Scheme::NetBox
    }
}

/// The key Standard Webhooks signs with: a `whsec_` secret's base64 bytes, else the secret's
/// own bytes.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("a whsec_ secret must be base64 after its prefix ({e})")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// Standard Webhooks v1: base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = standard_key(secret).unwrap_or_else(|_| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Lowercase hex HMAC-SHA512 of `body` keyed by `secret`.
pub fn netbox(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is `body`'s signature by `secret`, compared in constant time.
pub fn netbox_valid(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Signs `request` as `webhook` signs at `now`, as message `id` (the delivery's; a preview's
/// or a test's own): its signature headers last, replacing any the templates set. During a
/// rotation both secrets sign. Without a secret nothing is signed.
pub fn sign(webhook: &Webhook, request: &mut Outgoing, id: &str, now: DateTime<Utc>) {
    if webhook.secret.is_empty() {
        return;
    }
    request.headers.retain(|(n, _)| !is_signature(n));
    let body = request.body.as_bytes();
    let previous = webhook.previous_secret_at(now);
    let scheme = webhook.signature_scheme;
    if scheme.netbox() {
        match previous {
            Some(old) => {
                request.headers.push((NETBOX.into(), netbox(old, body)));
                request
                    .headers
                    .push((NETBOX_NEXT.into(), netbox(&webhook.secret, body)));
            }
            None => request.headers.push((NETBOX.into(), netbox(&webhook.secret, body))),
        }
    }
    if scheme.standard() {
        let ts = now.timestamp();
        let mut signatures = standard(&webhook.secret, id, ts, body);
        if let Some(old) = previous {
            signatures.push(' ');
            signatures.push_str(&standard(old, id, ts, body));
        }
        request.headers.push((STANDARD_ID.into(), id.to_string()));
        request.headers.push((STANDARD_TIMESTAMP.into(), ts.to_string()));
        request.headers.push((STANDARD_SIGNATURE.into(), signatures));
    }
}

/// Whether `name` is a header signing adds: what a preview leaves out for those who may not
/// have bodies of their choosing signed, and what templates may not set.
pub fn is_signature(name: &str) -> bool {
    [NETBOX, NETBOX_NEXT, STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netbox_signature_is_hmac_sha512_hex() {
        // RFC 4231 test case 2.
        let expected = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
        assert_eq!(netbox("Jefe", b"what do ya want for nothing?"), expected);
        assert!(netbox_valid("Jefe", b"what do ya want for nothing?", expected));
        assert!(netbox_valid(
            "Jefe",
            b"what do ya want for nothing?",
            &expected.to_uppercase()
        ));
        assert!(!netbox_valid("Jeff", b"what do ya want for nothing?", expected));
        assert!(!netbox_valid("Jefe", b"what do ya want for nothing!", expected));
        assert!(!netbox_valid("Jefe", b"x", "not hex"));
    }

    #[test]
    fn signing_replaces_a_header_the_templates_set() {
        let mut w = Webhook::blank();
        w.secret = "k".into();
        let mut req = Outgoing {
            method: super::super::HttpMethod::Post,
            url: "http://h/".into(),
            headers: vec![("x-hook-signature".into(), "forged".into())],
            body: "b".into(),
            body_is_event: false,
        };
        let now = Utc::now();
        sign(&w, &mut req, "1", now);
        assert_eq!(req.headers, vec![(NETBOX.to_string(), netbox("k", b"b"))]);
        w.secret.clear();
        let mut unsigned = req.clone();
        unsigned.headers.clear();
        sign(&w, &mut unsigned, "1", now);
        assert!(unsigned.headers.is_empty());
    }

    #[test]
    fn standard_webhooks_and_rotations() {
        // The Standard Webhooks specification's example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(standard_key("whsec_not base64!").is_err());
        let now = Utc::now();
        let mut w = Webhook::blank();
        (w.secret, w.signature_scheme) = ("new".into(), Scheme::Both);
        (w.previous_secret, w.previous_secret_until) = ("old".into(), Some(now + chrono::Duration::hours(1)));
        let mut req = Outgoing {
            method: super::super::HttpMethod::Post,
            url: "http://h/".into(),
            headers: vec![],
            body: "b".into(),
            body_is_event: false,
        };
        sign(&w, &mut req, "42", now);
        let h = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(h(NETBOX), netbox("old", b"b"));
        assert_eq!(h(NETBOX_NEXT), netbox("new", b"b"));
        assert_eq!(h(STANDARD_ID), "42");
        let ts = now.timestamp();
        assert_eq!(
            h(STANDARD_SIGNATURE),
            format!(
                "{} {}",
                standard("new", "42", ts, b"b"),
                standard("old", "42", ts, b"b")
            )
        );
        // After the overlap, only the new secret signs.
        let later = now + chrono::Duration::hours(2);
        let mut after = req.clone();
        sign(&w, &mut after, "42", later);
        assert!(after.headers.iter().all(|(k, _)| k != NETBOX_NEXT));
        assert!(after
            .headers
            .iter()
            .any(|(k, v)| k == NETBOX && *v == netbox("new", b"b")));
    }
}
