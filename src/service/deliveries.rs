//! The delivery log and the hand controls of the queue: what may be retried (anything not
//! being sent right now) and deleted (queued, retrying or failed; succeeded ones stay until
//! retention purges them), what a bulk retry touches when told nothing (the failed ones),
//! and the queue's figures.

use super::filters::{Given, Kind, Param, Spec};
use super::{require, Error, Result, Services};
use crate::auth::permissions::types;
use crate::auth::{Action, Actor};
use crate::events::Event;
use crate::maintenance::heartbeat;
use crate::page::Page;
use crate::queue::{all_counts, per_minute, Attempt, Delivery, DeliveryFilter, QueueStats, Status};
use crate::webhooks::headers;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;

/// Webhooks listed among those failing most.
const FAILING_SHOWN: i64 = 5;

/// One delivery with its attempts and its event.
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
    pub event: Event,
}

/// How one webhook has been doing lately.
#[derive(Debug, Clone, Default)]
pub struct WebhookHealth {
    /// Its newest delivery, if it has any.
    pub last: Option<Delivery>,
    /// Failed attempts since the time asked about.
    pub failed_attempts: i64,
}

/// The queue and the workers at a glance.
pub struct QueueSummary {
    /// Every status with its count.
    pub counts: Vec<(Status, i64)>,
    /// Workers whose heartbeat is recent, anywhere on the database.
    pub workers: i64,
}

impl Services {
    /// A page of deliveries, newest first; the count stops at `count_at_most` when given.
    pub async fn deliveries(
        &self,
        actor: &Actor,
        filter: &DeliveryFilter,
        limit: i64,
        offset: i64,
        count_at_most: Option<i64>,
    ) -> Result<Page<Delivery>> {
        require(actor, types::DELIVERY, Action::View)?;
        Ok(self.store.deliveries(filter, limit, offset, count_at_most).await?)
    }

    /// One delivery with its attempts and its event. The event's object data shows only to
    /// those who may view events; secrets in the attempts' headers (`Authorization`, cookies,
    /// tokens, ...) only to those who may change webhooks.
    pub async fn delivery(&self, actor: &Actor, id: i64) -> Result<DeliveryDetail> {
        require(actor, types::DELIVERY, Action::View)?;
        let delivery = self.store.delivery(id).await?;
        let mut attempts = self.store.attempts(id).await?;
        let mut event = self.store.event(delivery.event_id).await?;
        // An attempt that sent its event's own body keeps none: it is the event's.
        if attempts.iter().any(|a| a.request_body.is_none()) {
            let body = event.default_body();
            for a in attempts.iter_mut().filter(|a| a.request_body.is_none()) {
                a.request_body = Some(body.clone());
            }
        }
        if !actor.can(types::EVENT, Action::View) {
            event.data = serde_json::Value::Null;
            event.snapshots = serde_json::Value::Null;
            // A relayed event's body carries the same data.
            event.body = None;
        }
        if !actor.can(types::WEBHOOK, Action::Change) {
            for a in &mut attempts {
                headers::mask(&mut a.request_headers);
                headers::mask(&mut a.response_headers);
            }
        }
        Ok(DeliveryDetail {
            delivery,
            attempts,
            event,
        })
    }

    /// A recorded event, as its deliveries send it.
    pub async fn recorded_event(&self, actor: &Actor, id: i64) -> Result<Event> {
        require(actor, types::EVENT, Action::View)?;
        Ok(self.store.event(id).await?)
    }

    /// The newest delivery and the failed attempts since `since` of each webhook of `ids`.
    pub async fn webhook_health(
        &self,
        actor: &Actor,
        ids: &[i64],
        since: DateTime<Utc>,
    ) -> Result<HashMap<i64, WebhookHealth>> {
        require(actor, types::DELIVERY, Action::View)?;
        let mut health: HashMap<i64, WebhookHealth> = HashMap::new();
        if ids.is_empty() {
            return Ok(health);
        }
        for d in self.store.last_deliveries(ids).await? {
            let id = d.webhook_id;
            health.entry(id).or_default().last = Some(d);
        }
        for (id, _, n) in self.store.failing_webhooks(since, i64::MAX).await? {
            if ids.contains(&id) {
                health.entry(id).or_default().failed_attempts = n;
            }
        }
        Ok(health)
    }

