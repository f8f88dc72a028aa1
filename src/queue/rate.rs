//! Rate limits: the token bucket every worker of a fleet shares through the database.

/// A rate limit as GCRA (the generic cell rate algorithm) keeps it: one theoretical arrival
/// time (TAT, microseconds) per webhook; a send at `t` may go when `t >= TAT - tolerance`, and
/// moves TAT on by one interval. The tolerance lets a burst of one second's worth go at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    interval: i64,
    tolerance: i64,
}

impl Gcra {
    /// For `rate` requests a second (a burst of `max(1, rate)` requests).
    pub fn new(rate: f64) -> Gcra {
        let interval = (1_000_000.0 / rate.max(1e-6)).round().max(1.0) as i64;
        let burst = rate.floor().max(1.0) as i64;
        Gcra {
            interval,
            tolerance: interval.saturating_mul(burst - 1),
        }
    }

    pub fn interval_us(&self) -> i64 {
        self.interval
    }

    /// Grants up to `want` sends at `now` from `tat`: how many, and the new TAT.
    pub fn take(&self, tat: i64, now: i64, want: i64) -> (i64, i64) {
        let start = tat.max(now);
        let room = now + self.tolerance - start;
        if room < 0 || want <= 0 {
            return (0, start);
        }
        let granted = (room / self.interval + 1).min(want);
        (granted, start + granted * self.interval)
    }

    /// When the next send may go, given `tat`.
    pub fn next_at(&self, tat: i64) -> i64 {
        tat - self.tolerance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_lets_a_seconds_burst_then_the_rate() {
        let g = Gcra::new(5.0);
        assert_eq!(g.interval_us(), 200_000);
        // A burst of 5 at once, then one each 200 ms.
        let (n, tat) = g.take(0, 1_000_000, 20);
        assert_eq!(n, 5);
        assert_eq!(g.take(tat, 1_000_000, 20).0, 0);
        assert_eq!(g.next_at(tat), 1_200_000);
        let (n, tat) = g.take(tat, 1_200_000, 20);
        assert_eq!(n, 1);
        assert_eq!(g.take(tat, 1_300_000, 20).0, 0);
        // Idle for a long time: still a burst of 5 at most.
        assert_eq!(g.take(tat, 100_000_000, 20).0, 5);
        // Below one a second: one at a time, every interval.
        let slow = Gcra::new(0.5);
        let (n, tat) = slow.take(0, 0, 3);
        assert_eq!((n, tat), (1, 2_000_000));
        assert_eq!(slow.take(tat, 1_999_999, 3).0, 0);
        assert_eq!(slow.take(tat, 2_000_000, 3).0, 1);
    }
}
