//! Connection storm (`--storm RATE --storm-count N`): N more connections, opened during the
//! load phase on a fixed open-loop schedule (connection j is due at `start + j / RATE`, whether
//! or not the earlier ones have got anywhere), each through the whole path a real client takes:
//! TCP connect, the WebSocket upgrade with its JWT (the hub checks the token and the account
//! every time), `hello`, `join_workspace` of its room, up to the join's `ack` (`ws.rs`).
//!
//! Connect latency is measured from the connection's *due* time, not from when its task got to
//! run, so a backlog (in the hub's accept queue, or in this process) shows up as latency rather
//! than as a slower schedule; how late the harness itself launched them is reported apart
//! (`launch_lag_max_ms`). Meanwhile the members opened before keep sending at `--rate`, and their
//! delivery latency for events sent during the storm is reported on its own row (`stats.rs`).
//!
//! Storm connection j is connection `N + j` of the run: it uses account `(N + j) % K`, room
//! `(N + j) % R` and source address `(N + j) % S` like the others. Once joined it stays open,
//! reading (and answering pings) but sending nothing, until the run closes everything.
//!
//! **The hub's caps.** A storm run needs the hub started with its connection caps raised:
//! `HUB_MAX_CONNS_PER_USER` (default 50) above the connections per account and
//! `HUB_MAX_CONNS_PER_IP` (default 1000) above the connections per source address; every
//! upgrade is also charged to the per-address throttle `HUB_LIMIT_READ_PER_IP` (default
//! `100/s+1000`). Refusals are counted as `handshake: HTTP 429 <code>`, their own failure
//! reason (`too_many_connections` for a cap, `rate_limited` for the throttle).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, WebSocketError};
use serde::Serialize;
use signaling::WorkspaceId;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::args::{Op, StormConfig};
use crate::frames;
use crate::sender::micros_since;
use crate::stats::{LatencySummary, bump, read, sample_micros};
use crate::ws::{Dialer, SETUP_TIMEOUT, Socket};

/// Longest wait, after the last connection was due, for every attempt to end: one attempt's
/// own timeout and a margin.
pub const SETTLE_MAX: Duration = SETUP_TIMEOUT.saturating_add(Duration::from_secs(1));
/// How often the storm looks whether every attempt has ended.
const SETTLE_POLL: Duration = Duration::from_millis(10);
/// How long a storm connection's close frame may take at the end.
const CLOSE_WRITE: Duration = Duration::from_millis(500);

/// When storm connection `j` is due, after the storm's start.
pub fn due_offset(j: usize, rate: f64) -> Duration {
    #[allow(clippy::cast_precision_loss)]
    Duration::from_secs_f64(j as f64 / rate)
}

/// What the storm's connections add to, live (the progress line reads it).
#[derive(Debug, Default)]
pub struct StormCounters {
    /// Attempts launched.
    pub attempted: AtomicU64,
    /// Attempts that got their join `ack`.
    pub accepted: AtomicU64,
    /// Attempts that failed.
    pub failed: AtomicU64,
    /// Accepted and not lost since.
    pub held: AtomicU64,
    /// Accepted connections the hub closed before the end (close frame).
    pub closed_by_hub: AtomicU64,
    /// Accepted connections lost without a close frame.
    pub dropped: AtomicU64,
    /// Largest delay between a connection's due time and its launch, µs.
    pub launch_lag_max_us: AtomicU64,
    /// When the latest attempt ended, µs since the storm's start.
    pub last_outcome_us: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    early_ends: Mutex<BTreeMap<String, u64>>,
}

fn tally(map: &Mutex<BTreeMap<String, u64>>, key: String) {
    *map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_default() += 1;
}

impl StormCounters {
    fn failed(&self, reason: String) {
        tally(&self.failures, reason);
        bump(&self.failed);
    }

    fn ended_early(&self, why: String) {
        tally(&self.early_ends, why);
    }

