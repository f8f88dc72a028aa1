//! Users, passwords, API tokens and permissions. Passwords are argon2 hashes; token keys are
//! 40 random hex characters stored as their SHA-256, so a key is only ever seen when created.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
pub mod permissions;
pub mod sessions;

pub use permissions::{Action, Actor, Group, Permission};
pub use sessions::Session;

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A user account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_superuser: bool,
    pub created: DateTime<Utc>,
}

/// An API token (its key is only ever known when created).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    pub write_enabled: bool,
    pub description: String,
    pub created: DateTime<Utc>,
}

/// Whether `key` may be a token key: 40 to 256 letters and digits (NetBox's are 40 hex
/// characters).
pub fn valid_key(key: &str) -> bool {
    (40..=256).contains(&key.len()) && key.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A new random token key: 40 hex characters, as NetBox's.
pub fn new_key() -> String {
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new random password for the first admin.
pub fn new_password() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What is stored for a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// An argon2 hash of `password`. Slow on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))
}

/// Whether `password` matches `hash`. Slow on purpose: call it off the async threads.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_passwords() {
        let k = new_key();
        assert_eq!(k.len(), 40);
        assert_ne!(k, new_key());
        assert_eq!(hash_key("abc").len(), 64);
        let h = hash_password("s3cret").unwrap();
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("wrong", &h));
        assert!(valid_key(&k));
        assert!(!valid_key("short"));
        assert!(!valid_key(&format!("{k}!")));
    }
}
