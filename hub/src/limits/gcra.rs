//! Shared rate limits as GCRA (the generic cell rate algorithm): each key holds one instant, its
//! "theoretical arrival time" (TAT). A request is allowed when, after adding one emission
//! interval, the TAT is no further ahead of now than the burst allows. One value per key, one
//! read-modify-write per request: the same algorithm runs unchanged as a Lua script over one
//! Redis key, which is why the shared limits go through [`LimitStore`] and nothing else.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::Rate;

/// What to do with a key's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Take one unit if one is available (an ordinary rate limit).
    Take,
    /// Only check that one unit is available, take nothing (checked before an attempt whose
    /// failure alone is charged, like a login).
    Peek,
}

/// Where the shared limits keep their state. In memory on one node; the cluster moves it into
/// Redis, which is a new variant here and nothing else.
pub enum LimitStore {
    /// This process's memory.
    Memory(MemoryStore),
}

impl LimitStore {
    /// A store in this process's memory.
    pub fn memory() -> Self {
        LimitStore::Memory(MemoryStore::default())
    }

    /// Applies `charge` to `key` under `rate`.
    ///
    /// # Errors
    /// How long until a unit is available again.
    pub async fn acquire(&self, key: &str, rate: Rate, charge: Charge) -> Result<(), Duration> {
        match self {
            LimitStore::Memory(m) => m.acquire_at(key, rate, charge, Instant::now()),
        }
    }

    /// Forgets a key (a successful login clears its failures).
    pub async fn reset(&self, key: &str) {
        match self {
            LimitStore::Memory(m) => m.reset(key),
        }
    }

    /// Drops keys whose allowance is full again (they are the same as absent).
    pub fn sweep(&self) {
        match self {
            LimitStore::Memory(m) => m.sweep_at(Instant::now()),
        }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        match self {
            LimitStore::Memory(m) => m.tat.len(),
        }
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// GCRA over a concurrent map of key -> TAT.
#[derive(Default)]
pub struct MemoryStore {
    tat: DashMap<String, Instant>,
}

impl MemoryStore {
    /// [`LimitStore::acquire`] at a given instant (for tests).
    ///
    /// # Errors
    /// How long until a unit is available again.
    pub fn acquire_at(
        &self,
        key: &str,
        rate: Rate,
        charge: Charge,
        now: Instant,
    ) -> Result<(), Duration> {
        let interval = rate.interval();
        let tolerance = rate.tolerance();
        let check = |tat: Instant| -> Result<Instant, Duration> {
            let next = tat.max(now) + interval;
            let ahead = next.saturating_duration_since(now);
            if ahead <= tolerance {
                Ok(next)
            } else {
                Err(ahead - tolerance)
            }
        };
        match charge {
            Charge::Peek => match self.tat.get(key) {
                Some(tat) => check(*tat).map(|_| ()),
                None => Ok(()),
            },
            Charge::Take => {
                let mut tat = self.tat.entry(key.to_owned()).or_insert(now);
                let next = check(*tat)?;
                *tat = next;
                Ok(())
            }
        }
    }

    fn reset(&self, key: &str) {
        self.tat.remove(key);
    }

    /// Drops every key whose TAT has passed.
    pub fn sweep_at(&self, now: Instant) {
        self.tat.retain(|_, tat| *tat > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        text.parse().expect("rate")
    }

    #[test]
    fn a_burst_is_allowed_then_the_sustained_rate() {
        let s = MemoryStore::default();
        let r = rate("10/s+5");
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(s.acquire_at("k", r, Charge::Take, t0).is_ok(), "{i}");
        }
        let wait = s.acquire_at("k", r, Charge::Take, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(
            s.acquire_at("k", r, Charge::Take, t0 + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            s.acquire_at("k", r, Charge::Take, t0 + Duration::from_millis(100))
                .is_err()
        );
        // Other keys are not affected.
        assert!(s.acquire_at("other", r, Charge::Take, t0).is_ok());
    }

    #[test]
    fn peeking_takes_nothing() {
        let s = MemoryStore::default();
        let r = rate("1/min+2");
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(s.acquire_at("k", r, Charge::Peek, t0).is_ok());
        }
        s.acquire_at("k", r, Charge::Take, t0).unwrap();
        s.acquire_at("k", r, Charge::Take, t0).unwrap();
        let wait = s.acquire_at("k", r, Charge::Peek, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
    }

    #[test]
    fn an_hourly_quota_refills_one_unit_at_a_time() {
        let s = MemoryStore::default();
        let r = rate("20/h");
        let t0 = Instant::now();
        for _ in 0..20 {
            s.acquire_at("q", r, Charge::Take, t0).unwrap();
        }
        assert_eq!(
            s.acquire_at("q", r, Charge::Take, t0).unwrap_err(),
            Duration::from_secs(180)
        );
        assert!(
            s.acquire_at("q", r, Charge::Take, t0 + Duration::from_secs(180))
                .is_ok()
        );
    }

    #[test]
    fn sweeping_forgets_only_full_allowances() {
        let s = MemoryStore::default();
        let r = rate("1/s+1");
        let t0 = Instant::now();
        s.acquire_at("a", r, Charge::Take, t0).unwrap();
        s.acquire_at("b", r, Charge::Take, t0 + Duration::from_secs(5))
            .unwrap();
        s.sweep_at(t0 + Duration::from_secs(2));
        assert!(!s.tat.contains_key("a"));
        assert!(s.tat.contains_key("b"));
    }
}
