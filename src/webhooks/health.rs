//! A webhook's health, from its delivery outcomes: since when its attempts have all failed and
//! how many in a row; and what that calls for (tell the operator it is failing, disable it,
//! tell that it recovered).

use crate::queue::{Outcome, Status};
use chrono::{DateTime, Utc};

/// What one batch of outcomes says of one webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthNote {
    pub webhook_id: i64,
    /// An attempt succeeded: the failures counted are those after the last success.
    pub succeeded: bool,
    /// Failed outcomes (after the last success, when there was one).
    pub failures: i64,
    /// When the first of those failed.
    pub first_failure: Option<DateTime<Utc>>,
}

/// The notes of a batch of outcomes, in the order they came, one per webhook.
pub fn notes(outcomes: &[Outcome]) -> Vec<HealthNote> {
    let mut notes: Vec<HealthNote> = Vec::new();
    for o in outcomes.iter().filter(|o| o.webhook_id != 0) {
        let at = o.attempt.as_ref().map_or(o.next_attempt_at, |a| a.started);
        let note = match notes.iter_mut().find(|n| n.webhook_id == o.webhook_id) {
            Some(n) => n,
            None => {
                notes.push(HealthNote {
                    webhook_id: o.webhook_id,
                    succeeded: false,
                    failures: 0,
                    first_failure: None,
                });
                notes.last_mut().expect("just pushed")
            }
        };
        if o.status == Status::Succeeded {
            note.succeeded = true;
            note.failures = 0;
            note.first_failure = None;
        } else {
            note.failures += 1;
            note.first_failure.get_or_insert(at);
        }
    }
    notes
}

/// A webhook whose health may call for something, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Trouble {
    pub webhook_id: i64,
    pub name: String,
    pub enabled: bool,
    pub consecutive_failures: i64,
    pub failing_since: Option<DateTime<Utc>>,
    /// The operator was told it is failing (and not yet that it recovered).
    pub failing_noticed: bool,
    /// Its latest delivery's error.
    pub last_error: Option<String>,
    /// When its settings last changed: enabling it again (or changing it) restarts the time it
    /// may fail before it is disabled.
    pub changed_at: DateTime<Utc>,
}

/// What a webhook's health calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Failing `failing_after` attempts in a row: tell the operator.
    NoticeFailing,
    /// All failing for longer than allowed: disable it, and tell.
    Disable,
    /// Succeeding again after the operator was told it failed: tell.
    NoticeRecovered,
}

/// The thresholds health is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Failed attempts in a row that make a webhook failing.
    pub failing_after: i64,
    /// How long a webhook may fail without a success before it is disabled.
    pub disable_after: chrono::Duration,
}

/// What `t` calls for at `now`, in the order to act.
pub fn actions(t: &Trouble, limits: Thresholds, now: DateTime<Utc>) -> Vec<Action> {
    let mut out = Vec::new();
    match t.failing_since {
        Some(since) => {
            if !t.failing_noticed && t.consecutive_failures >= limits.failing_after {
                out.push(Action::NoticeFailing);
            }
            if t.enabled && now - since.max(t.changed_at) >= limits.disable_after {
                out.push(Action::Disable);
            }
        }
        None if t.failing_noticed => out.push(Action::NoticeRecovered),
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Attempt;

    fn outcome(webhook_id: i64, ok: bool, secs: i64) -> Outcome {
        let at = DateTime::from_timestamp(secs, 0).unwrap();
        let attempt = Attempt {
            delivery_id: 1,
            started: at,
            duration_ms: 1.0,
            request_method: "POST".into(),
            request_url: "http://h/".into(),
            request_headers: vec![],
            request_body: None,
            response_status: Some(if ok { 200 } else { 500 }),
            response_headers: vec![],
            response_body: None,
            error: (!ok).then(|| "HTTP 500".to_string()),
        };
        if ok {
            Outcome::succeeded(1, attempt, at).of_webhook(webhook_id)
        } else {
            Outcome::failed(1, attempt, None, at).of_webhook(webhook_id)
        }
    }

    #[test]
    fn notes_count_the_failures_after_the_last_success() {
        let got = notes(&[
            outcome(1, false, 1),
            outcome(2, false, 2),
            outcome(1, true, 3),
            outcome(1, false, 4),
            outcome(1, false, 5),
        ]);
        assert_eq!(got[0].webhook_id, 1);
        assert!(got[0].succeeded);
        assert_eq!(
            (got[0].failures, got[0].first_failure.map(|t| t.timestamp())),
            (2, Some(4))
        );
        assert_eq!((got[1].succeeded, got[1].failures), (false, 1));
    }

    #[test]
    fn failing_then_disabled_then_recovered() {
        let limits = Thresholds {
            failing_after: 3,
            disable_after: chrono::Duration::seconds(60),
        };
        let now = DateTime::from_timestamp(1000, 0).unwrap();
        let mut t = Trouble {
            webhook_id: 1,
            name: "w".into(),
            enabled: true,
            consecutive_failures: 2,
            failing_since: Some(now - chrono::Duration::seconds(10)),
            failing_noticed: false,
            last_error: None,
            changed_at: now - chrono::Duration::seconds(3600),
        };
        assert!(actions(&t, limits, now).is_empty());
        t.consecutive_failures = 3;
        assert_eq!(actions(&t, limits, now), [Action::NoticeFailing]);
        t.failing_noticed = true;
        t.failing_since = Some(now - chrono::Duration::seconds(60));
        assert_eq!(actions(&t, limits, now), [Action::Disable]);
        // Enabled again just now: the time it may fail starts over.
        t.changed_at = now - chrono::Duration::seconds(5);
        assert!(actions(&t, limits, now).is_empty());
        t.changed_at = now - chrono::Duration::seconds(3600);
        t.enabled = false;
        assert!(actions(&t, limits, now).is_empty());
        (t.failing_since, t.consecutive_failures) = (None, 0);
        assert_eq!(actions(&t, limits, now), [Action::NoticeRecovered]);
    }
}
