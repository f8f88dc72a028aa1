//! Storage: one contract, one implementation per database. A backend holds SQL, row mapping
//! and the mapping of its errors into `StoreError`; the rules that decide what to write live
//! above it (`outbox`, `objects::engine`, `queue`, `service`). Every backend passes the same
//! contract tests (`tests/store/`).
//!
//! The contract is split by what it stores: users and tokens, groups and permissions,
//! webhooks, objects and their change log, the queue (events, deliveries and attempts),
//! heartbeats; `Store` is their sum, plus migrations and the write transaction in which object
//! writes and the outbox run. What only runs statements is written once (`shared`, over
//! `exec::Exec`); a backend implements `Exec`, `ClaimStore` (claims and outcome batches) and
//! the write transaction.

pub mod exec;
pub mod postgres;
pub mod rows;
mod shared;
pub mod sql;
pub mod sqlite;
pub mod statements;

use crate::auth::{Group, Permission, Session, Token, User};
use crate::changes::{Change, ChangeFilter};
use crate::events::Event;
use crate::objects::{ObjectRead, ObjectTx};
use crate::page::Page;
use crate::queue::{Attempt, Batched, ClaimPlan, ClaimedRow, Delivery, DeliveryFilter, Outcome, Status};
use crate::webhooks::{EventRule, Firing, Webhook};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use postgres::PostgresConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Notify;

pub use crate::error::{StoreError, StoreResultExt, Unique, WriteError};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Users and their API tokens. Token keys are stored as hashes only.
/// The address and prefix fields of the catalog when the network index was made: the objects
/// whose networks its migration indexes (type, field, whether by host alone).
pub(crate) const NET_FIELDS_OF_MIGRATION: [(&str, &str, bool); 2] =
    [("ipam.ipaddress", "address", true), ("ipam.prefix", "prefix", false)];

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn user_count(&self) -> Result<i64>;
    /// `Unique(USERNAME)` when the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        superuser: bool,
        now: DateTime<Utc>,
    ) -> Result<User>;
    async fn user(&self, id: i64) -> Result<User>;
    async fn user_by_name(&self, username: &str) -> Result<User>;
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<User>>;
    /// Saves username, password hash and superuser flag.
    async fn update_user(&self, user: &User) -> Result<()>;
    /// Deletes a user and their tokens.
    async fn delete_user(&self, id: i64) -> Result<()>;
    /// `Unique(TOKEN_KEY)` when a token has this key already.
    async fn create_token(
        &self,
        user_id: i64,
        key_hash: &str,
        write_enabled: bool,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<Token>;
    async fn token(&self, id: i64) -> Result<(Token, User)>;
    /// The token with this key hash, and its user.
    async fn token_by_hash(&self, key_hash: &str) -> Result<(Token, User)>;
    /// Tokens with their users, of one user or of all, by id.
    async fn tokens(&self, user_id: Option<i64>) -> Result<Vec<(Token, User)>>;
    async fn delete_token(&self, id: i64) -> Result<()>;
}

/// Browser sessions, by the hash of their key.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> Result<()>;
    /// The session with this key hash, whatever its expiry, and its user.
    async fn session(&self, key_hash: &str) -> Result<(Session, User)>;
    /// Moves a session's expiry.
    async fn touch_session(&self, key_hash: &str, expires: DateTime<Utc>) -> Result<()>;
    async fn delete_session(&self, key_hash: &str) -> Result<()>;
    /// Ends every session of a user but `keep` (if given); returns how many.
    async fn delete_user_sessions(&self, user_id: i64, keep: Option<&str>) -> Result<u64>;
    /// Deletes up to `limit` sessions expired before `now`; returns how many.
    async fn purge_sessions(&self, now: DateTime<Utc>, limit: i64) -> Result<u64>;
}

