//! Browser sessions: signing in with a password, the session a cookie names, signing out.
//! Sessions live in the database, so every node of a fleet accepts every session.

use super::Services;
use crate::auth::sessions::new_secret;
use crate::auth::{self, Actor, Session, User};
use crate::error::{Error, StoreError};
use chrono::{DateTime, Duration, Utc};
use std::net::IpAddr;

type Result<T, E = Error> = std::result::Result<T, E>;

/// A session just made: its key goes in the cookie and is never seen again.
#[derive(Debug)]
pub struct NewSession {
    pub key: String,
    pub session: Session,
    pub user: User,
}

/// A session is moved on at most this often (each move is a write).
const TOUCH_EVERY: Duration = Duration::minutes(1);

impl Services {
    fn session_lifetime(&self) -> Duration {
        Duration::milliseconds((self.config.auth.session_days * 86_400_000.0) as i64)
    }

    /// Signs a user in with their password: a new session. Wrong names and passwords fail
    /// alike, in the same time, and are throttled as every password check is.
    pub async fn login(&self, username: &str, password: &str, peer: Option<IpAddr>) -> Result<NewSession> {
        let user = self.check_password(username, password, peer).await?;
        let key = new_secret();
        let now = Utc::now();
        let session = Session {
            key_hash: auth::hash_key(&key),
            user_id: user.id,
            csrf: new_secret(),
            created: now,
            expires: now + self.session_lifetime(),
        };
        self.store.create_session(&session).await?;
        Ok(NewSession { key, session, user })
    }

    /// Who the session with cookie key `key` belongs to, if it is live at `now`; each use
    /// moves its end on. `Unauthenticated` for an unknown or ended one.
    pub async fn session_at(&self, key: &str, now: DateTime<Utc>) -> Result<(Actor, Session)> {
        let key_hash = auth::hash_key(key);
        let (mut session, user) = match self.store.session(&key_hash).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Err(Error::Unauthenticated),
            Err(e) => return Err(e.into()),
        };
        if session.expires <= now {
            self.store.delete_session(&key_hash).await?;
            return Err(Error::Unauthenticated);
        }
        let expires = now + self.session_lifetime();
        if expires - session.expires >= TOUCH_EVERY {
            match self.store.touch_session(&key_hash, expires).await {
                Ok(()) => session.expires = expires,
                // Signed out meanwhile (another tab, another node).
                Err(StoreError::NotFound) => return Err(Error::Unauthenticated),
                Err(e) => return Err(e.into()),
            }
        }
        Ok((self.actor(user).await?, session))
    }

    /// `session_at` now.
    pub async fn session(&self, key: &str) -> Result<(Actor, Session)> {
        self.session_at(key, Utc::now()).await
    }

    /// Signs the session with cookie key `key` out (nothing happens for an unknown one).
    pub async fn logout(&self, key: &str) -> Result<()> {
        Ok(self.store.delete_session(&auth::hash_key(key)).await?)
    }
}
