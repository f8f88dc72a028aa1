//! Users and API tokens: who may see and change whom (superusers manage everyone; other users
//! see themselves and manage their own tokens), what a username, password and key must be,
//! and password checks, off the async threads.

use super::{blocking, Error, Result, Services};
use crate::auth::{self, Token, User};
use crate::store::StoreError;
use crate::validate::{FieldErrors, Reader};
use chrono::Utc;
use serde_json::Value;

/// A token just created, with the only copy of its key.
pub struct NewToken {
    pub token: Token,
    pub user: User,
    pub key: String,
}

/// Longest username and token description.
const MAX_USERNAME: usize = 150;
const MAX_DESCRIPTION: usize = 200;

fn blank_user() -> User {
    User {
        id: 0,
        username: String::new(),
        password_hash: String::new(),
        is_superuser: false,
        created: Utc::now(),
    }
}

fn require_superuser(actor: &User) -> Result<()> {
    if actor.is_superuser {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// A user the actor may see: anyone for a superuser, else only themselves.
fn visible(actor: &User, id: i64) -> Result<()> {
    if actor.is_superuser || actor.id == id {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// `username`, `password` and `is_superuser` read over `user`; the password comes back
/// separately, to be hashed off the async threads.
fn read_user(mut user: User, body: &Value, creating: bool) -> Result<(User, Option<String>)> {
    let mut r = Reader::new(body)?;
    if let Some(name) = r.string("username") {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_USERNAME {
            r.errors.add("username", "Enter a username of 1 to 150 characters.");
        }
        user.username = name;
    } else if creating && !r.has("username") {
        r.errors.add("username", "This field is required.");
    }
    let mut password = None;
    if let Some(p) = r.string("password") {
        if p.is_empty() {
            r.errors.add("password", "This field may not be blank.");
        }
        password = Some(p);
    } else if creating && !r.has("password") {
        r.errors.add("password", "This field is required.");
    }
    if let Some(flag) = r.bool("is_superuser") {
        user.is_superuser = flag;
    }
    let errors: FieldErrors = std::mem::take(&mut r.errors);
    Ok(errors.finish((user, password))?)
}

impl Services {
    /// The token with this key and its user; `InvalidToken` when there is none.
    pub async fn authenticate(&self, key: &str) -> Result<(Token, User)> {
        match self.store.token_by_hash(&auth::hash_key(key.trim())).await {
            Ok(found) => Ok(found),
            Err(StoreError::NotFound) => Err(Error::InvalidToken),
            Err(e) => Err(e.into()),
        }
    }

    /// The users the actor may see, optionally only those named.
    pub async fn users(&self, actor: &User, names: &[String]) -> Result<Vec<User>> {
        Ok(self
            .store
            .users()
            .await?
            .into_iter()
            .filter(|u| actor.is_superuser || u.id == actor.id)
            .filter(|u| names.is_empty() || names.contains(&u.username))
            .collect())
    }

    pub async fn user(&self, actor: &User, id: i64) -> Result<User> {
        visible(actor, id)?;
        Ok(self.store.user(id).await?)
    }

    /// Creates a user from `{"username", "password", "is_superuser"}` (superusers only).
    pub async fn create_user(&self, actor: &User, body: &Value) -> Result<User> {
        require_superuser(actor)?;
        let (user, password) = read_user(blank_user(), body, true)?;
        self.insert_user(&user.username, &password.unwrap_or_default(), user.is_superuser)
            .await
    }

    /// Creates a user from the command line or at first start (no actor: the operator).
    pub async fn add_user(&self, username: &str, password: &str, superuser: bool) -> Result<User> {
        let body = serde_json::json!({"username": username, "password": password, "is_superuser": superuser});
        let (user, password) = read_user(blank_user(), &body, true)?;
        self.insert_user(&user.username, &password.unwrap_or_default(), superuser)
            .await
    }

    async fn insert_user(&self, username: &str, password: &str, superuser: bool) -> Result<User> {
        let password = password.to_string();
        let hash = blocking(move || auth::hash_password(&password)).await??;
        Ok(self.store.create_user(username, &hash, superuser, Utc::now()).await?)
    }

    /// Changes a user (superusers only): the fields given in `body`.
    pub async fn update_user(&self, actor: &User, id: i64, body: &Value) -> Result<User> {
        require_superuser(actor)?;
        let current = self.store.user(id).await?;
        let (mut user, password) = read_user(current, body, false)?;
        if let Some(p) = password {
            user.password_hash = blocking(move || auth::hash_password(&p)).await??;
        }
        self.store.update_user(&user).await?;
        Ok(self.store.user(id).await?)
    }

    /// Deletes a user and their tokens (superusers only, never themselves).
    pub async fn delete_user(&self, actor: &User, id: i64) -> Result<()> {
        require_superuser(actor)?;
        if id == actor.id {
            return Err(Error::Conflict(
                "You cannot delete the user you are signed in as.".into(),
            ));
        }
        Ok(self.store.delete_user(id).await?)
    }

    /// Changes the actor's own password, after checking the current one.
    pub async fn change_password(&self, actor: &User, current: &str, new: &str) -> Result<()> {
        if new.is_empty() {
            return Err(Error::field("new_password", "This field may not be blank."));
        }
        let (current, hash) = (current.to_string(), actor.password_hash.clone());
        if !blocking(move || auth::verify_password(&current, &hash)).await? {
            return Err(Error::field("password", "The current password is not right."));
        }
        let mut user = self.store.user(actor.id).await?;
        let new = new.to_string();
        user.password_hash = blocking(move || auth::hash_password(&new)).await??;
        Ok(self.store.update_user(&user).await?)
    }

    /// Tokens the actor may see (a superuser's: everyone's), optionally of some users only.
    pub async fn tokens(&self, actor: &User, user_ids: &[i64]) -> Result<Vec<(Token, User)>> {
        let scope = (!actor.is_superuser).then_some(actor.id);
        Ok(self
            .store
            .tokens(scope)
            .await?
            .into_iter()
            .filter(|(t, _)| user_ids.is_empty() || user_ids.contains(&t.user_id))
            .collect())
    }

    pub async fn token(&self, actor: &User, id: i64) -> Result<(Token, User)> {
        let (token, user) = self.store.token(id).await?;
        visible(actor, user.id)?;
        Ok((token, user))
    }

    /// Creates a token from `{"user", "write_enabled", "description", "key"}`: for the actor,
    /// or (superusers only) for the user named.
    pub async fn create_token(&self, actor: &User, body: &Value) -> Result<NewToken> {
        let owner = match body.get("user") {
            None | Some(Value::Null) => actor.clone(),
            Some(v) => {
                let id = v.as_i64().or_else(|| v.get("id").and_then(Value::as_i64));
                let id = id.ok_or_else(|| Error::field("user", "Expected a user id."))?;
                if id != actor.id {
                    require_superuser(actor)?;
                }
                match self.store.user(id).await {
                    Ok(u) => u,
                    Err(StoreError::NotFound) => return Err(Error::field("user", format!("No user with id {id}."))),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.new_token(owner, body).await
    }

    /// `{"username", "password"}` (and the token's fields) → a new token for that user, as
    /// pynetbox's `create_token` asks for one.
    pub async fn provision_token(&self, body: &Value) -> Result<NewToken> {
        let mut r = Reader::new(body)?;
        let username = r.string("username");
        let password = r.string("password");
        for field in ["username", "password"] {
            if !r.has(field) {
                r.errors.add(field, "This field is required.");
            }
        }
        std::mem::take(&mut r.errors).finish(())?;
        let user = self
            .check_password(&username.unwrap_or_default(), &password.unwrap_or_default())
            .await?;
        self.new_token(user, body).await
    }

    /// The user with this name and password; `BadCredentials` otherwise.
    pub async fn check_password(&self, username: &str, password: &str) -> Result<User> {
        let user = match self.store.user_by_name(username).await {
            Ok(u) => u,
            Err(StoreError::NotFound) => return Err(Error::BadCredentials),
            Err(e) => return Err(e.into()),
        };
        let (password, hash) = (password.to_string(), user.password_hash.clone());
        if blocking(move || auth::verify_password(&password, &hash)).await? {
            Ok(user)
        } else {
            Err(Error::BadCredentials)
        }
    }

    /// Creates a token for `user` from `write_enabled`, `description` and an optional `key`.
    async fn new_token(&self, user: User, body: &Value) -> Result<NewToken> {
        let mut r = Reader::new(body)?;
        let write_enabled = r.bool("write_enabled").unwrap_or(true);
        let description = r.string("description").unwrap_or_default();
        let key = r.string("key");
        if key.as_deref().is_some_and(|k| !auth::valid_key(k)) {
            r.errors.add("key", "A key has 40 to 256 letters and digits.");
        }
        if description.chars().count() > MAX_DESCRIPTION {
            r.errors
                .add("description", "Ensure this field has no more than 200 characters.");
        }
        std::mem::take(&mut r.errors).finish(())?;
        self.add_token(user, key, write_enabled, &description).await
    }

    /// Creates a token for `user` with `key` (or a new random one), from the command line,
    /// at first start, or for the API.
    pub async fn add_token(
        &self,
        user: User,
        key: Option<String>,
        write_enabled: bool,
        description: &str,
    ) -> Result<NewToken> {
        let key = key.unwrap_or_else(auth::new_key);
        if !auth::valid_key(&key) {
            return Err(Error::field("key", "A key has 40 to 256 letters and digits."));
        }
        let token = self
            .store
            .create_token(user.id, &auth::hash_key(&key), write_enabled, description, Utc::now())
            .await?;
        Ok(NewToken { token, user, key })
    }

    pub async fn delete_token(&self, actor: &User, id: i64) -> Result<()> {
        let (_, owner) = self.store.token(id).await?;
        visible(actor, owner.id)?;
        Ok(self.store.delete_token(id).await?)
    }

    /// The first start of a new database: creates `admin` with a superuser token. Returns the
    /// password and key (generated unless given) so they can be shown once; `None` when the
    /// database has users already.
    pub async fn bootstrap_admin(
        &self,
        password: Option<String>,
        key: Option<String>,
    ) -> Result<Option<(String, String)>> {
        if self.store.user_count().await? > 0 {
            return Ok(None);
        }
        let password = password.filter(|p| !p.is_empty()).unwrap_or_else(auth::new_password);
        let user = self.add_user("admin", &password, true).await?;
        let key = key.filter(|k| !k.is_empty());
        let created = self.add_token(user, key, true, "created at first start").await?;
        Ok(Some((password, created.key)))
    }
}