/// Groups and permissions (who may do what to which object types).
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// `Unique(GROUP_NAME)` when the name is taken.
    async fn create_group(&self, name: &str, description: &str) -> Result<Group>;
    /// Every group, by name.
    async fn groups(&self) -> Result<Vec<Group>>;
    async fn group(&self, id: i64) -> Result<Group>;
    async fn update_group(&self, group: &Group) -> Result<()>;
    /// Deletes a group (its members stay, without it).
    async fn delete_group(&self, id: i64) -> Result<()>;
    /// `(user, group)` memberships of these users.
    async fn user_groups(&self, user_ids: &[i64]) -> Result<Vec<(i64, i64)>>;
    /// Makes a user a member of exactly these groups (`ForeignKey` if one is gone).
    async fn set_user_groups(&self, user_id: i64, group_ids: &[i64]) -> Result<()>;
    /// Returns it with its id and times. `Unique(PERMISSION_NAME)` when the name is taken;
    /// `ForeignKey` when a user or group it names is gone.
    async fn create_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission>;
    /// Every permission, by name.
    async fn permissions(&self) -> Result<Vec<Permission>>;
    async fn permission(&self, id: i64) -> Result<Permission>;
    /// Replaces it (users and groups included); `last_updated` becomes `now`.
    async fn update_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission>;
    async fn delete_permission(&self, id: i64) -> Result<()>;
    /// The permissions given to the user, directly or through their groups (enabled or not).
    async fn permissions_of_user(&self, user_id: i64) -> Result<Vec<Permission>>;
}

/// Webhooks. Writes are all or none.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Every webhook, by name then id.
    async fn webhooks(&self) -> Result<Vec<Webhook>>;
    /// Every webhook's id and `last_updated`, by id: enough to tell whether a copy is current.
    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>>;
    /// The webhooks with these ids that exist.
    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>>;
    /// Inserts them; returns them with ids, `created` and `last_updated` set to `now`.
    /// `Unique(WEBHOOK_NAME)` when a name is taken.
    async fn create_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>>;
    /// Replaces them (`NotFound` if one is gone); `last_updated` becomes `now`.
    async fn update_webhooks(&self, webhooks: Vec<Webhook>, now: DateTime<Utc>) -> Result<Vec<Webhook>>;
    /// Deletes them (`NotFound` if one is gone) with the event rules that fire them; their
    /// deliveries and attempts stay (those not yet sent fail, saying why) and name them until
    /// retention purges them (`purge_deleted_webhooks`).
    async fn delete_webhooks(&self, ids: &[i64], now: DateTime<Utc>) -> Result<()>;
    /// Forgets up to `limit` webhooks deleted before `before` that no delivery names any more.
    async fn purge_deleted_webhooks(&self, before: DateTime<Utc>, limit: i64) -> Result<u64>;
    /// Counts what outcomes say of each webhook's health (a success clears its failures).
    async fn note_health(&self, notes: &[crate::webhooks::health::HealthNote]) -> Result<()>;
    /// The live webhooks that are failing, or that the operator was told are: what health
    /// checks look at.
    async fn troubled_webhooks(&self) -> Result<Vec<crate::webhooks::health::Trouble>>;
}

/// Event rules. Writes are all or none.
#[async_trait]
pub trait EventRuleStore: Send + Sync {
    /// Every rule, by name then id.
    async fn event_rules(&self) -> Result<Vec<EventRule>>;
    /// The rules with these ids that exist.
    async fn event_rules_by_id(&self, ids: &[i64]) -> Result<Vec<EventRule>>;
    /// Inserts them; returns them with ids, `created` and `last_updated` set to `now`.
    /// `Unique(EVENT_RULE_NAME)` when a name is taken; `ForeignKey` when a webhook is gone.
    async fn create_event_rules(&self, rules: Vec<EventRule>, now: DateTime<Utc>) -> Result<Vec<EventRule>>;
    /// Replaces them (`NotFound` if one is gone); `last_updated` becomes `now`.
    async fn update_event_rules(&self, rules: Vec<EventRule>, now: DateTime<Utc>) -> Result<Vec<EventRule>>;
    /// Deletes them (`NotFound` if one is gone); their deliveries stay.
    async fn delete_event_rules(&self, ids: &[i64]) -> Result<()>;
}

