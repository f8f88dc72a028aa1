//! The queue: deliveries (one event × one webhook) and their states, the attempt log, and the
//! rules every backend follows: which deliveries a claim takes and how long it holds them,
//! what an outcome leaves behind, which deliveries may be retried or deleted.
//!
//! A delivery is `queued → in_flight → succeeded | retrying | failed`; `retrying` goes back to
//! `in_flight` when it falls due. A claim is a lease: `next_attempt_at` of an in-flight
//! delivery is when its lease runs out, after which any worker may claim it again.

mod batch;
pub mod policy;
mod rate;

pub use batch::{gather_batches, Batched};
pub use rate::Gcra;

use crate::events::Event;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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
    /// Waiting to be sent: what "oldest waiting" looks at.
    pub const WAITING: [Status; 2] = [Status::Queued, Status::Retrying];
    /// What a claim may take once due (an in-flight one only when its lease ran out).
    pub const CLAIMABLE: [Status; 3] = [Status::Queued, Status::Retrying, Status::InFlight];
    /// What may be sent again by hand: anything not being sent right now.
    pub const RETRYABLE: [Status; 4] = [Status::Queued, Status::Retrying, Status::Succeeded, Status::Failed];
    /// What may be deleted by hand: succeeded ones stay in the log until retention purges them.
    pub const DELETABLE: [Status; 3] = [Status::Queued, Status::Retrying, Status::Failed];

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
    /// The webhook's name (as it was when deleted, when it is).
    pub webhook_name: String,
    /// Whether its webhook was deleted since (its deliveries stay in the log).
    pub webhook_deleted: bool,
    /// The id of the object it is about, when its event's data has one.
    pub object_id: Option<i64>,
    /// A batch's further events, in change order, after `event_id`; `None` when not batched.
    pub batch: Option<Vec<i64>>,
    /// The event rule that queued it, and its name while it exists; `None` when the webhook's
    /// own triggers did.
    pub event_rule: Option<(i64, Option<String>)>,
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
    /// `None`: the event's own body (`Event::default_body`), kept once, by the event. Reading
    /// a delivery fills it in (`Services::delivery`).
    pub request_body: Option<String>,
    pub response_status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// A delivery the worker has claimed, with its event: the lease is the worker's until it runs out.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub webhook_id: i64,
    /// Attempts so far, this one included.
    pub attempt: i64,
    /// Claims since the last recorded outcome, this one included.
    pub unrecorded: i64,
    pub event: Arc<Event>,
}

impl Claimed {
    /// Why the delivery should fail without being sent: it was claimed `max` times already
    /// with no outcome recorded (each time, the worker sending it stopped or crashed).
    pub fn abandoned(&self, max: i64) -> Option<String> {
        (self.unrecorded > max).then(|| {
            format!(
                "claimed {max} times without an outcome: the worker sending it stopped or crashed each time; not sent again"
            )
        })
    }
}

/// A claimed row as a backend returns it, before its event is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRow {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub attempts: i64,
    pub event_id: i64,
    /// Claims since the last recorded outcome, this one included.
    pub unrecorded: i64,
    /// A batch's further events, in change order.
    pub batch: Option<Vec<i64>>,
}

impl ClaimedRow {
    /// The events it sends: its own, then its batch's.
    pub fn event_ids(&self) -> impl Iterator<Item = i64> + '_ {
        std::iter::once(self.event_id).chain(self.batch.iter().flatten().copied())
    }
}

/// The events of claimed `rows`, each once, sorted.
pub fn claimed_event_ids(rows: &[ClaimedRow]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().flat_map(ClaimedRow::event_ids).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
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
    pub per_webhook: HashMap<i64, usize>,
    /// Webhooks whose deliveries of one object go one at a time, in commit order.
    pub ordered: std::collections::HashSet<i64>,
}

