//! Storage: one contract, one implementation per database. The deliveries table is both the
//! queue and the delivery log.

pub mod sqlite;

use crate::events::Event;
use crate::objects::engine::{WriteError, WriteRequest, Written};
use crate::objects::query::ObjectQuery;
use crate::objects::{Change, ChangeFilter, Obj};
use crate::webhooks::Webhook;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// What can go wrong in storage, as callers need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the text names the constraint's columns.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A user account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_superuser: bool,
    pub created: DateTime<Utc>,
}

/// An API token (its key is only ever known when created).
#[derive(Debug, Clone)]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    pub write_enabled: bool,
    pub description: String,
    pub created: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    InFlight,
    Retrying,
    Succeeded,
    Failed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::InFlight,
        Status::Retrying,
        Status::Succeeded,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InFlight => "in_flight",
            Status::Retrying => "retrying",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Queued => "Queued",
            Status::InFlight => "In flight",
            Status::Retrying => "Retrying",
            Status::Succeeded => "Succeeded",
            Status::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One event × one webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub event_id: i64,
    pub webhook_id: i64,
    pub webhook_name: String,
    pub event_kind: String,
    pub object_type: String,
    pub status: Status,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub last_error: Option<String>,
    pub last_status_code: Option<i64>,
}

/// One HTTP exchange of a delivery.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: i64,
    pub started: DateTime<Utc>,
    pub duration_ms: f64,
    pub request_method: String,
    pub request_url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    pub response_status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// A delivery the worker has claimed: the lease is its until `lease_until`.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub webhook_id: i64,
    /// Attempts so far, this one included.
    pub attempt: i64,
    pub event: Arc<Event>,
}

/// Which deliveries one claim may take: of the listed webhooks only, `total` at most, and
/// no more of one webhook than its limit.
#[derive(Debug, Clone, Default)]
pub struct ClaimLimits {
    /// In all.
    pub total: usize,
    /// The webhooks to claim for.
    pub webhooks: Vec<i64>,
    /// Of one webhook, unless `per_webhook` says otherwise.
    pub webhook_default: usize,
    /// Of these webhooks (0 skips one), e.g. when its destination has few free slots.
    pub per_webhook: std::collections::HashMap<i64, usize>,
}

impl ClaimLimits {
    /// Up to `total`, from any of `webhooks`.
    pub fn total(total: usize, webhooks: Vec<i64>) -> ClaimLimits {
        ClaimLimits {
            total,
            webhooks,
            webhook_default: total,
            per_webhook: Default::default(),
        }
    }

    /// The most one claim may take of `webhook_id`.
    pub fn of(&self, webhook_id: i64) -> usize {
        self.per_webhook
            .get(&webhook_id)
            .copied()
            .unwrap_or(self.webhook_default)
            .min(self.total)
    }
}

/// What became of one claimed delivery.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    /// `None` when nothing was sent (e.g. the template failed).
    pub attempt: Option<Attempt>,
    pub error: Option<String>,
    pub status_code: Option<u16>,
    /// `Succeeded`, `Retrying` (with `next_attempt_at`) or `Failed`.
    pub status: Status,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Filters of the deliveries list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub id: Vec<i64>,
    pub status: Vec<Status>,
    pub webhook_id: Vec<i64>,
    pub object_type: Vec<String>,
    pub event: Vec<String>,
    /// Created at or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl DeliveryFilter {
    pub fn ids(ids: Vec<i64>) -> DeliveryFilter {
        DeliveryFilter {
            id: ids,
            ..DeliveryFilter::default()
        }
    }
}

/// The queue at a glance.
#[derive(Debug, Clone)]
pub struct QueueStats {
    /// Deliveries per status.
    pub counts: Vec<(Status, i64)>,
    /// When the oldest delivery still waiting (queued or retrying) was created.
    pub oldest_waiting: Option<DateTime<Utc>>,
    /// Failed attempts since the time asked about.
    pub failed_attempts: i64,
}

/// What a request for events wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub event_id: i64,
    pub deliveries: usize,
}

