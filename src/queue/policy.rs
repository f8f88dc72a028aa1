//! Retry policy: what becomes of a delivery after an attempt. Pure functions, so the rules are
//! tested without a clock or randomness.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// The retry rules in force for one webhook.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Seconds before each retry; retry `k` follows attempt `k`.
    pub schedule: &'a [f64],
    /// Spread of each delay as a fraction (0.2 = ±20%).
    pub jitter: f64,
    /// Least delay after a 429, 502, 503, 504 or a timeout: the receiver is overloaded.
    pub throttle_min: Duration,
    /// Most a `Retry-After` can ask for.
    pub retry_after_max: Duration,
}

/// What an attempt showed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// The response status, if a response came.
    pub status: Option<u16>,
    pub timed_out: bool,
    /// The response's `Retry-After`, already parsed.
    pub retry_after: Option<Duration>,
}

/// The decision after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Succeeded,
    RetryAfter(Duration),
    Failed,
}

/// Decides after attempt number `attempt` (1-based). `unit` in [0, 1) picks the jitter.
pub fn decide(policy: &Policy<'_>, attempt: i64, seen: &Observed, unit: f64) -> Verdict {
    match seen.status {
        Some(s) if (200..300).contains(&s) => return Verdict::Succeeded,
        Some(410) => return Verdict::Failed,
        _ => {}
    }
    let Some(mut delay) = next_delay(policy.schedule, attempt, policy.jitter, unit) else {
        return Verdict::Failed;
    };
    if seen.timed_out || matches!(seen.status, Some(429 | 502 | 503 | 504)) {
        delay = delay.max(policy.throttle_min);
    }
    if let Some(asked) = seen.retry_after {
        delay = delay.max(asked.min(policy.retry_after_max));
    }
    Verdict::RetryAfter(delay)
}

/// The scheduled delay before the retry that follows attempt `attempt`, with jitter; `None`
/// when the schedule is exhausted.
pub fn next_delay(schedule: &[f64], attempt: i64, jitter: f64, unit: f64) -> Option<Duration> {
    let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
    let base = *schedule.get(index)?;
    let factor = 1.0 + jitter * (2.0 * unit - 1.0);
    Some(Duration::from_secs_f64((base * factor).max(0.0)))
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [f64; 2] = [5.0, 300.0];

    fn policy() -> Policy<'static> {
        Policy {
            schedule: &SCHEDULE,
            jitter: 0.0,
            throttle_min: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(3600),
        }
    }

    fn status(s: u16) -> Observed {
        Observed {
            status: Some(s),
            ..Observed::default()
        }
    }

    #[test]
    fn follows_the_schedule_then_stops() {
        let s = [5.0, 300.0];
        assert_eq!(next_delay(&s, 1, 0.0, 0.3), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(&s, 2, 0.0, 0.9), Some(Duration::from_secs(300)));
        assert_eq!(next_delay(&s, 3, 0.0, 0.5), None);
        assert_eq!(next_delay(&[], 1, 0.2, 0.5), None);
        assert_eq!(next_delay(&s, 0, 0.2, 0.5), None);
    }

    #[test]
    fn jitter_spreads_both_ways() {
        let s = [100.0];
        assert_eq!(next_delay(&s, 1, 0.2, 0.0), Some(Duration::from_secs(80)));
        assert_eq!(next_delay(&s, 1, 0.2, 0.5), Some(Duration::from_secs(100)));
        let high = next_delay(&s, 1, 0.2, 0.999_999).unwrap().as_secs_f64();
        assert!((119.9..120.0).contains(&high), "{high}");
    }

    #[test]
    fn verdicts() {
        let p = policy();
        assert_eq!(decide(&p, 1, &status(204), 0.5), Verdict::Succeeded);
        assert_eq!(
            decide(&p, 1, &status(500), 0.5),
            Verdict::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(decide(&p, 3, &status(500), 0.5), Verdict::Failed);
        assert_eq!(decide(&p, 1, &status(410), 0.5), Verdict::Failed);
        assert_eq!(
            decide(&p, 1, &Observed::default(), 0.5),
            Verdict::RetryAfter(Duration::from_secs(5))
        );
        for s in [429, 502, 503, 504] {
            assert_eq!(
                decide(&p, 1, &status(s), 0.5),
                Verdict::RetryAfter(Duration::from_secs(60)),
                "{s}"
            );
        }
        let timeout = Observed {
            timed_out: true,
            ..Observed::default()
        };
        assert_eq!(
            decide(&p, 1, &timeout, 0.5),
            Verdict::RetryAfter(Duration::from_secs(60))
        );
        // The schedule wins when it asks for longer.
        assert_eq!(
            decide(&p, 2, &status(503), 0.5),
            Verdict::RetryAfter(Duration::from_secs(300))
        );
    }

    #[test]
    fn retry_after_is_honoured_but_clamped() {
        let p = policy();
        let asked = |secs| Observed {
            status: Some(429),
            retry_after: Some(Duration::from_secs(secs)),
            ..Observed::default()
        };
        assert_eq!(
            decide(&p, 1, &asked(120), 0.5),
            Verdict::RetryAfter(Duration::from_secs(120))
        );
        assert_eq!(
            decide(&p, 1, &asked(1), 0.5),
            Verdict::RetryAfter(Duration::from_secs(60))
        );
        assert_eq!(
            decide(&p, 1, &asked(86_400), 0.5),
            Verdict::RetryAfter(Duration::from_secs(3600))
        );
        // Retry-After does not revive an exhausted schedule.
        assert_eq!(decide(&p, 3, &asked(10), 0.5), Verdict::Failed);
    }

    #[test]
    fn parses_retry_after() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