impl ClaimLimits {
    /// Up to `total`, from any of `webhooks`.
    pub fn total(total: usize, webhooks: Vec<i64>) -> ClaimLimits {
        ClaimLimits {
            total,
            webhooks,
            webhook_default: total,
            per_webhook: HashMap::new(),
            ordered: Default::default(),
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

/// One webhook's part of a claim.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClaimArm {
    pub webhook_id: i64,
    /// Deliveries of this webhook to take at most.
    pub limit: usize,
    /// When the lease on what is taken runs out.
    pub lease_until: DateTime<Utc>,
    /// A delivery is taken only while no earlier one of its object is still to go.
    pub ordered: bool,
}

/// A claim as a backend runs it: due deliveries (queued, retrying, or in flight with an expired
/// lease), oldest due first, at most `limit` per arm and `total` in all; each taken delivery
/// becomes in flight with one more attempt and its arm's lease.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimPlan {
    pub now: DateTime<Utc>,
    pub arms: Vec<ClaimArm>,
    pub total: usize,
}

impl ClaimPlan {
    /// The claim for `limits`: a lease lasts the webhook's timeout plus `lease_margin`, so a
    /// worker that dies mid-send loses its deliveries to another only after the send could
    /// have finished. Webhooks without a timeout (`timeout_of` gives `None`) are not claimed.
    pub fn new(
        limits: &ClaimLimits,
        now: DateTime<Utc>,
        lease_margin: Duration,
        timeout_of: impl Fn(i64) -> Option<Duration>,
    ) -> ClaimPlan {
        let arms = limits
            .webhooks
            .iter()
            .filter_map(|&webhook_id| {
                let limit = limits.of(webhook_id);
                let timeout = timeout_of(webhook_id)?;
                let lease = chrono::Duration::from_std(timeout + lease_margin).unwrap_or(chrono::Duration::MAX);
                (limit > 0).then(|| ClaimArm {
                    webhook_id,
                    limit,
                    lease_until: now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC),
                    ordered: limits.ordered.contains(&webhook_id),
                })
            })
            .collect();
        ClaimPlan {
            now,
            arms,
            total: limits.total,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.arms.is_empty() || self.total == 0
    }
}

/// The claimed deliveries with their events, one shared copy per event.
pub fn attach_events(rows: Vec<ClaimedRow>, events: Vec<Event>) -> Vec<Claimed> {
    let by_id: HashMap<i64, Arc<Event>> = events.into_iter().map(|e| (e.id, Arc::new(e))).collect();
    rows.into_iter()
        .filter_map(|r| {
            // An event cannot vanish under its delivery (deleting one deletes the other); skip
            // rather than fail the whole claim if a backend ever returns one without the other.
            let head = by_id.get(&r.event_id)?;
            let event = match &r.batch {
                None => head.clone(),
                Some(rest) => {
                    let rest: Vec<Event> = rest
                        .iter()
                        .filter_map(|id| by_id.get(id))
                        .map(|e| (**e).clone())
                        .collect();
                    Arc::new((**head).clone().batched(rest))
                }
            };
            Some(Claimed {
                delivery_id: r.delivery_id,
                webhook_id: r.webhook_id,
                attempt: r.attempts,
                unrecorded: r.unrecorded,
                event,
            })
        })
        .collect()
}

/// What becomes of a claimed delivery after an attempt (or after failing to make one). Backends
/// write it as it is, to deliveries still in flight only.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    /// Its delivery's webhook (0 when the caller did not say), whose health it tells.
    pub webhook_id: i64,
    /// `None` when nothing was sent (e.g. the template failed).
    pub attempt: Option<Attempt>,
    /// `Succeeded`, `Retrying` or `Failed`.
    pub status: Status,
    pub last_error: Option<String>,
    pub last_status_code: Option<u16>,
    /// When a retrying delivery falls due; for the others, when the outcome was recorded.
    pub next_attempt_at: DateTime<Utc>,
}

impl Outcome {
    /// The delivery succeeded: its error is cleared.
    pub fn succeeded(delivery_id: i64, attempt: Attempt, now: DateTime<Utc>) -> Outcome {
        Outcome {
            delivery_id,
            webhook_id: 0,
            last_status_code: attempt.response_status,
            attempt: Some(attempt),
            status: Status::Succeeded,
            last_error: None,
            next_attempt_at: now,
        }
    }

    /// The attempt failed; the delivery is tried again at `at`, or never (`None`).
    pub fn failed(delivery_id: i64, attempt: Attempt, retry_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Outcome {
        Outcome {
            delivery_id,
            webhook_id: 0,
            last_status_code: attempt.response_status,
            last_error: attempt.error.clone(),
            attempt: Some(attempt),
            status: if retry_at.is_some() {
                Status::Retrying
            } else {
                Status::Failed
            },
            next_attempt_at: retry_at.unwrap_or(now),
        }
    }

    /// Nothing could be sent (the webhook is gone, its template failed): failed at once.
    /// The same outcome, telling whose delivery it was.
    pub fn of_webhook(mut self, webhook_id: i64) -> Outcome {
        self.webhook_id = webhook_id;
        self
    }

    pub fn unsendable(delivery_id: i64, error: String, now: DateTime<Utc>) -> Outcome {
        Outcome {
            delivery_id,
            webhook_id: 0,
            attempt: None,
            status: Status::Failed,
            last_error: Some(error),
            last_status_code: None,
            next_attempt_at: now,
        }
    }
}

/// Filters of the deliveries list (and of bulk retry and delete). Empty lists do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryFilter {
    pub id: Vec<i64>,
    pub status: Vec<Status>,
    pub webhook_id: Vec<i64>,
    /// Queued by these event rules.
    pub event_rule_id: Vec<i64>,
    pub object_type: Vec<String>,
    /// About these objects (by id; with `object_type`, of that type).
    pub object_id: Vec<i64>,
    pub event: Vec<String>,
    /// Created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Of events recorded by these requests (the `X-Request-ID` of the change).
    pub request_id: Vec<String>,
}

