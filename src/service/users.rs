//! Users and API tokens: who may see and change whom (superusers manage everyone; other users
//! see themselves and manage their own tokens), what a username, password and key must be,
//! and password checks, off the async threads.

use super::{require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{self, Action, Actor, Group, Token, User};
use crate::error::Unique;
use crate::store::StoreError;
use crate::validate::{refuse_unknown_keys, FieldErrors, Reader};
use chrono::Utc;
use serde_json::Value;
use std::net::IpAddr;

/// An argon2 hash no password matches, made once.
fn stand_in_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password(&auth::new_key()).unwrap_or_default())
}

/// Why a chosen token key is refused, whatever the reason (its form, or that it is taken).
const KEY_REFUSED: &str =
    "This key cannot be used: give 40 to 256 letters and digits that no other token has, or none for a random key.";

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

/// Only superusers make or change superusers (else a user manager could make themselves one).
fn superuser_rule(actor: &Actor, target_is_superuser: bool) -> Result<()> {
    if target_is_superuser && !actor.user.is_superuser {
        Err(Error::Forbidden)
    } else {
        Ok(())
    }
}

/// A user the actor may see: themselves, or anyone with the permission to view users.
fn visible(actor: &Actor, id: i64) -> Result<()> {
    if actor.user.id == id || actor.can(types::USER, Action::View) {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// Another user's tokens need the permission for `action` on tokens; one's own do not.
fn tokens_of(actor: &Actor, owner: &User, action: Action) -> Result<()> {
    if actor.user.id == owner.id {
        return Ok(());
    }
    require(actor, types::TOKEN, action)?;
    superuser_rule(actor, owner.is_superuser)
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
    // What NetBox lets a body set and Herald does not keep is refused, never dropped: a user
    // asked to be made inactive must not stay active.
    if r.raw("is_active").is_some_and(|v| v != &Value::Bool(true)) {
        r.errors.add(
            "is_active",
            "Herald's users are always active: delete the user (or its tokens) to end its access.",
        );
    }
    if r.bool("is_staff").is_some_and(|staff| staff != user.is_superuser) {
        r.errors.add(
            "is_staff",
            "In Herald, is_staff follows is_superuser: set is_superuser.",
        );
    }
    let known = |k: &str| {
        matches!(
            k,
            "username" | "password" | "is_superuser" | "groups" | "is_active" | "is_staff" | "date_joined"
        )
    };
    refuse_unknown_keys(body, known, "users", &mut r.errors);
    let errors: FieldErrors = std::mem::take(&mut r.errors);
    Ok(errors.finish((user, password))?)
}

impl Services {
    /// The token with this key, and who holds it; `InvalidToken` when there is none.
    pub async fn authenticate(&self, key: &str) -> Result<(Token, Actor)> {
        let (token, user) = match self.store.token_by_hash(&auth::hash_key(key.trim())).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Err(Error::InvalidToken),
            Err(e) => return Err(e.into()),
        };
        Ok((token, self.actor(user).await?))
    }

    /// `user` with what they may do.
    pub async fn actor(&self, user: User) -> Result<Actor> {
        let permissions = if user.is_superuser {
            Vec::new()
        } else {
            self.store.permissions_of_user(user.id).await?
        };
        Ok(Actor::new(user, &permissions))
    }

    /// The users the actor may see, optionally only those named.
    pub async fn users(&self, actor: &Actor, names: &[String]) -> Result<Vec<User>> {
        let all = actor.can(types::USER, Action::View);
        Ok(self
            .store
            .users()
            .await?
            .into_iter()
            .filter(|u| all || u.id == actor.user.id)
            .filter(|u| names.is_empty() || names.contains(&u.username))
            .collect())
    }

    pub async fn user(&self, actor: &Actor, id: i64) -> Result<User> {
        visible(actor, id)?;
        Ok(self.store.user(id).await?)
    }

    /// The groups of these users (as another call of this layer gave them, so the caller may
    /// see them), as `(user id, group)`.
    pub async fn user_groups(&self, users: &[User]) -> Result<Vec<(i64, Group)>> {
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        let memberships = self.store.user_groups(&ids).await?;
        if memberships.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.store.groups().await?;
        Ok(memberships
            .into_iter()
            .filter_map(|(user, g)| groups.iter().find(|x| x.id == g).map(|g| (user, g.clone())))
            .collect())
    }

    /// Creates a user from `{"username", "password", "is_superuser", "groups"}`.
    pub async fn create_user(&self, actor: &Actor, body: &Value) -> Result<User> {
        require(actor, types::USER, Action::Add)?;
        let (user, password) = read_user(blank_user(), body, true)?;
        superuser_rule(actor, user.is_superuser)?;
        let groups = self.read_groups(body).await?;
        let created = self
            .insert_user(&user.username, &password.unwrap_or_default(), user.is_superuser)
            .await?;
        if let Some(groups) = groups {
            self.store.set_user_groups(created.id, &groups).await?;
        }
        Ok(created)
    }

    /// `groups` of a user body: ids of groups that exist; `None` when not given.
    async fn read_groups(&self, body: &Value) -> Result<Option<Vec<i64>>> {
        let Some(given) = body.get("groups") else {
            return Ok(None);
        };
        let ids: Option<Vec<i64>> = given.as_array().and_then(|items| {
            items
                .iter()
                .map(|v| v.as_i64().or_else(|| v.get("id").and_then(Value::as_i64)))
                .collect()
        });
        let ids = ids.ok_or_else(|| Error::field("groups", "Expected a list of group ids."))?;
        let known: Vec<i64> = self.store.groups().await?.iter().map(|g| g.id).collect();
        if let Some(bad) = ids.iter().find(|id| !known.contains(id)) {
            return Err(Error::field(
                "groups",
                format!("Invalid pk \"{bad}\" - object does not exist."),
            ));
        }
        Ok(Some(ids))
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
        let hash = self.passwords.run(move || auth::hash_password(&password)).await??;
        Ok(self.store.create_user(username, &hash, superuser, Utc::now()).await?)
    }

    /// Changes a user: the fields given in `body`.
    pub async fn update_user(&self, actor: &Actor, id: i64, body: &Value) -> Result<User> {
        require(actor, types::USER, Action::Change)?;
        let current = self.store.user(id).await?;
        superuser_rule(actor, current.is_superuser)?;
        let (mut user, password) = read_user(current, body, false)?;
        superuser_rule(actor, user.is_superuser)?;
        let groups = self.read_groups(body).await?;
        if let Some(p) = password {
            user.password_hash = self.passwords.run(move || auth::hash_password(&p)).await??;
        }
        self.store.update_user(&user).await?;
        if let Some(groups) = groups {
            self.store.set_user_groups(id, &groups).await?;
        }
        Ok(self.store.user(id).await?)
    }

    /// Deletes a user and their tokens (never oneself).
    pub async fn delete_user(&self, actor: &Actor, id: i64) -> Result<()> {
        require(actor, types::USER, Action::Delete)?;
        if id == actor.user.id {
            return Err(Error::Conflict(
                "You cannot delete the user you are signed in as.".into(),
            ));
        }
        superuser_rule(actor, self.store.user(id).await?.is_superuser)?;
        Ok(self.store.delete_user(id).await?)
    }

    /// Changes the actor's own password, after checking the current one.
    /// Changes a user's own password (the current one must be given) and signs out every other
    /// session of theirs: all but `keep` (a session key hash), when given.
    pub async fn change_password(&self, actor: &User, current: &str, new: &str, keep: Option<&str>) -> Result<()> {
        if new.is_empty() {
            return Err(Error::field("new_password", "This field may not be blank."));
        }
        let (current, hash) = (current.to_string(), actor.password_hash.clone());
        if !self
            .passwords
            .run(move || auth::verify_password(&current, &hash))
            .await?
        {
            return Err(Error::field("password", "The current password is not right."));
        }
        let mut user = self.store.user(actor.id).await?;
        let new = new.to_string();
        user.password_hash = self.passwords.run(move || auth::hash_password(&new)).await??;
        self.store.update_user(&user).await?;
        self.store.delete_user_sessions(user.id, keep).await?;
        Ok(())
    }

    /// Tokens the actor may see (with the permission, everyone's), optionally of some users
    /// only.
    pub async fn tokens(&self, actor: &Actor, user_ids: &[i64]) -> Result<Vec<(Token, User)>> {
        let scope = (!actor.can(types::TOKEN, Action::View)).then_some(actor.user.id);
        Ok(self
            .store
            .tokens(scope)
            .await?
            .into_iter()
            .filter(|(t, _)| user_ids.is_empty() || user_ids.contains(&t.user_id))
            .collect())
    }

    pub async fn token(&self, actor: &Actor, id: i64) -> Result<(Token, User)> {
        let (token, user) = self.store.token(id).await?;
        tokens_of(actor, &user, Action::View).map_err(|_| Error::NotFound)?;
        Ok((token, user))
    }

    /// Creates a token from `{"user", "write_enabled", "description", "key"}`: for the actor,
    /// or (with the permission to add tokens) for the user named.
    pub async fn create_token(&self, actor: &Actor, body: &Value) -> Result<NewToken> {
        let owner = match body.get("user") {
            None | Some(Value::Null) => actor.user.clone(),
            Some(v) => {
                let id = v.as_i64().or_else(|| v.get("id").and_then(Value::as_i64));
                let id = id.ok_or_else(|| Error::field("user", "Expected a user id."))?;
                match self.store.user(id).await {
                    Ok(u) => u,
                    Err(StoreError::NotFound) => return Err(Error::field("user", format!("No user with id {id}."))),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        tokens_of(actor, &owner, Action::Add)?;
        self.new_token(owner, body, false).await
    }

    /// `{"username", "password"}` (and the token's fields) → a new token for that user, as
    /// pynetbox's `create_token` asks for one.
    pub async fn provision_token(&self, body: &Value, peer: Option<IpAddr>) -> Result<NewToken> {
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
            .check_password(&username.unwrap_or_default(), &password.unwrap_or_default(), peer)
            .await?;
        self.new_token(user, body, true).await
    }

    /// The user with this name and password; `BadCredentials` otherwise, in the same time
    /// whether the user exists or not. Attempts are limited per user and per client address
    /// (`Throttled` past the limit).
    pub async fn check_password(&self, username: &str, password: &str, peer: Option<IpAddr>) -> Result<User> {
        self.throttle.attempt(username, peer).map_err(Error::Throttled)?;
        let found = match self.store.user_by_name(username).await {
            Ok(u) => Some(u),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        // An unknown user is checked against a stand-in hash: the answer takes as long.
        let hash = found
            .as_ref()
            .map_or_else(|| stand_in_hash().to_string(), |u| u.password_hash.clone());
        let password = password.to_string();
        let ok = self
            .passwords
            .run(move || auth::verify_password(&password, &hash))
            .await?;
        match found {
            Some(user) if ok => Ok(user),
            _ => Err(Error::BadCredentials),
        }
    }

    /// Creates a token for `user` from `write_enabled`, `description` and an optional `key`
    /// (`provisioned`: the body also holds the user's `username` and `password`).
    async fn new_token(&self, user: User, body: &Value, provisioned: bool) -> Result<NewToken> {
        let mut r = Reader::new(body)?;
        // An expiry or address limit Herald would not enforce is refused, not dropped.
        if !matches!(r.raw("expires"), None | Some(Value::Null)) {
            r.errors.add(
                "expires",
                "Herald's tokens do not expire: leave this null, and revoke the token instead.",
            );
        }
        if !matches!(r.raw("allowed_ips"), None | Some(Value::Null))
            && r.raw("allowed_ips") != Some(&Value::Array(vec![]))
        {
            r.errors.add(
                "allowed_ips",
                "Herald's tokens are not limited by address: leave this empty.",
            );
        }
        let known = |k: &str| match k {
            "user" => !provisioned,
            "username" | "password" => provisioned,
            _ => matches!(
                k,
                "write_enabled" | "description" | "key" | "expires" | "allowed_ips" | "last_used"
            ),
        };
        refuse_unknown_keys(body, known, "tokens", &mut r.errors);
        let write_enabled = r.bool("write_enabled").unwrap_or(true);
        let description = r.string("description").unwrap_or_default();
        let key = r.string("key");
        if key.as_deref().is_some_and(|k| !auth::valid_key(k)) {
            r.errors.add("key", KEY_REFUSED);
        }
        if description.chars().count() > MAX_DESCRIPTION {
            r.errors
                .add("description", "Ensure this field has no more than 200 characters.");
        }
        std::mem::take(&mut r.errors).finish(())?;
        self.add_token(user, key, write_enabled, &description).await
    }

    /// Creates a token for the user named `username` (the command line's `herald token
    /// create`, run by whoever holds the database).
    pub async fn add_token_for(&self, username: &str, write_enabled: bool, description: &str) -> Result<NewToken> {
        let user = self.store.user_by_name(username).await.map_err(|e| match e {
            StoreError::NotFound => Error::BadRequest(format!("no user named {username:?}")),
            e => e.into(),
        })?;
        self.add_token(user, None, write_enabled, description).await
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
            return Err(Error::field("key", KEY_REFUSED));
        }
        let token = self
            .store
            .create_token(user.id, &auth::hash_key(&key), write_enabled, description, Utc::now())
            .await
            // A key in use is refused as any unusable key is: the answer must not tell that
            // some token has it.
            .map_err(|e| match e {
                StoreError::Unique(u) if u == Unique::TOKEN_KEY => Error::field("key", KEY_REFUSED),
                other => other.into(),
            })?;
        Ok(NewToken { token, user, key })
    }

    pub async fn delete_token(&self, actor: &Actor, id: i64) -> Result<()> {
        let (_, owner) = self.store.token(id).await?;
        tokens_of(actor, &owner, Action::View).map_err(|_| Error::NotFound)?;
        tokens_of(actor, &owner, Action::Delete)?;
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
