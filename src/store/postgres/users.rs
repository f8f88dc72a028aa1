//! Users, tokens and worker heartbeats in PostgreSQL.

use super::{found, map_err, sql, PgStore, DIALECT};
use crate::auth::{Session, Token, User};
use crate::store::rows::{self, one, TOKEN_SELECT, USER_SELECT};
use crate::store::sql::Arg;
use crate::store::statements;
use crate::store::{Result, SessionStore, StoreError, StoreResultExt, Unique, UserStore, WorkerStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

impl PgStore {
    async fn one_user(&self, column: &str, value: Arg) -> Result<User> {
        let mut q = sql(USER_SELECT);
        q.push(&format!(" where {column} = ")).bind(value);
        one(self.read(&q, rows::user).await?)
    }

    async fn tokens_where(&self, column: Option<&str>, value: Arg) -> Result<Vec<(Token, User)>> {
        let mut q = sql(TOKEN_SELECT);
        if let Some(column) = column {
            q.push(&format!(" where {column} = ")).bind(value);
        }
        q.push(" order by t.id");
        self.read(&q, rows::token_and_user).await
    }

    async fn delete_by_id(&self, table: &str, id: i64) -> Result<()> {
        let mut q = sql(&format!("delete from {table} where id = "));
        q.bind(id);
        found(self.exec(&q).await?)
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn user_count(&self) -> Result<i64> {
        self.value(&sql("select count(*) from users")).await
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        superuser: bool,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let mut q = sql("insert into users (username, password_hash, is_superuser, created_at) values ");
        q.list([
            Arg::from(username),
            Arg::from(password_hash),
            Arg::Bool(superuser),
            Arg::from(now),
        ])
        .push(" returning id");
        let id: i64 = self.value(&q).await.on_unique(Unique::USERNAME)?;
        self.user(id).await
    }

    async fn user(&self, id: i64) -> Result<User> {
        self.one_user("id", Arg::Int(id)).await
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        self.one_user("username", Arg::from(username)).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.read(&sql(&format!("{USER_SELECT} order by username")), rows::user)
            .await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let mut q = sql("update users set username = ");
        q.bind(&user.username)
            .push(", password_hash = ")
            .bind(&user.password_hash)
            .push(", is_superuser = ")
            .bind(user.is_superuser)
            .push(" where id = ")
            .bind(user.id);
        found(self.exec(&q).await.on_unique(Unique::USERNAME)?)
    }

    async fn delete_user(&self, id: i64) -> Result<()> {
        self.delete_by_id("users", id).await
    }

    async fn create_token(
        &self,
        user_id: i64,
        key_hash: &str,
        write_enabled: bool,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<Token> {
        let mut q = sql("insert into tokens (user_id, key_hash, write_enabled, description, created_at) values ");
        q.list([
            Arg::Int(user_id),
            Arg::from(key_hash),
            Arg::Bool(write_enabled),
            Arg::from(description),
            Arg::from(now),
        ])
        .push(" returning id");
        let id: i64 = self.value(&q).await.on_unique(Unique::TOKEN_KEY)?;
        Ok(self.token(id).await?.0)
    }

    async fn token(&self, id: i64) -> Result<(Token, User)> {
        one(self.tokens_where(Some("t.id"), Arg::Int(id)).await?)
    }

    async fn token_by_hash(&self, key_hash: &str) -> Result<(Token, User)> {
        one(self.tokens_where(Some("t.key_hash"), Arg::from(key_hash)).await?)
    }

    async fn tokens(&self, user_id: Option<i64>) -> Result<Vec<(Token, User)>> {
        match user_id {
            Some(u) => self.tokens_where(Some("t.user_id"), Arg::Int(u)).await,
            None => self.tokens_where(None, Arg::Null).await,
        }
    }

    async fn delete_token(&self, id: i64) -> Result<()> {
        self.delete_by_id("tokens", id).await
    }
}

#[async_trait]
impl WorkerStore for PgStore {
    async fn api_node_seen(
        &self,
        id: &str,
        host: &str,
        pid: u32,
        addresses: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let list = serde_json::to_string(addresses).map_err(|e| StoreError::Other(e.into()))?;
        let q = statements::api_node_seen(&DIALECT, id, host, pid, &list, now);
        self.exec(&q).await.map(|_| ())
    }

    async fn api_node_gone(&self, id: &str) -> Result<()> {
        self.exec(&statements::api_node_gone(&DIALECT, id)).await.map(|_| ())
    }

    async fn api_addresses_since(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        let q = statements::api_addresses_since(&DIALECT, since);
        let lists = self.read(&q, |r| r.try_get::<_, String>(0).map_err(map_err)).await?;
        Ok(rows::address_lists(&lists))
    }

    async fn worker_heartbeat(&self, id: &str, host: &str, pid: u32, now: DateTime<Utc>) -> Result<()> {
        let mut q = sql("insert into workers (id, host, pid, started_at, seen_at) values ");
        q.list([
            Arg::from(id),
            Arg::from(host),
            Arg::Int(i64::from(pid)),
            Arg::from(now),
            Arg::from(now),
        ])
        .push(" on conflict (id) do update set seen_at = excluded.seen_at");
        self.exec(&q).await.map(|_| ())
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        let mut q = sql("delete from workers where id = ");
        q.bind(id);
        self.exec(&q).await.map(|_| ())
    }

    async fn workers_seen_since(&self, since: DateTime<Utc>) -> Result<i64> {
        let mut q = sql("select count(*) from workers where seen_at >= ");
        q.bind(since);
        self.value(&q).await
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, session: &Session) -> Result<()> {
        self.exec(&statements::session_insert(&DIALECT, session))
            .await
            .map(|_| ())
    }

    async fn session(&self, key_hash: &str) -> Result<(Session, User)> {
        one(self
            .read(&statements::session(&DIALECT, key_hash), rows::session_and_user)
            .await?)
    }

    async fn touch_session(&self, key_hash: &str, expires: DateTime<Utc>) -> Result<()> {
        found(
            self.exec(&statements::session_touch(&DIALECT, key_hash, expires))
                .await?,
        )
    }

    async fn delete_session(&self, key_hash: &str) -> Result<()> {
        self.exec(&statements::session_delete(&DIALECT, key_hash))
            .await
            .map(|_| ())
    }

    async fn delete_user_sessions(&self, user_id: i64, keep: Option<&str>) -> Result<u64> {
        self.exec(&statements::user_sessions_delete(&DIALECT, user_id, keep))
            .await
    }

    async fn purge_sessions(&self, now: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.exec(&statements::sessions_purge(&DIALECT, now, limit)).await
    }
}
