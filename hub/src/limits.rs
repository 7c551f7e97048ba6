//! Rate limits: a token bucket per WebSocket connection, and the login-failure window per
//! (email, client address).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate_per_sec.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    ///
    /// # Errors
    /// The wait until the next token.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Counts failed logins per (email, address) in a sliding window.
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<(String, IpAddr), VecDeque<Instant>>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl LoginLimiter {
    /// `max_failures` within `window` locks the pair out until the oldest failure ages out.
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, IpAddr), VecDeque<Instant>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a login may be tried now.
    ///
    /// # Errors
    /// Seconds until the next attempt is allowed.
    pub fn check(&self, email: &str, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut map = self.lock();
        let Some(times) = map.get_mut(&(email.to_owned(), ip)) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.max_failures {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let wait = self
            .window
            .saturating_sub(now.saturating_duration_since(oldest));
        Err(wait.as_secs().max(1))
    }

    /// Records a failure.
    pub fn fail(&self, email: &str, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        if map.len() > SWEEP_ABOVE {
            let window = self.window;
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        map.entry((email.to_owned(), ip))
            .or_default()
            .push_back(now);
    }

    /// Forgets the failures of a pair that just logged in.
    pub fn succeed(&self, email: &str, ip: IpAddr) {
        self.lock().remove(&(email.to_owned(), ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        for _ in 0..20 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        // A long pause refills to the burst, no more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..20 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn five_failures_lock_the_pair_for_the_window() {
        let l = LoginLimiter::new(5, Duration::from_secs(900));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(l.check("a@x.io", ip, t0).is_ok(), "attempt {i}");
            l.fail("a@x.io", ip, t0);
        }
        let wait = l
            .check("a@x.io", ip, t0 + Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(wait, 840);
        assert!(l.check("a@x.io", other, t0).is_ok());
        assert!(l.check("b@x.io", ip, t0).is_ok());
        assert!(l.check("a@x.io", ip, t0 + Duration::from_secs(900)).is_ok());
        l.succeed("a@x.io", ip);
        assert!(l.check("a@x.io", ip, t0).is_ok());
    }
}
