//! Users, passwords and API tokens. Passwords are argon2 hashes; token keys are 40 random hex
//! characters stored as their SHA-256, so a key is only ever seen when created.

use crate::store::{Store, StoreError, User};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

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

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// Creates a user.
pub async fn create_user(store: &dyn Store, username: &str, password: &str, superuser: bool) -> anyhow::Result<User> {
    anyhow::ensure!(!username.trim().is_empty(), "the username may not be blank");
    anyhow::ensure!(!password.is_empty(), "the password may not be blank");
    let hash = hash_password(password)?;
    match store.create_user(username.trim(), &hash, superuser).await {
        Err(StoreError::Conflict(_)) => anyhow::bail!("a user named {username:?} already exists"),
        other => Ok(other?),
    }
}

/// Creates a token for `user` with the given key, or a new random one; returns the key.
pub async fn create_token(
    store: &dyn Store,
    user: &User,
    key: Option<&str>,
    write_enabled: bool,
    description: &str,
) -> anyhow::Result<String> {
    let key = match key {
        Some(k) => {
            anyhow::ensure!(
                k.len() >= 16 && k.chars().all(|c| c.is_ascii_graphic()),
                "a token key needs at least 16 printable characters"
            );
            k.to_string()
        }
        None => new_key(),
    };
    store
        .create_token(user.id, &hash_key(&key), write_enabled, description)
        .await?;
    Ok(key)
}

/// The first start of a new database: creates `admin` with a superuser token. Returns the
/// password and key when they were generated (so they can be shown once).
pub async fn bootstrap_admin(
    store: &dyn Store,
    password: Option<String>,
    token: Option<String>,
) -> anyhow::Result<Option<(String, String)>> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let password = password.filter(|p| !p.is_empty()).unwrap_or_else(new_password);
    let user = create_user(store, "admin", &password, true).await?;
    let key = create_token(
        store,
        &user,
        token.as_deref().filter(|t| !t.is_empty()),
        true,
        "created at first start",
    )
    .await?;
    Ok(Some((password, key)))
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
    }
}
