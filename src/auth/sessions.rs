//! Browser sessions of the admin pages. A session's key lives in an HttpOnly cookie and is
//! stored as its SHA-256 only (like token keys); each session has its own CSRF token, which
//! every form it posts must carry.

use chrono::{DateTime, Utc};
use rand::RngCore;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// SHA-256 of the cookie's key (`super::hash_key`).
    pub key_hash: String,
    pub user_id: i64,
    /// What forms must carry.
    pub csrf: String,
    pub created: DateTime<Utc>,
    /// When it ends unless used again (each use moves it on).
    pub expires: DateTime<Utc>,
}

/// A new random value for a session key or a CSRF token: 32 bytes, hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Session {
    /// Whether `given` is this session's CSRF token, compared in constant time.
    pub fn csrf_matches(&self, given: &str) -> bool {
        same_secret(&self.csrf, given)
    }
}

/// Whether two secrets are equal, in a time that does not depend on where they differ.
pub fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_match_only_themselves() {
        let s = Session {
            key_hash: String::new(),
            user_id: 1,
            csrf: new_secret(),
            created: Utc::now(),
            expires: Utc::now(),
        };
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&new_secret()));
        assert_eq!(new_secret().len(), 64);
    }
}