    /// A delivery the hand controls may act on: not being sent right now (and, to delete,
    /// not succeeded).
    async fn changeable(&self, id: i64, allowed: &[Status]) -> Result<()> {
        let d = self.store.delivery(id).await?;
        if allowed.contains(&d.status) {
            return Ok(());
        }
        Err(Error::Conflict(match d.status {
            Status::InFlight => format!("Delivery {id} is being sent right now; try again when it is done."),
            _ => format!("Delivery {id} succeeded; succeeded deliveries stay in the log until retention purges them."),
        }))
    }

    /// Sends a delivery again now: one more attempt, same event, same webhook.
    pub async fn retry_delivery(&self, actor: &Actor, id: i64) -> Result<()> {
        require(actor, types::DELIVERY, Action::Change)?;
        self.changeable(id, &Status::RETRYABLE).await?;
        let filter = DeliveryFilter::ids(vec![id]).restricted_to(&Status::RETRYABLE);
        if let Some(f) = filter {
            self.store.requeue(&f, Utc::now()).await?;
        }
        Ok(())
    }

    /// Retries every matching delivery that is not in flight; a filter naming neither ids nor
    /// statuses means the failed ones. Returns how many.
    pub async fn retry_deliveries(&self, actor: &Actor, filter: &DeliveryFilter) -> Result<u64> {
        require(actor, types::DELIVERY, Action::Change)?;
        match retry_target(filter) {
            Some(f) => Ok(self.store.requeue(&f, Utc::now()).await?),
            None => Ok(0),
        }
    }

    /// How many deliveries `retry_deliveries` (`retry`) or `delete_deliveries` would touch
    /// with `filter` now, counted up to `at_most`.
    pub async fn bulk_count(&self, actor: &Actor, filter: &DeliveryFilter, retry: bool, at_most: i64) -> Result<i64> {
        let target = if retry {
            require(actor, types::DELIVERY, Action::Change)?;
            retry_target(filter)
        } else {
            require(actor, types::DELIVERY, Action::Delete)?;
            delete_target(filter)?
        };
        match target {
            Some(f) => Ok(self.store.deliveries(&f, 0, 0, Some(at_most)).await?.count),
            None => Ok(0),
        }
    }

    pub async fn delete_delivery(&self, actor: &Actor, id: i64) -> Result<()> {
        require(actor, types::DELIVERY, Action::Delete)?;
        self.changeable(id, &Status::DELETABLE).await?;
        if let Some(f) = DeliveryFilter::ids(vec![id]).restricted_to(&Status::DELETABLE) {
            self.store.delete_deliveries(&f).await?;
        }
        Ok(())
    }

    /// Deletes the matching queued, retrying or failed deliveries; the filter must name
    /// something. Returns how many.
    pub async fn delete_deliveries(&self, actor: &Actor, filter: &DeliveryFilter) -> Result<u64> {
        require(actor, types::DELIVERY, Action::Delete)?;
        match delete_target(filter)? {
            Some(f) => Ok(self.store.delete_deliveries(&f).await?),
            None => Ok(0),
        }
    }

    /// Counts per state (each stopping at `count_at_most` when given), the oldest waiting
    /// delivery, and failed attempts since `since`.
    pub async fn queue_stats(
        &self,
        actor: &Actor,
        since: DateTime<Utc>,
        count_at_most: Option<i64>,
    ) -> Result<QueueStats> {
        require(actor, types::DELIVERY, Action::View)?;
        let finished = self.store.finished_per_minute(since).await?;
        Ok(QueueStats {
            counts: self.counts(count_at_most).await?,
            oldest_waiting: self.store.oldest_created(&Status::WAITING).await?,
            failed_attempts: self.store.failed_attempts_since(since).await?,
            per_minute: per_minute(&finished, since, Utc::now()),
            failing: self.store.failing_webhooks(since, FAILING_SHOWN).await?,
        })
    }

    /// Deliveries per state, each count stopping at `at_most` when given.
    async fn counts(&self, at_most: Option<i64>) -> Result<Vec<(Status, i64)>> {
        let counted = match at_most {
            None => self.store.status_counts().await?,
            Some(n) => self.store.status_counts_at_most(n).await?,
        };
        Ok(all_counts(&counted))
    }

    /// `queue_summary` for those who may view deliveries, each count stopping at `at_most`.
    pub async fn queue_counts(&self, actor: &Actor, at_most: i64) -> Result<QueueSummary> {
        require(actor, types::DELIVERY, Action::View)?;
        self.summary(Some(at_most)).await
    }

