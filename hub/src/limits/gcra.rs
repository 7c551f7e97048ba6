//! Shared rate limits as GCRA (the generic cell rate algorithm): each key holds one instant, its
//! "theoretical arrival time" (TAT). A request is allowed when, after adding one emission
//! interval, the TAT is no further ahead of now than the burst allows. One value per key, one
//! read-modify-write per request: the same algorithm runs unchanged as a Lua script over one
//! Redis key, which is why the shared limits go through [`LimitStore`] and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::cluster::Cluster;

use dashmap::DashMap;

use super::Rate;

/// Where the shared limits keep their state. In memory on one node; the cluster moves it into
/// Redis, which is a new variant here and nothing else.
pub enum LimitStore {
    /// This process's memory.
    Memory(MemoryStore),
    /// The cluster's Redis, shared by every node; this process's memory while Redis does not
    /// answer (each node then limits alone, rather than refusing everyone or no one).
    Redis {
        /// The cluster whose Redis holds the limits.
        cluster: Arc<Cluster>,
        /// Used while Redis does not answer.
        fallback: MemoryStore,
    },
}

impl LimitStore {
    /// A store in this process's memory.
    pub fn memory() -> Self {
        LimitStore::Memory(MemoryStore::default())
    }

    /// A store in the cluster's Redis.
    pub fn redis(cluster: Arc<Cluster>) -> Self {
        LimitStore::Redis {
            cluster,
            fallback: MemoryStore::default(),
        }
    }

    /// Takes one unit of `key`'s allowance under `rate`, if one is available; returns how far
    /// ahead of now the allowance is spent (see [`Rate::remaining`]).
    ///
    /// # Errors
    /// How long until a unit is available again.
    pub async fn acquire(&self, key: &str, rate: Rate) -> Result<Duration, Duration> {
        match self {
            LimitStore::Memory(m) => m.acquire_at(key, rate, Instant::now()),
            LimitStore::Redis { cluster, fallback } => {
                match cluster
                    .limit_acquire(key, rate.interval(), rate.tolerance())
                    .await
                {
                    Ok(verdict) => verdict,
                    Err(e) => {
                        tracing::debug!(error = %e, "shared limits unreachable; this node limits alone");
                        fallback.acquire_at(key, rate, Instant::now())
                    }
                }
            }
        }
    }

    /// Gives back one unit taken from `key` (an attempt charged up front that did not fail).
    pub async fn refund(&self, key: &str, rate: Rate) {
        match self {
            LimitStore::Memory(m) => m.refund(key, rate),
            LimitStore::Redis { cluster, fallback } => {
                if cluster.limit_refund(key, rate.interval()).await.is_err() {
                    fallback.refund(key, rate);
                }
            }
        }
    }

    /// Forgets a key (a successful login clears its failures).
    pub async fn reset(&self, key: &str) {
        match self {
            LimitStore::Memory(m) => m.reset(key),
            LimitStore::Redis { cluster, fallback } => {
                fallback.reset(key);
                let _ = cluster.limit_reset(key).await;
            }
        }
    }

    /// Drops keys whose allowance is full again (they are the same as absent; Redis expires
    /// its own).
    pub fn sweep(&self) {
        match self {
            LimitStore::Memory(m) | LimitStore::Redis { fallback: m, .. } => {
                m.sweep_at(Instant::now());
            }
        }
    }

    /// How many keys are held in this process.
    pub fn len(&self) -> usize {
        match self {
            LimitStore::Memory(m) | LimitStore::Redis { fallback: m, .. } => m.tat.len(),
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
    pub fn acquire_at(&self, key: &str, rate: Rate, now: Instant) -> Result<Duration, Duration> {
        let mut tat = self.tat.entry(key.to_owned()).or_insert(now);
        let next = (*tat).max(now) + rate.interval();
        let ahead = next.saturating_duration_since(now);
        if ahead <= rate.tolerance() {
            *tat = next;
            Ok(ahead)
        } else {
            Err(ahead - rate.tolerance())
        }
    }

    fn refund(&self, key: &str, rate: Rate) {
        if let Some(mut tat) = self.tat.get_mut(key) {
            // Below now it means the same as a full allowance, which the sweep then forgets.
            *tat = tat.checked_sub(rate.interval()).unwrap_or(*tat);
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
            assert!(s.acquire_at("k", r, t0).is_ok(), "{i}");
        }
        let wait = s.acquire_at("k", r, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(
            s.acquire_at("k", r, t0 + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            s.acquire_at("k", r, t0 + Duration::from_millis(100))
                .is_err()
        );
        // Other keys are not affected.
        assert!(s.acquire_at("other", r, t0).is_ok());
    }

    #[test]
    fn what_is_left_counts_down_to_zero_then_comes_back() {
        let s = MemoryStore::default();
        let r = rate("10/s+3");
        let t0 = Instant::now();
        let left: Vec<u64> = (0..3)
            .map(|_| r.remaining(s.acquire_at("k", r, t0).unwrap()))
            .collect();
        assert_eq!(left, [2, 1, 0]);
        let later = s
            .acquire_at("k", r, t0 + Duration::from_millis(250))
            .unwrap();
        assert_eq!(r.remaining(later), 1, "two units came back, one taken");
    }

    #[test]
    fn a_refund_gives_back_exactly_one_unit() {
        let s = MemoryStore::default();
        let r = rate("1/h+2");
        let t0 = Instant::now();
        s.acquire_at("k", r, t0).unwrap();
        s.acquire_at("k", r, t0).unwrap();
        s.refund("k", r);
        s.acquire_at("k", r, t0).unwrap();
        assert!(s.acquire_at("k", r, t0).is_err());
    }

    #[test]
    fn an_hourly_quota_refills_one_unit_at_a_time() {
        let s = MemoryStore::default();
        let r = rate("20/h");
        let t0 = Instant::now();
        for _ in 0..20 {
            s.acquire_at("q", r, t0).unwrap();
        }
        assert_eq!(
            s.acquire_at("q", r, t0).unwrap_err(),
            Duration::from_secs(180)
        );
        assert!(s.acquire_at("q", r, t0 + Duration::from_secs(180)).is_ok());
    }

    #[test]
    fn sweeping_forgets_only_full_allowances() {
        let s = MemoryStore::default();
        let r = rate("1/s+1");
        let t0 = Instant::now();
        s.acquire_at("a", r, t0).unwrap();
        s.acquire_at("b", r, t0 + Duration::from_secs(5)).unwrap();
        s.sweep_at(t0 + Duration::from_secs(2));
        assert!(!s.tat.contains_key("a"));
        assert!(s.tat.contains_key("b"));
    }
}