    /// How accepted connections ended before the run closed them (`close 4008`, `io: ...`).
    pub fn early_ends(&self) -> BTreeMap<String, u64> {
        self.early_ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Attempts that have ended, either way.
    pub fn resolved(&self) -> u64 {
        read(&self.accepted) + read(&self.failed)
    }

    /// Failed attempts by step and reason.
    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Who storm connection `j` is.
#[derive(Debug, Clone)]
pub struct StormConn {
    /// Its index in the run (`--users` + j).
    pub idx: usize,
    /// Its account's access token.
    pub token: String,
    /// Its room.
    pub workspace: WorkspaceId,
}

/// A storm under way: its counters and one task per connection.
pub struct Storm {
    /// The live counts.
    pub counters: Arc<StormCounters>,
    /// Each connection's task; yields its connect latency (µs) if it was accepted.
    pub tasks: JoinSet<Option<u32>>,
    /// When the first connection was due.
    pub start: Option<Instant>,
    /// When every attempt had ended (or the settle time ran out).
    pub settled: Option<Instant>,
    stop: watch::Sender<bool>,
}

impl Default for Storm {
    fn default() -> Self {
        Storm {
            counters: Arc::new(StormCounters::default()),
            tasks: JoinSet::new(),
            start: None,
            settled: None,
            stop: watch::channel(false).0,
        }
    }
}

impl Storm {
    /// Launches `conns` on the schedule of `plan` from now, then waits (at most
    /// [`SETTLE_MAX`] after the last was due) for every attempt to end. Cancel-safe: what was
    /// launched stays in `self.tasks`.
    pub async fn run(&mut self, plan: StormConfig, dialer: &Arc<Dialer>, conns: Vec<StormConn>) {
        let start = Instant::now();
        self.start = Some(start);
        let launched = conns.len() as u64;
        for (j, conn) in conns.into_iter().enumerate() {
            let due = start + due_offset(j, plan.rate);
            tokio::time::sleep_until(due.into()).await;
            let lag = micros_since(due, Instant::now());
            let c = &self.counters;
            c.launch_lag_max_us.fetch_max(lag, Ordering::Relaxed);
            bump(&c.attempted);
            self.tasks.spawn(attempt(
                Arc::clone(dialer),
                conn,
                due,
                start,
                Arc::clone(c),
                self.stop.subscribe(),
            ));
        }
        let settle = tokio::time::Instant::now() + SETTLE_MAX;
        while self.counters.resolved() < launched && tokio::time::Instant::now() < settle {
            tokio::time::sleep(SETTLE_POLL).await;
        }
        self.settled = Some(Instant::now());
    }

    /// From the first due time until every attempt had ended, seconds; `None` before then.
    pub fn seconds(&self) -> Option<f64> {
        Some((self.settled? - self.start?).as_secs_f64())
    }

    /// Closes every storm connection and collects the accepted ones' connect latencies (µs);
    /// tasks still running after `grace` are aborted.
    pub async fn close(&mut self, grace: Duration) -> Vec<u32> {
        self.stop.send_replace(true);
        let mut latencies = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, self.tasks.join_next()).await
        {
            match joined {
                Ok(Some(latency)) => latencies.push(latency),
                Ok(None) => {}
                Err(e) => eprintln!("loadtest: a storm connection task failed: {e}"),
            }
        }
        self.tasks.shutdown().await;
        latencies
    }
}

/// One storm connection: open it, then hold it until the run stops.
async fn attempt(
    dialer: Arc<Dialer>,
    conn: StormConn,
    due: Instant,
    start: Instant,
    counters: Arc<StormCounters>,
    stop: watch::Receiver<bool>,
) -> Option<u32> {
    let opened = dialer
        .open(&conn.token, conn.workspace, Op::Broadcast, conn.idx)
        .await;
    let now = Instant::now();
    counters
        .last_outcome_us
        .fetch_max(micros_since(start, now), Ordering::Relaxed);
    match opened {
        Ok(session) => {
            bump(&counters.accepted);
            bump(&counters.held);
            hold(session.ws, &counters, stop).await;
            Some(sample_micros(micros_since(due, now)))
        }
        Err(e) => {
            counters.failed(e.to_string());
            None
        }
    }
}

/// Reads (answering pings) until the run stops or the hub ends the connection; then closes.
async fn hold(mut ws: Socket, counters: &StormCounters, mut stop: watch::Receiver<bool>) {
    // The close frame is only counted; echoing it into a socket the hub is resetting would
    // turn it into a write error.
    ws.set_auto_close(false);
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.wait_for(|&s| s) => break,
            frame = ws.read_frame() => frame,
        };
        let (counter, why) = match frame {
            Ok(f) if f.opcode == OpCode::Close => (
                &counters.closed_by_hub,
                format!("close {}", frames::close_code(&f.payload)),
            ),
            Ok(_) => continue,
            Err(WebSocketError::IoError(io)) => (&counters.dropped, format!("io: {}", io.kind())),
            Err(e) => (&counters.dropped, e.to_string()),
        };
        counters.held.fetch_sub(1, Ordering::Relaxed);
        bump(counter);
        counters.ended_early(why);
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WRITE, ws.write_frame(Frame::close(1000, b""))).await;
}

