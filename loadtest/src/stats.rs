//! What the run measures. [`Counters`] are shared by every connection task and read live by the
//! progress line; latency samples are kept per connection (no sharing on the hot path) and
//! merged into a [`LatencySummary`] at the end.
//!
//! Samples are kept in two sets, [`Samples`]: events sent while a connection storm was under
//! way ([`StormWindow`]) and the others, so that the report can show the members' latency
//! during the storm on its own row.
//!
//! Percentiles use the nearest-rank method over every sample: with 4-byte samples in
//! microseconds, even ten million deliveries take 40 MB, so no histogram approximation is needed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Serialize;
use signaling::server::Limits;

/// Counters every connection task adds to.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections whose opening was started.
    pub attempted: AtomicU64,
    /// Connections that completed the handshake, `hello` and `join_workspace`.
    pub established: AtomicU64,
    /// Connections established and not yet lost (our own closing at the end does not count).
    pub held: AtomicU64,
    /// Commands written during the load phase.
    pub sent: AtomicU64,
    /// `ack` frames received during the load phase.
    pub acks: AtomicU64,
    /// `error` frames received during the load phase.
    pub error_frames: AtomicU64,
    /// Measured events received (`broadcast` `lt` or `task_updated` with an `lt` title).
    pub delivered: AtomicU64,
    /// Ticks on which a `task_update` connection still waited for its previous ack.
    pub skipped_ticks: AtomicU64,
    /// Text frames that could not be read as a hub frame.
    pub unparsed: AtomicU64,
    /// Connections the hub closed (close frame) before we did.
    pub closed_by_hub: AtomicU64,
    /// Connections lost without a close frame (reset, EOF, protocol error, write failure).
    pub dropped: AtomicU64,
    /// Connections that could not be opened.
    pub open_failures: AtomicU64,
    tallies: Mutex<Tallies>,
    limits: OnceLock<Limits>,
}

/// Occurrence counts keyed by a short label.
#[derive(Debug, Default, Clone)]
pub struct Tallies {
    /// `error` frames by code.
    pub error_codes: BTreeMap<String, u64>,
    /// Hub-initiated close frames by close code (4008 = slow consumer).
    pub close_codes: BTreeMap<u16, u64>,
    /// Why connections could not be opened.
    pub open_failures: BTreeMap<String, u64>,
    /// Why established connections were lost without a close frame.
    pub drops: BTreeMap<String, u64>,
}

/// Increments a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    fn tallies(&self) -> std::sync::MutexGuard<'_, Tallies> {
        // A panic elsewhere must not hide the numbers gathered so far.
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an `error` frame.
    pub fn error_frame(&self, code: &str) {
        bump(&self.error_frames);
        *self
            .tallies()
            .error_codes
            .entry(code.to_owned())
            .or_default() += 1;
    }

    /// Counts a held connection the hub closed (close frame).
    pub fn closed_by_hub(&self, code: u16) {
        self.held.fetch_sub(1, Ordering::Relaxed);
        bump(&self.closed_by_hub);
        *self.tallies().close_codes.entry(code).or_default() += 1;
    }

    /// Counts a connection that could not be opened.
    pub fn open_failed(&self, reason: String) {
        bump(&self.open_failures);
        *self.tallies().open_failures.entry(reason).or_default() += 1;
    }

    /// Counts a held connection lost without a close frame.
    pub fn dropped(&self, reason: String) {
        self.held.fetch_sub(1, Ordering::Relaxed);
        bump(&self.dropped);
        *self.tallies().drops.entry(reason).or_default() += 1;
    }

    /// Every error the progress line shows: error frames, failed opens, closes and drops.
    pub fn errors(&self) -> u64 {
        read(&self.error_frames)
            + read(&self.open_failures)
            + read(&self.closed_by_hub)
            + read(&self.dropped)
    }

    /// Remembers the limits the hub announced in the first `hello`; true the first time.
    pub fn record_limits(&self, limits: Limits) -> bool {
        self.limits.set(limits).is_ok()
    }

    /// The limits of the first `hello`, if any connection got that far.
    pub fn limits(&self) -> Option<Limits> {
        self.limits.get().copied()
    }

    /// A copy of the labelled tallies.
    pub fn tallies_snapshot(&self) -> Tallies {
        self.tallies().clone()
    }
}

/// When the connection storm ran, in microseconds since the run's epoch (the clock of the
/// events' send times). Before it begins nothing is inside; until it ends it is open-ended.
#[derive(Debug)]
pub struct StormWindow {
    start: AtomicU64,
    end: AtomicU64,
}

impl Default for StormWindow {
    fn default() -> Self {
        StormWindow {
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
        }
    }
}

impl StormWindow {
    /// The storm's first connection is due now.
    pub fn begin(&self, at_micros: u64) {
        self.start.store(at_micros, Ordering::Relaxed);
    }

