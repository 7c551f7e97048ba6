//! What one connection's writer sends and when: the staggered ticker that spreads N
//! connections' sends evenly over each period, and the [`Sender`] state (next `ref`, and for
//! `task_update` the task's version and whether an update is in flight). Plain values and
//! methods, tested without a socket; `client.rs` drives them.

use std::time::{Duration, Instant};

use signaling::TaskId;
use tokio::time::{Interval, MissedTickBehavior};

use crate::client::ConnSpec;
use crate::frames::{self, LtData};
use crate::ws::FIRST_LOAD_REF;

/// Microseconds from `epoch` to `now` (saturating).
pub fn micros_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

/// A ticker with period `period` whose first tick comes `idx / users` of a period after
/// `start`, so that N connections' sends interleave evenly.
pub fn staggered(start: Instant, period: Duration, idx: usize, users: usize) -> Interval {
    let first = start + stagger(period, idx, users);
    let mut ticker = tokio::time::interval_at(first.into(), period.max(Duration::from_micros(1)));
    // A writer that fell behind resumes the schedule rather than bursting into the rate limit.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

/// Connection `idx`'s offset within one period.
fn stagger(period: Duration, idx: usize, users: usize) -> Duration {
    #[allow(clippy::cast_precision_loss)]
    let fraction = idx as f64 / users.max(1) as f64;
    period.mul_f64(fraction)
}

/// The next tick, or never when there is no ticker.
pub async fn next_tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The connection's own task, for `task_update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnTask {
    /// Its id.
    pub id: TaskId,
    /// Its version as last acknowledged.
    pub version: u64,
    /// An update was sent and not yet answered.
    pub in_flight: bool,
}

/// What a tick produced.
#[derive(Debug, PartialEq)]
pub enum Tick {
    /// A command to write.
    Send(Vec<u8>),
    /// The previous update is still unanswered: this tick is skipped.
    Busy,
}

/// The writer's state: the next `ref` and, for `task_update`, the task.
#[derive(Debug)]
pub struct Sender {
    /// The connection.
    pub spec: ConnSpec,
    epoch: Instant,
    next_ref: u64,
    task: Option<OwnTask>,
}

impl Sender {
    /// A sender whose first command gets [`FIRST_LOAD_REF`].
    pub fn new(spec: ConnSpec, epoch: Instant, task: Option<OwnTask>) -> Sender {
        Sender {
            spec,
            epoch,
            next_ref: FIRST_LOAD_REF,
            task,
        }
    }

    /// The command for a tick at `now`: a broadcast, or an update of our task unless the previous
    /// one is still in flight.
    pub fn tick(&mut self, now: Instant) -> serde_json::Result<Tick> {
        let t = micros_since(self.epoch, now);
        let msg = match &mut self.task {
            Some(task) if task.in_flight => return Ok(Tick::Busy),
            Some(task) => {
                task.in_flight = true;
                frames::task_update(self.spec.workspace, task.id, task.version, t)
            }
            None => frames::broadcast(
                self.spec.workspace,
                LtData {
                    t,
                    c: self.spec.idx as u64,
                },
            )?,
        };
        let reference = self.next_ref;
        self.next_ref += 1;
        frames::command(reference, &msg).map(Tick::Send)
    }

    /// The update in flight was answered.
    pub fn settled(&mut self, version: Option<u64>) {
        if let Some(task) = &mut self.task {
            task.in_flight = false;
            if let Some(v) = version {
                task.version = v;
            }
        }
    }

    /// The hub told us our task's current version.
    pub fn version_seen(&mut self, version: u64) {
        if let Some(task) = &mut self.task {
            task.version = version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::WorkspaceId;
    use signaling::client::{ClientMsg, Ref, decode};

    fn spec() -> ConnSpec {
        ConnSpec {
            idx: 3,
            room: 0,
            workspace: WorkspaceId::new(),
        }
    }

    fn sent(tick: serde_json::Result<Tick>) -> (Option<Ref>, ClientMsg) {
        match tick.unwrap() {
            Tick::Send(bytes) => decode(&bytes).unwrap(),
            Tick::Busy => panic!("expected a send"),
        }
    }

    #[test]
    fn broadcasts_carry_the_send_time_and_fresh_refs() {
        let epoch = Instant::now();
        let mut s = Sender::new(spec(), epoch, None);
        let (r1, m1) = sent(s.tick(epoch + Duration::from_millis(5)));
        let (r2, _) = sent(s.tick(epoch + Duration::from_millis(6)));
        assert_eq!(r1, Some(Ref::Num(FIRST_LOAD_REF)));
        assert_eq!(r2, Some(Ref::Num(FIRST_LOAD_REF + 1)));
        let ClientMsg::Broadcast(b) = m1 else {
            panic!("not a broadcast")
        };
        let data: LtData = serde_json::from_str(b.data.get()).unwrap();
        assert_eq!(data, LtData { t: 5000, c: 3 });
    }

    #[test]
    fn one_update_in_flight_and_the_ack_gives_the_next_base_version() {
        let epoch = Instant::now();
        let task = OwnTask {
            id: TaskId::new(),
            version: 1,
            in_flight: false,
        };
        let mut s = Sender::new(spec(), epoch, Some(task));
        let (_, m) = sent(s.tick(epoch));
        let ClientMsg::TaskUpdate(u) = m else {
            panic!("not an update")
        };
        assert_eq!(u.base_version, 1);
        assert_eq!(u.changes.title.as_deref(), Some("lt 0"));

        assert_eq!(s.tick(epoch).unwrap(), Tick::Busy);
        s.settled(Some(2));
        let (_, m) = sent(s.tick(epoch));
        let ClientMsg::TaskUpdate(u) = m else {
            panic!("not an update")
        };
        assert_eq!(u.base_version, 2);

        // An error frees the slot; a conflict report fixes the version.
        s.settled(None);
        s.version_seen(7);
        let (_, m) = sent(s.tick(epoch));
        let ClientMsg::TaskUpdate(u) = m else {
            panic!("not an update")
        };
        assert_eq!(u.base_version, 7);
    }

    #[test]
    fn connections_are_staggered_evenly_over_a_period() {
        let p = Duration::from_secs(10);
        assert_eq!(stagger(p, 0, 4), Duration::ZERO);
        assert_eq!(stagger(p, 1, 4), Duration::from_millis(2500));
        assert_eq!(stagger(p, 3, 4), Duration::from_millis(7500));
    }
}