/// The storm in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormReport {
    /// New connections per second asked for.
    pub rate_asked: f64,
    /// Connections the storm was to open.
    pub count: usize,
    /// Attempts launched.
    pub attempted: u64,
    /// Attempts that got their join `ack`.
    pub accepted: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Why, by step and reason (`handshake: HTTP 429 too_many_connections`...).
    pub failure_reasons: BTreeMap<String, u64>,
    /// Accepted connections per second, from the first due time to the last outcome.
    pub achieved_rate: f64,
    /// From the first due time to the last outcome, seconds.
    pub window_seconds: f64,
    /// Connect latency from the due time to the join `ack`, ms; `null` if none was accepted.
    pub connect_latency_ms: Option<LatencySummary>,
    /// Largest delay of this process in launching an attempt after its due time, ms.
    pub launch_lag_max_ms: f64,
    /// Storm connections the hub closed before the end.
    pub closed_by_hub: u64,
    /// Storm connections lost without a close frame before the end.
    pub dropped: u64,
    /// How those closed or lost before the end ended (`close 4008`, `io: ...`).
    pub early_ends: BTreeMap<String, u64>,
    /// Members' delivery latency for events sent during the storm, ms.
    pub members_latency_during_ms: Option<LatencySummary>,
    /// Members' delivery latency for events sent outside the storm, ms.
    pub members_latency_outside_ms: Option<LatencySummary>,
}

impl StormReport {
    /// The figures of a storm from its counters and the accepted connections' latencies;
    /// `members` are the members' samples during and outside the storm (µs).
    pub fn new(
        plan: StormConfig,
        c: &StormCounters,
        mut connect_us: Vec<u32>,
        members: (&mut [u32], &mut [u32]),
    ) -> StormReport {
        let accepted = read(&c.accepted);
        #[allow(clippy::cast_precision_loss)]
        let window_seconds = read(&c.last_outcome_us) as f64 / 1e6;
        #[allow(clippy::cast_precision_loss)]
        let achieved_rate = if window_seconds > 0.0 {
            accepted as f64 / window_seconds
        } else {
            0.0
        };
        #[allow(clippy::cast_precision_loss)]
        let launch_lag_max_ms = read(&c.launch_lag_max_us) as f64 / 1000.0;
        StormReport {
            rate_asked: plan.rate,
            count: plan.count,
            attempted: read(&c.attempted),
            accepted,
            failed: read(&c.failed),
            failure_reasons: c.failures(),
            achieved_rate,
            window_seconds,
            connect_latency_ms: LatencySummary::from_micros(&mut connect_us),
            launch_lag_max_ms,
            closed_by_hub: read(&c.closed_by_hub),
            dropped: read(&c.dropped),
            early_ends: c.early_ends(),
            members_latency_during_ms: LatencySummary::from_micros(members.0),
            members_latency_outside_ms: LatencySummary::from_micros(members.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_open_loop_at_the_asked_rate() {
        assert_eq!(due_offset(0, 2000.0), Duration::ZERO);
        assert_eq!(due_offset(1, 2000.0), Duration::from_micros(500));
        assert_eq!(due_offset(4000, 2000.0), Duration::from_secs(2));
        assert_eq!(due_offset(3, 0.5), Duration::from_secs(6));
        // Evenly spaced: every step is the same.
        let steps: Vec<Duration> = (1..100)
            .map(|j| due_offset(j, 300.0) - due_offset(j - 1, 300.0))
            .collect();
        let (min, max) = (steps.iter().min().unwrap(), steps.iter().max().unwrap());
        assert!(*max - *min <= Duration::from_nanos(2), "{min:?} {max:?}");
    }

    #[test]
    fn the_report_counts_reasons_rate_and_latency_from_the_due_time() {
        let c = StormCounters::default();
        for _ in 0..3 {
            bump(&c.attempted);
        }
        bump(&c.accepted);
        bump(&c.accepted);
        c.failed("handshake: HTTP 429 too_many_connections".into());
        c.last_outcome_us.store(500_000, Ordering::Relaxed);
        c.launch_lag_max_us.store(1_500, Ordering::Relaxed);
        assert_eq!(c.resolved(), 3);
        let plan = StormConfig {
            rate: 10.0,
            count: 3,
        };
        let r = StormReport::new(plan, &c, vec![2_000, 40_000], (&mut [1_000], &mut []));
        assert_eq!((r.attempted, r.accepted, r.failed), (3, 2, 1));
        assert_eq!(
            r.failure_reasons
                .get("handshake: HTTP 429 too_many_connections"),
            Some(&1)
        );
        assert!((r.achieved_rate - 4.0).abs() < 1e-9);
        assert!((r.launch_lag_max_ms - 1.5).abs() < 1e-9);
        let connect = r.connect_latency_ms.unwrap();
        assert!((connect.p50 - 2.0).abs() < 1e-9 && (connect.max - 40.0).abs() < 1e-9);
        assert!(r.members_latency_during_ms.is_some());
        assert!(r.members_latency_outside_ms.is_none());
    }
}
