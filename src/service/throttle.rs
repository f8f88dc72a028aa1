//! How often passwords may be tried: per user and per client address, in windows of a minute.
//! What is remembered is bounded: old windows are dropped when the tables grow.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept per table before expired windows are dropped.
const KEEP: usize = 10_000;

struct Window {
    start: Instant,
    count: u32,
}

/// Counts of attempts per key, per window.
struct Counts<K> {
    limit: u32,
    windows: Mutex<HashMap<K, Window>>,
}

impl<K: Hash + Eq> Counts<K> {
    fn new(limit: u32) -> Counts<K> {
        Counts {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt; `Err(seconds)` when the key is over its limit.
    fn hit(&self, key: K, now: Instant) -> Result<(), u64> {
        let mut windows = crate::sync::lock(&self.windows);
        if windows.len() >= KEEP {
            windows.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let w = windows.entry(key).or_insert(Window { start: now, count: 0 });
        if now.duration_since(w.start) >= WINDOW {
            *w = Window { start: now, count: 0 };
        }
        if w.count >= self.limit {
            let left = WINDOW.saturating_sub(now.duration_since(w.start));
            return Err(left.as_secs().max(1));
        }
        w.count += 1;
        Ok(())
    }
}

/// Password attempts, limited per user and per address.
pub struct Throttle {
    users: Counts<String>,
    addrs: Counts<IpAddr>,
}

impl Throttle {
    pub fn new(per_user: u32, per_address: u32) -> Throttle {
        Throttle {
            users: Counts::new(per_user),
            addrs: Counts::new(per_address),
        }
    }

    /// Counts an attempt for `username` from `addr`; `Err(seconds to wait)` past a limit.
    pub fn attempt(&self, username: &str, addr: Option<IpAddr>) -> Result<(), u64> {
        let now = Instant::now();
        if let Some(a) = addr {
            self.addrs.hit(a, now)?;
        }
        self.users.hit(username.to_lowercase(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_per_address() {
        let t = Throttle::new(2, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(t.attempt("alice", Some(a)).is_ok());
        assert!(t.attempt("Alice", Some(b)).is_ok());
        assert!(
            t.attempt("alice", Some(b)).is_err(),
            "two per user, any case, any address"
        );
        assert!(t.attempt("bob", Some(a)).is_ok());
        assert!(t.attempt("carol", Some(a)).is_ok());
        assert!(t.attempt("dave", Some(a)).is_err(), "three per address");
        let c = Counts::new(1);
        let start = Instant::now();
        assert!(c.hit("k", start).is_ok());
        assert!(c.hit("k", start + Duration::from_secs(30)).is_err());
        assert!(c.hit("k", start + WINDOW).is_ok(), "a new window");
    }
}
