//! Users and tokens, browser sessions, worker and API node heartbeats: for every backend.

use crate::auth::{Session, Token, User};
use crate::store::exec::{found, Exec};
use crate::store::rows::{self, one, TOKEN_SELECT, USER_SELECT};
use crate::store::sql::Arg;
use crate::store::statements;
use crate::store::{Result, SessionStore, StoreError, StoreResultExt, Unique, UserStore, WorkerStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

async fn one_user<E: Exec>(e: &E, column: &str, value: Arg) -> Result<User> {
    let mut q = e.sql(USER_SELECT);
    q.push(&format!(" where {column} = ")).bind(value);
    one(e.rows(q, rows::user).await?)
}

async fn one_token<E: Exec>(e: &E, column: &str, value: Arg) -> Result<(Token, User)> {
    let mut q = e.sql(TOKEN_SELECT);
    q.push(&format!(" where {column} = ")).bind(value);
    one(e.rows(q, rows::token_and_user).await?)
}

/// Deletes row `id` of `table`; `NotFound` when there is none.
pub(super) async fn delete_by_id<E: Exec>(e: &E, table: &str, id: i64) -> Result<()> {
    let mut q = e.sql(&format!("delete from {table} where id = "));
    q.bind(id);
    found(e.exec(q).await?)
}

/// Runs an insert ending in `returning id`, alone in its transaction; returns the id.
pub(super) async fn insert_returning_id<E: Exec>(e: &E, q: crate::store::sql::Sql) -> Result<i64> {
    one(e.rows(q, |r| r.int("id")).await?)
}

#[async_trait]
impl<E: Exec> UserStore for E {
    async fn user_count(&self) -> Result<i64> {
        one(self
            .rows(self.sql("select count(*) as n from users"), |r| r.int("n"))
            .await?)
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        superuser: bool,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let mut q = self.sql("insert into users (username, password_hash, is_superuser, created_at) values ");
        q.list([
            Arg::from(username),
            Arg::from(password_hash),
            Arg::Bool(superuser),
            Arg::from(now),
        ])
        .push(" returning id");
        let id = insert_returning_id(self, q).await.on_unique(Unique::USERNAME)?;
        self.user(id).await
    }

    async fn user(&self, id: i64) -> Result<User> {
        one_user(self, "id", Arg::Int(id)).await
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        one_user(self, "username", Arg::from(username)).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.rows(self.sql(&format!("{USER_SELECT} order by username")), rows::user)
            .await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let mut q = self.sql("update users set username = ");
        q.bind(&user.username)
            .push(", password_hash = ")
            .bind(&user.password_hash)
            .push(", is_superuser = ")
            .bind(user.is_superuser)
            .push(" where id = ")
            .bind(user.id);
        found(self.exec(q).await.on_unique(Unique::USERNAME)?)
    }

    async fn delete_user(&self, id: i64) -> Result<()> {
        delete_by_id(self, "users", id).await
    }

    async fn create_token(
        &self,
        user_id: i64,
        key_hash: &str,
        write_enabled: bool,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<Token> {
        let mut q = self.sql("insert into tokens (user_id, key_hash, write_enabled, description, created_at) values ");
        q.list([
            Arg::Int(user_id),
            Arg::from(key_hash),
            Arg::Bool(write_enabled),
            Arg::from(description),
            Arg::from(now),
        ])
        .push(" returning id");
        let id = insert_returning_id(self, q).await.on_unique(Unique::TOKEN_KEY)?;
        Ok(self.token(id).await?.0)
    }

    async fn token(&self, id: i64) -> Result<(Token, User)> {
        one_token(self, "t.id", Arg::Int(id)).await
    }

    async fn token_by_hash(&self, key_hash: &str) -> Result<(Token, User)> {
        one_token(self, "t.key_hash", Arg::from(key_hash)).await
    }

    async fn tokens(&self, user_id: Option<i64>) -> Result<Vec<(Token, User)>> {
        let mut q = self.sql(TOKEN_SELECT);
        if let Some(u) = user_id {
            q.push(" where t.user_id = ").bind(u);
        }
        q.push(" order by t.id");
        self.rows(q, rows::token_and_user).await
    }

    async fn delete_token(&self, id: i64) -> Result<()> {
        delete_by_id(self, "tokens", id).await
    }
}

#[async_trait]
impl<E: Exec> SessionStore for E {
    async fn create_session(&self, session: &Session) -> Result<()> {
        self.exec(statements::session_insert(self.dialect(), session))
            .await
            .map(|_| ())
    }

    async fn session(&self, key_hash: &str) -> Result<(Session, User)> {
        one(self
            .rows(statements::session(self.dialect(), key_hash), rows::session_and_user)
            .await?)
    }

    async fn touch_session(&self, key_hash: &str, expires: DateTime<Utc>) -> Result<()> {
        let q = statements::session_touch(self.dialect(), key_hash, expires);
        found(self.exec(q).await?)
    }

    async fn delete_session(&self, key_hash: &str) -> Result<()> {
        self.exec(statements::session_delete(self.dialect(), key_hash))
            .await
            .map(|_| ())
    }

    async fn delete_user_sessions(&self, user_id: i64, keep: Option<&str>) -> Result<u64> {
        self.exec(statements::user_sessions_delete(self.dialect(), user_id, keep))
            .await
    }

    async fn purge_sessions(&self, now: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.exec(statements::sessions_purge(self.dialect(), now, limit)).await
    }
}

#[async_trait]
impl<E: Exec> WorkerStore for E {
    async fn api_node_seen(
        &self,
        id: &str,
        host: &str,
        pid: u32,
        addresses: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let list = serde_json::to_string(addresses).map_err(|e| StoreError::Other(e.into()))?;
        let q = statements::api_node_seen(self.dialect(), id, host, pid, &list, now);
        self.exec(q).await.map(|_| ())
    }

    async fn api_node_gone(&self, id: &str) -> Result<()> {
        self.exec(statements::api_node_gone(self.dialect(), id))
            .await
            .map(|_| ())
    }

    async fn api_addresses_since(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        let q = statements::api_addresses_since(self.dialect(), since);
        let lists = self.rows(q, |r| r.text("addresses")).await?;
        Ok(rows::address_lists(&lists))
    }

    async fn worker_heartbeat(&self, id: &str, host: &str, pid: u32, now: DateTime<Utc>) -> Result<()> {
        let mut q = self.sql("insert into workers (id, host, pid, started_at, seen_at) values ");
        q.list([
            Arg::from(id),
            Arg::from(host),
            Arg::Int(i64::from(pid)),
            Arg::from(now),
            Arg::from(now),
        ])
        .push(" on conflict (id) do update set seen_at = excluded.seen_at");
        self.exec(q).await.map(|_| ())
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        let mut q = self.sql("delete from workers where id = ");
        q.bind(id);
        self.exec(q).await.map(|_| ())
    }

    async fn workers_seen_since(&self, since: DateTime<Utc>) -> Result<i64> {
        let mut q = self.sql("select count(*) as n from workers where seen_at >= ");
        q.bind(since);
        one(self.rows(q, |r| r.int("n")).await?)
    }
}
