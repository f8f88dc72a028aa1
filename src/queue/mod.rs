//! Queue policy: when a failed delivery is tried again.

use std::time::Duration;

/// The delay before the retry that follows attempt number `attempt` (1-based), or `None` when
/// the schedule is exhausted. `jitter` is a spread fraction (0.2 = ±20%) and `unit` a number in
/// [0, 1) that picks the point in that spread; callers pass a random one.
pub fn next_delay(schedule: &[f64], attempt: i64, jitter: f64, unit: f64) -> Option<Duration> {
    let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
    let base = *schedule.get(index)?;
    let factor = 1.0 + jitter * (2.0 * unit - 1.0);
    Some(Duration::from_secs_f64((base * factor).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
