//! What a voter sends and when it may: the next vote ([`next_vote`], drawn with a small
//! deterministic generator, [`Rng`]) and the local copy of the hub's per-connection frame limit
//! ([`Bucket`]) that keeps a voter from ever being refused as `rate_limited`. Plain values,
//! tested without a socket; `voter.rs` drives them.

use std::time::Instant;

use signaling::server::Limits;
use signaling::session::Vote;

use super::book::Choice;

/// Percent of votes that repeat the voter's current vote (acked with `"offset": null`, nothing
/// journaled): enough to exercise that path, few enough that the storm is of real changes.
pub const REPEAT_PERCENT: usize = 10;
/// Share of the hub's announced rate the local bucket refills at: the hub's clock and ours
/// differ by scheduling jitter, and a refused vote would be a figure of our making.
const RATE_MARGIN: f64 = 0.9;
/// The hub's limits when `hello` carried none (its defaults).
const DEFAULT_RATE: u32 = 10;
const DEFAULT_BURST: u32 = 20;

/// SplitMix64: tiny, fast and good enough to spread votes; seeded per voter so that two voters
/// never walk the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of voter `idx` in a run seeded with `seed`.
    pub fn new(seed: u64, idx: usize) -> Rng {
        Rng(seed ^ (idx as u64).wrapping_mul(0xA076_1D64_78BD_642F))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0). The modulo bias is below 2^-40 for the small
    /// `n` used here.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // A usize always fits a u64 here, and the remainder is below n.
        #[allow(clippy::cast_possible_truncation)]
        let r = (self.next_u64() % n as u64) as usize;
        r
    }
}

/// The next vote on a question this voter last voted `current` on: mostly a change (to one of
/// the two other values, so totals move by differences: up to down takes one from `up` and adds
/// one to `down`), sometimes the same again.
pub fn next_vote(rng: &mut Rng, current: Choice) -> Choice {
    if rng.below(100) < REPEAT_PERCENT {
        return current;
    }
    let others = match current {
        None => [Some(Vote::Up), Some(Vote::Down)],
        Some(Vote::Up) => [Some(Vote::Down), None],
        Some(Vote::Down) => [None, Some(Vote::Up)],
    };
    others[rng.below(2)]
}

/// A token bucket below the hub's own for this connection: it refills at [`RATE_MARGIN`] of the
/// hub's rate and holds half its burst, so whenever it has a token the hub's bucket (full at
/// connect, refilled faster, larger) has one too.
#[derive(Debug, Clone)]
pub struct Bucket {
    per_sec: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket for the limits of `hello` (the hub's defaults without them).
    pub fn new(limits: Option<Limits>, now: Instant) -> Bucket {
        let (rate, burst) = limits.map_or((DEFAULT_RATE, DEFAULT_BURST), |l| {
            (l.messages_per_second, l.burst)
        });
        let capacity = (f64::from(burst) / 2.0).floor().max(1.0);
        Bucket {
            per_sec: f64::from(rate) * RATE_MARGIN,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    /// The sustained rate this bucket allows, per second.
    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn votes_mostly_change_and_reach_every_value() {
        let mut rng = Rng::new(42, 7);
        for current in [None, Some(Vote::Up), Some(Vote::Down)] {
            let mut same = 0;
            let mut seen = std::collections::HashSet::new();
            for _ in 0..10_000 {
                let v = next_vote(&mut rng, current);
                same += usize::from(v == current);
                seen.insert(v);
            }
            assert_eq!(seen.len(), 3, "{current:?}: {seen:?}");
            // 10 % repeats, give or take.
            assert!((700..1300).contains(&same), "{current:?}: {same} repeats");
        }
    }

    #[test]
    fn voters_draw_different_sequences() {
        let mut a = Rng::new(1, 0);
        let mut b = Rng::new(1, 1);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
        assert_eq!(
            Rng::new(1, 0).next_u64(),
            xs[0],
            "the same seed walks the same way"
        );
        assert_eq!(a.below(0), 0);
        assert!((0..1000).all(|_| a.below(7) < 7));
    }

    #[test]
    fn the_bucket_stays_under_the_hubs_limit() {
        let t0 = Instant::now();
        let limits = Limits {
            max_frame_bytes: 65_536,
            messages_per_second: 10,
            burst: 20,
            signals_per_second: 0,
            signal_burst: 0,
        };
        let mut b = Bucket::new(Some(limits), t0);
        // Half the burst at once, then nothing.
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10);
        // Then 9 per second.
        let mut taken = 0;
        for ms in 1..=10_000u64 {
            taken += usize::from(b.take(t0 + Duration::from_millis(ms)));
        }
        assert!((89..=91).contains(&taken), "{taken} in 10 s");
        assert!((b.per_sec() - 9.0).abs() < 1e-9);
    }

    #[test]
    fn a_bucket_without_limits_uses_the_hubs_defaults_and_never_runs_backwards() {
        let t0 = Instant::now();
        let mut b = Bucket::new(None, t0 + Duration::from_secs(1));
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10);
        assert!(!b.take(t0), "an earlier instant adds nothing");
    }
}