    /// Deliveries per state and the workers alive anywhere on the database.
    pub async fn queue_summary(&self) -> Result<QueueSummary> {
        self.summary(None).await
    }

    /// Why the database can no longer be written, once Herald noticed (its file deleted or
    /// replaced under it).
    pub fn database_problem(&self) -> Option<String> {
        self.store.lost()
    }

    async fn summary(&self, at_most: Option<i64>) -> Result<QueueSummary> {
        let counts = self.counts(at_most).await?;
        let since = Utc::now() - heartbeat::stale_after();
        let workers = self.store.workers_seen_since(since).await?;
        Ok(QueueSummary { counts, workers })
    }
}

/// What the delivery list, its bulk retry and delete, the pages and the command line may filter
/// deliveries by.
pub static FILTERS: Spec = Spec {
    list: "deliveries",
    params: &[
        Param {
            name: "id",
            kind: Kind::Ints,
        },
        Param {
            name: "status",
            kind: Kind::Choice(&["queued", "in_flight", "retrying", "succeeded", "failed"]),
        },
        Param {
            name: "webhook_id",
            kind: Kind::Ints,
        },
        Param {
            name: "event_rule_id",
            kind: Kind::Ints,
        },
        Param {
            name: "object_type",
            kind: Kind::Texts,
        },
        Param {
            name: "object_id",
            kind: Kind::Ints,
        },
        Param {
            name: "event",
            kind: Kind::Texts,
        },
        Param {
            name: "request_id",
            kind: Kind::Texts,
        },
        Param {
            name: "since",
            kind: Kind::Time,
        },
        Param {
            name: "until",
            kind: Kind::Time,
        },
    ],
};

/// The delivery filter `given` names (and `also`, which the caller reads itself).
pub fn delivery_filter(given: &Given, also: &[&str]) -> Result<DeliveryFilter> {
    let r = FILTERS.read(given, also)?;
    Ok(DeliveryFilter {
        id: r.ints("id")?,
        status: statuses(&r.choices("status")?)?,
        webhook_id: r.ints("webhook_id")?,
        event_rule_id: r.ints("event_rule_id")?,
        object_type: r.texts("object_type"),
        object_id: r.ints("object_id")?,
        event: r.texts("event"),
        since: r.time("since")?,
        until: r.time("until")?,
        request_id: r.texts("request_id"),
    })
}

/// A bulk action's filter from its JSON body: a filter object, or a list of `{"id": n}`.
pub fn delivery_filter_of_body(body: &Value) -> Result<DeliveryFilter> {
    match body {
        Value::Null => Ok(DeliveryFilter::default()),
        Value::Array(items) => {
            let ids: Option<Vec<i64>> = items
                .iter()
                .map(|item| match item.as_object() {
                    Some(o) if o.len() == 1 => o.get("id").and_then(Value::as_i64),
                    _ => None,
                })
                .collect();
            ids.map(DeliveryFilter::ids)
                .ok_or_else(|| Error::field("id", "Expected a list of {\"id\": n}, nothing else."))
        }
        _ => delivery_filter(&Given::json(body)?, &[]),
    }
}

/// The states named by a `status` filter; an unknown one is an error naming the parameter.
pub fn statuses(values: &[String]) -> Result<Vec<Status>> {
    values
        .iter()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                Error::field(
                    "status",
                    format!("\"{s}\" is not a valid choice: use queued, in_flight, retrying, succeeded or failed."),
                )
            })
        })
        .collect()
}

/// What a bulk retry with `filter` touches: the matching deliveries not in flight, the failed
/// ones when it names neither ids nor statuses; `None` when nothing.
fn retry_target(filter: &DeliveryFilter) -> Option<DeliveryFilter> {
    let mut filter = filter.clone();
    if filter.status.is_empty() && filter.id.is_empty() {
        filter.status = vec![Status::Failed];
    }
    filter.restricted_to(&Status::RETRYABLE)
}

/// What a bulk delete with `filter` touches: the matching queued, retrying or failed ones. The
/// filter must name something.
fn delete_target(filter: &DeliveryFilter) -> Result<Option<DeliveryFilter>> {
    if filter.is_empty() {
        return Err(Error::field(
            "non_field_errors",
            "Give a filter (id, status, webhook_id, object_type, object_id, event, request_id, since or until).",
        ));
    }
    Ok(filter.restricted_to(&Status::DELETABLE))
}
