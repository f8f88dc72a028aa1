//! Signing a request: a step of its own, taken by the process that sends it (the worker just
//! before sending, a preview, a test send), after the request is built. The template sandbox
//! never sees a secret.

use super::request::Outgoing;
use super::Webhook;
use hmac::{Hmac, Mac};
use sha2::Sha512;

/// NetBox's signature header: the hex HMAC-SHA512 of the body, keyed by the secret.
pub const NETBOX: &str = "X-Hook-Signature";

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

/// Signs `request` as `webhook` signs: with a secret, its signature header, last, replacing any
/// header of that name the templates set.
pub fn sign(webhook: &Webhook, request: &mut Outgoing) {
    if webhook.secret.is_empty() {
        return;
    }
    request.headers.retain(|(n, _)| !is_signature(n));
    let value = netbox(&webhook.secret, request.body.as_bytes());
    request.headers.push((NETBOX.into(), value));
}

/// Whether `name` is a signature header: what a preview leaves out for those who may not
/// have bodies of their choosing signed.
pub fn is_signature(name: &str) -> bool {
    name.eq_ignore_ascii_case(NETBOX)
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
        };
        sign(&w, &mut req);
        assert_eq!(req.headers, vec![(NETBOX.to_string(), netbox("k", b"b"))]);
        w.secret.clear();
        let mut unsigned = req.clone();
        unsigned.headers.clear();
        sign(&w, &mut unsigned);
        assert!(unsigned.headers.is_empty());
    }
}