/// Objects (reads; writes go through `Store::write`) and the change log.
#[async_trait]
pub trait ObjectStore: ObjectRead {
    /// One page of changes, newest first, and how many match.
    async fn object_changes(&self, filter: &ChangeFilter, limit: i64, offset: i64) -> Result<Page<Change>>;
    /// Deletes up to `limit` changes older than `before`, oldest first; returns how many.
    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64>;
}

/// What a claim took: the rows, and the events they belong to (each once).
#[derive(Debug, Default)]
pub struct ClaimedBatch {
    pub rows: Vec<ClaimedRow>,
    pub events: Vec<Event>,
}

/// The queue: events, deliveries and their attempts.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Which of these deliveries exist.
    async fn existing_deliveries(&self, ids: &[i64]) -> Result<Vec<i64>>;
    /// Puts in-flight deliveries back in the queue, due `now`, without counting the attempt
    /// they were claimed for (a worker shutting down before sending them).
    async fn release(&self, delivery_ids: &[i64], now: DateTime<Utc>) -> Result<()>;
    /// When the next claimable delivery falls due, if any.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>>;
    /// One page of deliveries, newest first, and how many match.
    /// A page of deliveries, newest first; the count stops at `count_at_most` when given.
    async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: i64,
        offset: i64,
        count_at_most: Option<i64>,
    ) -> Result<Page<Delivery>>;
    async fn delivery(&self, id: i64) -> Result<Delivery>;
    /// The newest delivery of each of these webhooks that has any.
    async fn last_deliveries(&self, webhook_ids: &[i64]) -> Result<Vec<Delivery>>;
    /// A delivery's attempts, oldest first.
    async fn attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>>;
    async fn event(&self, id: i64) -> Result<Event>;
    /// Deliveries per status (statuses with none may be left out).
    async fn status_counts(&self) -> Result<Vec<(Status, i64)>>;
    /// `status_counts`, each count stopping at `at_most`.
    async fn status_counts_at_most(&self, at_most: i64) -> Result<Vec<(Status, i64)>>;
    /// When the oldest delivery in one of `statuses` was created.
    async fn oldest_created(&self, statuses: &[Status]) -> Result<Option<DateTime<Utc>>>;
    /// Attempts that failed at or after `since`.
    async fn failed_attempts_since(&self, since: DateTime<Utc>) -> Result<i64>;
    /// Deliveries that finished at or after `since`: (minute since the epoch, `Succeeded` or
    /// `Failed`, how many), by minute.
    async fn finished_per_minute(&self, since: DateTime<Utc>) -> Result<Vec<(i64, Status, i64)>>;
    /// The `limit` webhooks with the most failed attempts at or after `since`: (id, name,
    /// failed attempts), most first.
    async fn failing_webhooks(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<(i64, String, i64)>>;
    /// Makes every matching delivery queued and due `now`; returns how many.
    async fn requeue(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64>;
    /// Deletes every matching delivery with its attempts; returns how many.
    async fn delete_deliveries(&self, filter: &DeliveryFilter) -> Result<u64>;
    /// Deletes up to `limit` deliveries (with their attempts), succeeded ones last changed
    /// before `succeeded_before` and failed ones before `failed_before`; returns how many.
    async fn purge_deliveries(
        &self,
        succeeded_before: DateTime<Utc>,
        failed_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64>;
    /// Deletes up to `limit` events created before `before` that have no delivery left.
    async fn purge_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64>;
    /// Takes up to `want` permits to send for webhook `id`, limited to `rate` requests a second
    /// with a burst of one second's worth, for every process of a fleet at once. Returns how
    /// many were granted and when the next one frees.
    async fn take_permits(&self, id: i64, rate: f64, want: i64, now: DateTime<Utc>) -> Result<(i64, DateTime<Utc>)>;
    /// Gives back `n` permits taken and not used.
    async fn return_permits(&self, id: i64, rate: f64, n: i64) -> Result<()>;
    /// Forgets up to `limit` keys of posted events remembered before `before`.
    async fn purge_intake_keys(&self, before: DateTime<Utc>, limit: i64) -> Result<u64>;
}

/// What each backend writes its own way, for speed: claims and outcome batches.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Runs `plan` (see `ClaimPlan`): the due deliveries it takes become in flight, in one
    /// transaction.
    async fn claim(&self, plan: &ClaimPlan) -> Result<ClaimedBatch>;
    /// Records `outcomes` in one transaction: each attempt, and each delivery's status, error,
    /// status code and `next_attempt_at` as given, for deliveries still in flight (others are
    /// left as they are). `ForeignKey` (nothing written) when a delivery no longer exists.
    async fn complete(&self, outcomes: Arc<[Outcome]>, now: DateTime<Utc>) -> Result<()>;
}

/// Delivery workers and API nodes, by heartbeat.
#[async_trait]
pub trait WorkerStore: Send + Sync {
    /// Records that API node `id` (on `host`, process `pid`) listens on `addresses`
    /// (`address:port` each) at `now`.
    async fn api_node_seen(
        &self,
        id: &str,
        host: &str,
        pid: u32,
        addresses: &[String],
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Forgets an API node that stopped.
    async fn api_node_gone(&self, id: &str) -> Result<()>;
    /// The addresses of the API nodes seen at or after `since`.
    async fn api_addresses_since(&self, since: DateTime<Utc>) -> Result<Vec<String>>;
    /// Records that worker `id` (on `host`, process `pid`) is alive at `now`.
    async fn worker_heartbeat(&self, id: &str, host: &str, pid: u32, now: DateTime<Utc>) -> Result<()>;
    /// Forgets a worker that stopped.
    async fn worker_gone(&self, id: &str) -> Result<()>;
    /// Workers whose last heartbeat is at or after `since`.
    async fn workers_seen_since(&self, since: DateTime<Utc>) -> Result<i64>;
}

/// The enabled webhooks' `(id, last_updated)` and every event rule's, each by id.
pub type TriggerVersions = (Vec<(i64, DateTime<Utc>)>, Vec<(i64, DateTime<Utc>)>);

/// What runs inside one write transaction: object primitives, and the outbox's.
#[async_trait]
pub trait WriteTx: ObjectTx + exec::Tx {
    /// The enabled webhooks' versions and every event rule's, as this transaction sees them,
    /// in one read: what tells the outbox whether its matcher is current.
    async fn trigger_versions(&mut self) -> Result<TriggerVersions>;
    /// The enabled webhooks, as this transaction sees them.
    async fn enabled_webhooks(&mut self) -> Result<Vec<Webhook>>;
    /// The enabled event rules, as this transaction sees them.
    async fn enabled_event_rules(&mut self) -> Result<Vec<EventRule>>;
    /// Stores events, each with one delivery queued (due `now`) per firing listed with it, and
    /// one delivery per batch (`batches` name events by their place in `events`); returns the
    /// events' ids, in order.
    async fn queue_events(
        &mut self,
        events: &[(&Event, &[Firing])],
        batches: &[Batched],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>>;

    /// `queue_events` with no batches.
    async fn insert_events(&mut self, events: &[(&Event, &[Firing])], now: DateTime<Utc>) -> Result<Vec<i64>> {
        self.queue_events(events, &[], now).await
    }
}

/// A boxed future borrowing the transaction.
pub type TxFuture<'t> = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send + 't>>;

/// Work to run in one write transaction. A backend may run it again in a new transaction
/// when the database gave up on the first for reasons of its own (a deadlock broken, a lost
/// connection before anything was committed), so it must not keep state between runs.
pub type WriteJob = Box<dyn for<'t> Fn(&'t mut dyn WriteTx) -> TxFuture<'t> + Send + Sync>;

/// The whole contract.
#[async_trait]
pub trait Store:
    UserStore
    + SessionStore
    + AccessStore
    + WebhookStore
    + EventRuleStore
    + ObjectStore
    + QueueStore
    + ClaimStore
    + WorkerStore
    + 'static
{
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// The schema version the database is at, and the one this build expects (readiness).
    async fn schema_version(&self) -> Result<(i64, i64)>;
    /// A pool's connections: its size, idle ones and callers waiting for one (PostgreSQL).
    fn pool_status(&self) -> Option<(usize, usize, usize)> {
        None
    }
    /// Write transactions committed so far and the write jobs they held (SQLite, which
    /// commits the writes waiting together as one).
    fn write_groups(&self) -> Option<(u64, u64)> {
        None
    }
    /// Readies what objects of these types need before they are written (PostgreSQL: an id
    /// sequence per type, so creators of one type need not take turns). Types not readied
    /// still work, more slowly. Called at startup with the catalog's types.
    async fn prepare_object_types(&self, _types: &[&str]) -> Result<()> {
        Ok(())
    }
    /// Runs `job` in one write transaction: commits when it returns `Ok`, rolls everything
    /// back when it returns `Err`. Wakes workers when it queued deliveries.
    async fn write(&self, job: WriteJob) -> Result<(), WriteError>;
    /// Notified whenever a commit makes deliveries due now (a write that queued some, a
    /// requeue, a release), in this process; a backend shared by many processes also passes
    /// on other processes' commits.
    fn queue_signal(&self) -> Arc<Notify>;

    /// How this backend spells what databases spell differently (for statements built above
    /// it, such as the health checks').
    fn dialect(&self) -> &'static dyn sql::Dialect;

    /// Why the database this process opened can no longer be written, once noticed (its file
    /// deleted or replaced): what `/api/status/` and readiness report.
    fn lost(&self) -> Option<String> {
        None
    }
}

/// Runs `job` in one write transaction and returns what it produced.
pub async fn in_write_tx<T, F>(store: &dyn Store, job: F) -> Result<T, WriteError>
where
    T: Send + 'static,
    F: for<'t> Fn(&'t mut dyn WriteTx) -> Pin<Box<dyn Future<Output = Result<T, WriteError>> + Send + 't>>
        + Send
        + Sync
        + 'static,
{
    let slot: Arc<std::sync::Mutex<Option<T>>> = Arc::default();
    let out = slot.clone();
    let job = Arc::new(job);
    store
        .write(Box::new(move |tx| {
            let (job, out) = (job.clone(), out.clone());
            Box::pin(async move {
                let value = job(tx).await?;
                *crate::sync::lock(&out) = Some(value);
                Ok(())
            })
        }))
        .await?;
    let value = crate::sync::lock(&slot).take();
    value.ok_or_else(|| WriteError::Store(StoreError::Other(anyhow::anyhow!("a write job ended without a result"))))
}

/// Opens the store named by `url` (`sqlite://path`, `sqlite::memory:`,
/// `postgres://user@host/db`).
pub async fn open(url: &str, postgres: &PostgresConfig) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url, postgres).await?))
    } else {
        anyhow::bail!(
            "unsupported database URL {:?}: expected sqlite://PATH or postgres://USER@HOST/DB",
            redact_url(url)
        )
    }
}

/// Backs up the database at `url` into the file `dest`, while it may be in use: SQLite only
/// (a PostgreSQL database is backed up with `pg_dump`).
pub fn backup(url: &str, dest: &std::path::Path) -> anyhow::Result<sqlite::backup::Made> {
    anyhow::ensure!(
        url.starts_with("sqlite:"),
        "herald backup copies SQLite databases; back up PostgreSQL with pg_dump (README, \"Backups\")"
    );
    sqlite::backup::backup(url, dest)
}

/// A database URL with its password (if any) masked, fit for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:<redacted>@{host}{path}")
        }
        _ => url.to_string(),
    }
}