impl DeliveryFilter {
    pub fn ids(ids: Vec<i64>) -> DeliveryFilter {
        DeliveryFilter {
            id: ids,
            ..DeliveryFilter::default()
        }
    }

    /// Whether it names anything at all (bulk deletes need it to).
    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
            && self.status.is_empty()
            && self.webhook_id.is_empty()
            && self.event_rule_id.is_empty()
            && self.object_type.is_empty()
            && self.object_id.is_empty()
            && self.event.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.request_id.is_empty()
    }

    /// The same filter, narrowed to deliveries in one of `allowed`; `None` when nothing it
    /// could match is allowed.
    pub fn restricted_to(&self, allowed: &[Status]) -> Option<DeliveryFilter> {
        let status: Vec<Status> = if self.status.is_empty() {
            allowed.to_vec()
        } else {
            self.status.iter().copied().filter(|s| allowed.contains(s)).collect()
        };
        if status.is_empty() {
            return None;
        }
        Some(DeliveryFilter { status, ..self.clone() })
    }
}

/// The queue at a glance.
#[derive(Debug, Clone)]
pub struct QueueStats {
    /// Deliveries per status, every status listed.
    pub counts: Vec<(Status, i64)>,
    /// When the oldest delivery still waiting (queued or retrying) was created.
    pub oldest_waiting: Option<DateTime<Utc>>,
    /// Failed attempts since the time asked about.
    pub failed_attempts: i64,
    /// Deliveries finished in each minute since the time asked about, oldest first.
    pub per_minute: Vec<MinuteCount>,
    /// The webhooks with the most failed attempts since then: (id, name, failed attempts).
    pub failing: Vec<(i64, String, i64)>,
}

/// Deliveries that finished in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCount {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    pub succeeded: i64,
    pub failed: i64,
}

/// Every minute from the one holding `since` to the one holding `now`, with the counts
/// `found` gives (minutes since the epoch; none found is zero).
pub fn per_minute(found: &[(i64, Status, i64)], since: DateTime<Utc>, now: DateTime<Utc>) -> Vec<MinuteCount> {
    let (first, last) = (since.timestamp().div_euclid(60), now.timestamp().div_euclid(60));
    (first..=last)
        .filter_map(|m| {
            let count = |s: Status| {
                found
                    .iter()
                    .filter(|(minute, status, _)| *minute == m && *status == s)
                    .map(|(_, _, n)| n)
                    .sum()
            };
            Some(MinuteCount {
                minute: DateTime::from_timestamp(m * 60, 0)?,
                succeeded: count(Status::Succeeded),
                failed: count(Status::Failed),
            })
        })
        .collect()
}

/// Every status with its count (0 for those a backend did not list).
pub fn all_counts(found: &[(Status, i64)]) -> Vec<(Status, i64)> {
    Status::ALL
        .iter()
        .map(|s| (*s, found.iter().filter(|(f, _)| f == s).map(|(_, n)| n).sum()))
        .collect()
}

/// What a request for events wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub event_id: i64,
    pub deliveries: usize,
    /// It was posted before (within the intake window): `event_id` is the first one's, and
    /// nothing was queued again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_take_free_slots_and_lease_by_timeout() {
        let now = Utc::now();
        let mut limits = ClaimLimits::total(10, vec![1, 2, 3, 4]);
        limits.webhook_default = 4;
        limits.per_webhook.insert(2, 0);
        limits.per_webhook.insert(3, 20);
        let plan = ClaimPlan::new(&limits, now, Duration::from_secs(30), |id| {
            (id != 4).then(|| Duration::from_secs(id as u64))
        });
        let arms: Vec<(i64, usize)> = plan.arms.iter().map(|a| (a.webhook_id, a.limit)).collect();
        assert_eq!(arms, vec![(1, 4), (3, 10)]);
        assert_eq!(plan.arms[0].lease_until, now + chrono::Duration::seconds(31));
        assert_eq!(plan.arms[1].lease_until, now + chrono::Duration::seconds(33));
    }

    #[test]
    fn manual_actions_narrow_filters() {
        let f = DeliveryFilter::ids(vec![1]);
        assert_eq!(f.restricted_to(&Status::DELETABLE).unwrap().status, Status::DELETABLE);
        let only_flying = DeliveryFilter {
            status: vec![Status::InFlight],
            ..DeliveryFilter::default()
        };
        assert!(only_flying.restricted_to(&Status::RETRYABLE).is_none());
        let mixed = DeliveryFilter {
            status: vec![Status::InFlight, Status::Failed],
            ..DeliveryFilter::default()
        };
        assert_eq!(
            mixed.restricted_to(&Status::RETRYABLE).unwrap().status,
            vec![Status::Failed]
        );
        assert_eq!(
            all_counts(&[(Status::Failed, 2)]),
            vec![
                (Status::Queued, 0),
                (Status::InFlight, 0),
                (Status::Retrying, 0),
                (Status::Succeeded, 0),
                (Status::Failed, 2)
            ]
        );
    }
}