    /// The storm's last connection was accepted or failed now (or the run was interrupted);
    /// only the first call counts.
    pub fn finish(&self, at_micros: u64) {
        let _ =
            self.end
                .compare_exchange(u64::MAX, at_micros, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether an event sent at `t_micros` was sent during the storm.
    pub fn contains(&self, t_micros: u64) -> bool {
        t_micros >= self.start.load(Ordering::Relaxed)
            && t_micros <= self.end.load(Ordering::Relaxed)
    }
}

/// One connection's (or, merged, the run's) latency samples in microseconds, split by whether
/// the event was sent during the storm.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Samples {
    /// Events sent outside the storm (all of them when there is none).
    pub outside_storm: Vec<u32>,
    /// Events sent during the storm.
    pub during_storm: Vec<u32>,
}

impl Samples {
    /// Records an event sent at `sent_micros` and received `latency_micros` later.
    pub fn push(&mut self, window: &StormWindow, sent_micros: u64, latency_micros: u64) {
        let sample = sample_micros(latency_micros);
        if window.contains(sent_micros) {
            self.during_storm.push(sample);
        } else {
            self.outside_storm.push(sample);
        }
    }

    /// Adds another connection's samples.
    pub fn extend(&mut self, other: &Samples) {
        self.outside_storm.extend_from_slice(&other.outside_storm);
        self.during_storm.extend_from_slice(&other.during_storm);
    }

    /// Every sample, whenever sent.
    pub fn all(&self) -> Vec<u32> {
        let mut all = Vec::with_capacity(self.outside_storm.len() + self.during_storm.len());
        all.extend_from_slice(&self.outside_storm);
        all.extend_from_slice(&self.during_storm);
        all
    }
}

/// Microseconds as stored in a latency sample: saturates at about 71 minutes.
pub fn sample_micros(micros: u64) -> u32 {
    u32::try_from(micros).unwrap_or(u32::MAX)
}

/// End-to-end latency over every delivered event, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl LatencySummary {
    /// Summarises samples in microseconds (sorted in place); `None` without samples.
    pub fn from_micros(samples: &mut [u32]) -> Option<LatencySummary> {
        samples.sort_unstable();
        let max = *samples.last()?;
        let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
        let n = samples.len() as u64;
        let ms = |micros: u32| f64::from(micros) / 1000.0;
        #[allow(clippy::cast_precision_loss)]
        let mean = sum as f64 / n as f64 / 1000.0;
        Some(LatencySummary {
            samples: n,
            p50: ms(percentile(samples, 50.0)?),
            p95: ms(percentile(samples, 95.0)?),
            p99: ms(percentile(samples, 99.0)?),
            max: ms(max),
            mean,
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample such that at least `p`
/// percent of all samples are at or below it. `None` when there are no samples.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let p = p.clamp(0.0, 100.0);
    // rank = ceil(p/100 * n), between 1 and n. The product is at most n, so the cast is exact
    // enough: f64 holds every integer up to 2^53.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_nearest_rank_definition() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50));
        assert_eq!(percentile(&sorted, 95.0), Some(95));
        assert_eq!(percentile(&sorted, 99.0), Some(99));
        assert_eq!(percentile(&sorted, 100.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&sorted, 99.5), Some(100));
    }

    #[test]
    fn small_sample_sets_pick_real_samples() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        // Four samples: p50 is the 2nd, p95 and p99 the 4th.
        let four = [10, 20, 30, 40];
        assert_eq!(percentile(&four, 50.0), Some(20));
        assert_eq!(percentile(&four, 95.0), Some(40));
        assert_eq!(percentile(&four, 75.0), Some(30));
    }

    #[test]
    fn the_summary_sorts_and_converts_to_milliseconds() {
        let mut samples = vec![3000, 1000, 2000, 4000, 100_000];
        let s = LatencySummary::from_micros(&mut samples).unwrap();
        assert_eq!(s.samples, 5);
        assert!((s.p50 - 3.0).abs() < 1e-9, "{s:?}");
        assert!((s.p95 - 100.0).abs() < 1e-9, "{s:?}");
        assert!((s.max - 100.0).abs() < 1e-9, "{s:?}");
        assert!((s.mean - 22.0).abs() < 1e-9, "{s:?}");
        assert_eq!(LatencySummary::from_micros(&mut []), None);
    }

    #[test]
    fn huge_latencies_saturate_instead_of_wrapping() {
        assert_eq!(sample_micros(5), 5);
        assert_eq!(sample_micros(u64::MAX), u32::MAX);
    }

    #[test]
    fn samples_are_split_by_the_storm_window() {
        let window = StormWindow::default();
        let mut s = Samples::default();
        s.push(&window, 100, 5);
        window.begin(1_000);
        s.push(&window, 999, 6);
        s.push(&window, 1_000, 7);
        // Open-ended until it finishes.
        s.push(&window, 50_000_000, 8);
        window.finish(3_001_000);
        window.finish(9_000_000);
        s.push(&window, 3_001_000, 9);
        s.push(&window, 3_001_001, 10);
        assert_eq!(s.outside_storm, vec![5, 6, 10]);
        assert_eq!(s.during_storm, vec![7, 8, 9]);
        let mut merged = Samples::default();
        merged.extend(&s);
        merged.extend(&s);
        assert_eq!(merged.all().len(), 12);
    }

    #[test]
    fn tallies_count_by_label() {
        let c = Counters::default();
        c.held.store(2, Ordering::Relaxed);
        c.error_frame("rate_limited");
        c.error_frame("rate_limited");
        c.closed_by_hub(4008);
        c.open_failed("handshake: HTTP 401".into());
        let t = c.tallies_snapshot();
        assert_eq!(t.error_codes.get("rate_limited"), Some(&2));
        assert_eq!(t.close_codes.get(&4008), Some(&1));
        assert_eq!(c.errors(), 4);
        c.dropped("io: reset".into());
        assert_eq!(read(&c.held), 0);
    }
}
