//! Users, tokens and worker heartbeats in SQLite.

use super::{col, found, map_err, micros, sql, Run, SqliteStore, DIALECT};
use crate::auth::{Session, Token, User};
use crate::store::rows::{self, one, TOKEN_SELECT, USER_SELECT};
use crate::store::statements;
use crate::store::{Result, SessionStore, StoreError, StoreResultExt, Unique, UserStore, WorkerStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

impl SqliteStore {
    async fn delete_by_id(&self, table: &'static str, id: i64) -> Result<()> {
        self.write
            .run(move |c| {
                let n = c
                    .execute(&format!("delete from {table} where id = ?"), params![id])
                    .map_err(map_err)?;
                found(n)
            })
            .await
    }

    async fn one_user(&self, column: &'static str, value: impl Into<super::Arg> + Send + 'static) -> Result<User> {
        let value = value.into();
        self.read
            .run(move |c| {
                let mut q = sql(USER_SELECT);
                q.push(&format!(" where {column} = ")).bind(value);
                one(q.rows(c, |r| rows::user(r))?)
            })
            .await
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn user_count(&self) -> Result<i64> {
        self.read.run(|c| sql("select count(*) from users").scalar(c)).await
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        superuser: bool,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let (username, password_hash) = (username.to_string(), password_hash.to_string());
        let id: i64 = self
            .write
            .run(move |c| {
                c.query_row(
                    "insert into users (username, password_hash, is_superuser, created_at) values (?, ?, ?, ?) returning id",
                    params![username, password_hash, superuser, micros(now)],
                    |r| r.get(0),
                )
                .map_err(map_err)
            })
            .await
            .on_unique(Unique::USERNAME)?;
        self.user(id).await
    }

    async fn user(&self, id: i64) -> Result<User> {
        self.one_user("id", id).await
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        self.one_user("username", username.to_string()).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.read
            .run(|c| sql(&format!("{USER_SELECT} order by username")).rows(c, |r| rows::user(r)))
            .await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write
            .run(move |c| {
                let n = c
                    .execute(
                        "update users set username = ?, password_hash = ?, is_superuser = ? where id = ?",
                        params![user.username, user.password_hash, user.is_superuser, user.id],
                    )
                    .map_err(map_err)?;
                found(n)
            })
            .await
            .on_unique(Unique::USERNAME)
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
        let (key_hash, description) = (key_hash.to_string(), description.to_string());
        let id: i64 = self
            .write
            .run(move |c| {
                c.query_row(
                    "insert into tokens (user_id, key_hash, write_enabled, description, created_at) values (?, ?, ?, ?, ?) returning id",
                    params![user_id, key_hash, write_enabled, description, micros(now)],
                    |r| r.get(0),
                )
                .map_err(map_err)
            })
            .await
            .on_unique(Unique::TOKEN_KEY)?;
        Ok(self.token(id).await?.0)
    }

    async fn token(&self, id: i64) -> Result<(Token, User)> {
        self.read
            .run(move |c| {
                let mut q = sql(TOKEN_SELECT);
                q.push(" where t.id = ").bind(id);
                one(q.rows(c, |r| rows::token_and_user(r))?)
            })
            .await
    }

    async fn token_by_hash(&self, key_hash: &str) -> Result<(Token, User)> {
        let key_hash = key_hash.to_string();
        self.read
            .run(move |c| {
                let mut q = sql(TOKEN_SELECT);
                q.push(" where t.key_hash = ").bind(key_hash);
                one(q.rows(c, |r| rows::token_and_user(r))?)
            })
            .await
    }

    async fn tokens(&self, user_id: Option<i64>) -> Result<Vec<(Token, User)>> {
        self.read
            .run(move |c| {
                let mut q = sql(TOKEN_SELECT);
                if let Some(u) = user_id {
                    q.push(" where t.user_id = ").bind(u);
                }
                q.push(" order by t.id");
                q.rows(c, |r| rows::token_and_user(r))
            })
            .await
    }

    async fn delete_token(&self, id: i64) -> Result<()> {
        self.delete_by_id("tokens", id).await
    }
}

#[async_trait]
impl WorkerStore for SqliteStore {
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
        self.write.run(move |c| q.execute(c).map(|_| ())).await
    }

    async fn api_node_gone(&self, id: &str) -> Result<()> {
        let q = statements::api_node_gone(&DIALECT, id);
        self.write.run(move |c| q.execute(c).map(|_| ())).await
    }

    async fn api_addresses_since(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        let q = statements::api_addresses_since(&DIALECT, since);
        let lists = self
            .read
            .run(move |c| q.rows(c, |r| col::<String>(r, "addresses")))
            .await?;
        Ok(rows::address_lists(&lists))
    }

    async fn worker_heartbeat(&self, id: &str, host: &str, pid: u32, now: DateTime<Utc>) -> Result<()> {
        let (id, host) = (id.to_string(), host.to_string());
        self.write
            .run(move |c| {
                c.execute(
                    "insert into workers (id, host, pid, started_at, seen_at) values (?1, ?2, ?3, ?4, ?4) \
                     on conflict (id) do update set seen_at = excluded.seen_at",
                    params![id, host, i64::from(pid), micros(now)],
                )
                .map(|_| ())
                .map_err(map_err)
            })
            .await
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.write
            .run(move |c| {
                c.execute("delete from workers where id = ?", params![id])
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
    }

    async fn workers_seen_since(&self, since: DateTime<Utc>) -> Result<i64> {
        self.read
            .run(move |c| {
                let mut q = sql("select count(*) from workers where seen_at >= ");
                q.bind(since);
                q.scalar(c)
            })
            .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &Session) -> Result<()> {
        let q = statements::session_insert(&DIALECT, session);
        self.write.run(move |c| q.execute(c).map(|_| ())).await
    }

    async fn session(&self, key_hash: &str) -> Result<(Session, User)> {
        let q = statements::session(&DIALECT, key_hash);
        self.read
            .run(move |c| one(q.rows(c, |r| rows::session_and_user(r))?))
            .await
    }

    async fn touch_session(&self, key_hash: &str, expires: DateTime<Utc>) -> Result<()> {
        let q = statements::session_touch(&DIALECT, key_hash, expires);
        self.write.run(move |c| found(q.execute(c)?)).await
    }

    async fn delete_session(&self, key_hash: &str) -> Result<()> {
        let q = statements::session_delete(&DIALECT, key_hash);
        self.write.run(move |c| q.execute(c).map(|_| ())).await
    }

    async fn delete_user_sessions(&self, user_id: i64, keep: Option<&str>) -> Result<u64> {
        let q = statements::user_sessions_delete(&DIALECT, user_id, keep);
        self.write.run(move |c| q.execute(c).map(|n| n as u64)).await
    }

    async fn purge_sessions(&self, now: DateTime<Utc>, limit: i64) -> Result<u64> {
        let q = statements::sessions_purge(&DIALECT, now, limit);
        self.write.run(move |c| q.execute(c).map(|n| n as u64)).await
    }
}