/// The storage contract; every backend passes the same tests.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;

    async fn user_count(&self) -> Result<i64>;
    async fn create_user(&self, username: &str, password_hash: &str, superuser: bool) -> Result<User>;
    async fn user_by_name(&self, username: &str) -> Result<User>;
    async fn create_token(&self, user_id: i64, key_hash: &str, write_enabled: bool, description: &str)
        -> Result<Token>;
    /// The token with this key hash and its user.
    async fn token_by_hash(&self, key_hash: &str) -> Result<(Token, User)>;
    async fn user(&self, id: i64) -> Result<User>;
    async fn users(&self) -> Result<Vec<User>>;
    /// Saves username, password hash and superuser flag.
    async fn update_user(&self, user: &User) -> Result<()>;
    /// Deletes a user and their tokens.
    async fn delete_user(&self, id: i64) -> Result<()>;
    async fn token(&self, id: i64) -> Result<(Token, User)>;
    /// Tokens with their users, of one user or of all.
    async fn tokens(&self, user_id: Option<i64>) -> Result<Vec<(Token, User)>>;
    async fn delete_token(&self, id: i64) -> Result<()>;

    async fn webhooks(&self) -> Result<Vec<Webhook>>;
    /// Every webhook's id and `last_updated`: enough to tell whether a cached copy is current.
    async fn webhook_versions(&self) -> Result<Vec<(i64, DateTime<Utc>)>>;
    async fn webhooks_by_id(&self, ids: &[i64]) -> Result<Vec<Webhook>>;
    /// Inserts all or none; returns them with ids.
    async fn create_webhooks(&self, webhooks: Vec<Webhook>) -> Result<Vec<Webhook>>;
    /// Replaces all or none (`NotFound` if one is gone).
    async fn update_webhooks(&self, webhooks: Vec<Webhook>) -> Result<Vec<Webhook>>;
    /// Deletes all or none, with their deliveries.
    async fn delete_webhooks(&self, ids: &[i64]) -> Result<()>;

    /// In one transaction: the events, and one delivery for each enabled webhook each matches.
    async fn record_events(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<Vec<Recorded>>;

    /// Applies one API request's object writes in one transaction: objects, their changes,
    /// one event per object touched and the deliveries of matching webhooks; nothing on error.
    /// Returns what was written and how many deliveries were queued.
    async fn write_objects(
        &self,
        catalog: Arc<crate::catalog::Catalog>,
        req: WriteRequest,
    ) -> std::result::Result<(Written, usize), WriteError>;
    /// One page of the objects of `ty` matching `query`, and how many match in all.
    async fn list_objects(&self, ty: &str, query: &ObjectQuery, limit: i64, offset: i64) -> Result<(i64, Vec<Obj>)>;
    /// The objects of `ty` with these ids that exist.
    async fn get_objects(&self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>>;
    /// One page of object changes, newest first, and how many match.
    async fn object_changes(&self, filter: &ChangeFilter, limit: i64, offset: i64) -> Result<(i64, Vec<Change>)>;

    /// Claims due deliveries (queued, retrying, or in flight with an expired lease), the
    /// oldest first, within `limits`. The lease lasts the webhook's timeout plus
    /// `lease_margin_secs`.
    async fn claim(&self, now: DateTime<Utc>, limits: &ClaimLimits, lease_margin_secs: u64) -> Result<Vec<Claimed>>;
    /// Records outcomes of claimed deliveries in one transaction.
    async fn complete(&self, outcomes: Vec<Outcome>, now: DateTime<Utc>) -> Result<()>;
    /// Puts claimed deliveries back in the queue, due now (a worker shutting down).
    async fn release(&self, delivery_ids: &[i64], now: DateTime<Utc>) -> Result<()>;
    /// When the next delivery falls due, if any is waiting.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>>;

    async fn deliveries(&self, filter: &DeliveryFilter, limit: i64, offset: i64) -> Result<(i64, Vec<Delivery>)>;
    async fn delivery(&self, id: i64) -> Result<Delivery>;
    async fn attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>>;
    async fn event(&self, id: i64) -> Result<Event>;
    /// Deliveries per status.
    async fn queue_counts(&self) -> Result<Vec<(Status, i64)>>;
    /// Records that worker `id` (on `host`, process `pid`) is alive now.
    async fn worker_heartbeat(&self, id: &str, host: &str, pid: u32, now: DateTime<Utc>) -> Result<()>;
    /// Forgets a worker that stopped.
    async fn worker_gone(&self, id: &str) -> Result<()>;
    /// Workers whose last heartbeat is at or after `since`.
    async fn workers_seen_since(&self, since: DateTime<Utc>) -> Result<i64>;
    /// Counts, the oldest waiting delivery, and failed attempts since `since`.
    async fn queue_stats(&self, since: DateTime<Utc>) -> Result<QueueStats>;
    /// Makes the matching deliveries that are not in flight due now; returns how many.
    async fn requeue(&self, filter: &DeliveryFilter, now: DateTime<Utc>) -> Result<u64>;
    /// Deletes the matching queued, retrying or failed deliveries; returns how many.
    async fn delete_deliveries(&self, filter: &DeliveryFilter) -> Result<u64>;
    /// Deletes up to `limit` succeeded deliveries last changed before `succeeded_before` and
    /// failed ones before `failed_before` (with their attempts), and events older than
    /// `succeeded_before` left without deliveries. Returns how many rows went.
    async fn purge(&self, succeeded_before: DateTime<Utc>, failed_before: DateTime<Utc>, limit: i64) -> Result<u64>;
    /// Deletes up to `limit` object changes older than `before`; returns how many.
    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64>;
}

/// Opens the store named by `url` (`sqlite://path`, `sqlite::memory:`).
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        anyhow::bail!("PostgreSQL support is not built yet: use a sqlite:// URL")
    } else {
        anyhow::bail!("unsupported database URL {url:?}: expected sqlite://PATH")
    }
}
