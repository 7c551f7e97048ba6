//! The room actor, written once for every room kind: [`RoomActor<K>`] runs a [`RoomKind`] with a
//! [`Core`] that owns what every durable room needs: the epoch and journal ([`Durable`]), the
//! roster that outlives a crash, the mailbox depth, snapshots, stopping when idle, and the
//! **pipeline of appends**.
//!
//! **Pipelined writes.** A kind decides a command, applies its event to its state at once, and
//! hands the event to [`Core::commit`] with what to do once it is durable (a [`Release`]: fan the
//! frames out, answer the caller). The append is queued to the journal writer and the room goes
//! on deciding the next command against the state that includes it, so one busy room fills a
//! group commit by itself instead of waiting a commit per write. Appends commit in order; the
//! releases run strictly in offset order, each only after its own commit, so no member and no
//! caller hears of an event that is not on disk. When an append fails, it and every append after
//! it fail their commands (`unavailable`), and the room stops with an error: the supervisor
//! restarts it from the store, which holds exactly what was acknowledged (the store's head guard
//! refuses any append after a failed one, so the journal has no hole).
//!
//! **Reads wait for writes.** Because the state runs ahead of the journal while appends are in
//! flight, a message that reads the state for someone else (a join's snapshot or replay, a REST
//! read) must not see what is not committed yet: the kind marks such messages
//! ([`RoomKind::needs_committed`]) and the core holds them, and everything after them, until
//! the appends in flight are committed. Ephemeral messages (presence, typing, signals) that read
//! nothing durable go through at once. A snapshot that comes due is taken the same way: new
//! messages wait until what is in flight is committed, so a room kept busy still snapshots (and
//! trims its journal) on time, of committed state only.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use persistence::{Committed, SideEffect, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use signaling::RoomKey;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::context::{RoomContext, Roster, StartError, depth_down};
use super::durable::{AppendError, Durable};
use crate::conn::{ConnHandle, ConnId};

/// A message to a room of kind `M`'s messages.
pub enum RoomMsg<M> {
    /// The kind's own message (a client command, a REST call...).
    Kind(M),
    /// A connection closed.
    Disconnected(ConnId),
    /// A connection was lost with the node it came through (see [`RoomKind::lost`]).
    Lost(ConnId),
    /// An append queued by [`Core::commit`] is committed (or refused). Sent by the room's own
    /// commit watcher, in offset order.
    Committed {
        /// The append's last offset.
        offset: u64,
        /// Its outcome.
        result: Result<(), AppendError>,
    },
    /// Periodic housekeeping: time-based snapshots, expiries, stopping when idle.
    Tick,
    /// Fault injection for tests (enabled by config): panic inside the room.
    Crash,
    /// Hand the room to another node (this one drains, or the room moves): once the appends in
    /// flight are committed it stops, snapshots, passes its lease on (to the node named, or
    /// frees it), and tells its members to `resync`, which finds it wherever it runs next.
    HandOff(Option<String>),
    /// Describe the room (for the operator's room list).
    Describe(ractor::RpcReplyPort<RoomInfo>),
}

/// A running room, as the operator's room list shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomInfo {
    /// `ws:<id>` or `session:<id>`.
    pub room: String,
    /// The fencing epoch it runs under.
    pub epoch: u64,
    /// The offset of its last event.
    pub offset: u64,
    /// Connections in it (here or on other nodes).
    pub members: usize,
}

/// What a commit's outcome is, to its [`Release`].
pub type Outcome = Result<u64, Refused>;

/// An append failed: the command it carried is refused (`unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// What to do once an event is durable (or failed): fan it out, answer the caller.
pub type Release<K> = Box<dyn FnOnce(&mut K, &mut Core<K>, Outcome) + Send>;

/// A room kind: its state and rules, its messages, its snapshot. The core does the rest.
pub trait RoomKind: Sized + Send + Sync + 'static {
    /// The kind's messages.
    type Msg: Send + 'static;
    /// What a snapshot stores (the state).
    type Snapshot: Serialize + Sync;

    /// Claims the room and rebuilds its state (through [`Durable::open`]).
    fn load(
        ctx: &Arc<RoomContext>,
        key: RoomKey,
        roster: &Roster,
    ) -> impl Future<Output = Result<(Self, Durable), StartError>> + Send;

    /// The offset of the last event applied (committed or in flight).
    fn offset(&self) -> u64;

    /// The state to snapshot (called only when nothing is in flight).
    fn snapshot(&self) -> &Self::Snapshot;

    /// Whether `msg` reads the state for someone (a join, a REST read): it waits until every
    /// append in flight is committed.
    fn needs_committed(msg: &Self::Msg) -> bool;

    /// Handles one of the kind's messages. Durable changes go through [`Core::commit`].
    fn handle(&mut self, core: &mut Core<Self>, msg: Self::Msg) -> impl Future<Output = ()> + Send;

    /// A connection closed: forget it.
    fn disconnected(&mut self, core: &mut Core<Self>, conn: ConnId);

    /// A connection was lost with the node it came through (it may be reconnecting elsewhere):
    /// like [`RoomKind::disconnected`] unless the kind keeps its presence a while.
    fn lost(&mut self, core: &mut Core<Self>, conn: ConnId) {
        self.disconnected(core, conn);
    }

    /// The room restarted after a crash: tell the connections of the roster.
    fn restarted(&mut self, core: &mut Core<Self>);

    /// Housekeeping once per tick (expiries).
    fn tick(&mut self, core: &mut Core<Self>);

    /// Whether anyone is in the room (a room with no one and nothing to do stops when idle).
    fn is_empty(&self) -> bool;
}

/// Why a room is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Deleted: nothing more to write.
    Deleted,
    /// A newer owner holds the room: nothing more may be written, not even a snapshot.
    Fenced,
    /// An append failed: the state ran ahead of the store, so the room starts over from it.
    Failed,
}

struct InFlight<K: RoomKind> {
    /// The append's offset; `None` for an answer queued behind the appends before it
    /// ([`Core::after_writes`]).
    offset: Option<u64>,
    release: Release<K>,
}

/// What every room has besides its kind's state. Kinds reach the services through it.
pub struct Core<K: RoomKind> {
    /// Shared services.
    pub ctx: Arc<RoomContext>,
    /// Epoch, journal key, snapshot bookkeeping.
    pub durable: Durable,
    /// The joined connections, kept across a crash.
    pub roster: Roster,
    /// Messages sent to the room and not yet handled.
    pub depth: Arc<AtomicUsize>,
    /// The room itself (for catch-up tasks and timers).
    pub myself: ActorRef<RoomMsg<K::Msg>>,
    /// Joins handed to catch-up tasks and not back yet: the room does not stop meanwhile.
    pub catching_up: Arc<AtomicUsize>,
    in_flight: VecDeque<InFlight<K>>,
    deferred: VecDeque<K::Msg>,
    watcher: mpsc::UnboundedSender<(u64, Committed)>,
    watcher_task: JoinHandle<()>,
    stop: Option<Stop>,
    /// Being handed off (to this node, if named).
    handing_off: Option<Option<String>>,
    key: RoomKey,
    /// A time-based snapshot came due while appends were in flight: it is taken once they are
    /// committed (new messages wait for it).
    snapshot_wanted: bool,
    last_activity: Instant,
    restarted: bool,
    ticker: Option<JoinHandle<()>>,
}

impl<K: RoomKind> Core<K> {
    /// Journals `json` (the event at `offset`, already applied by the kind) with its relational
    /// side effect; `release` runs once it is committed or refused, in offset order. Returns
    /// the release back, untouched, when the room is stopping or the journal writer is gone:
    /// the caller answers then.
    pub async fn commit(
        &mut self,
        offset: u64,
        json: String,
        effects: Vec<SideEffect>,
        release: Release<K>,
    ) -> Result<(), Release<K>> {
        if self.stop.is_some() {
            return Err(release);
        }
        let queued = match self.durable.submit(&self.ctx, offset, json, effects).await {
            Ok(committed) => self.watcher.send((offset, committed)).is_ok(),
            Err(_) => false,
        };
        if !queued {
            // The kind applied the event already: the room must start over from the store.
            tracing::error!(room = %self.durable.key(), offset, "the journal writer is gone; closing the room");
            self.stop(Stop::Failed);
            return Err(release);
        }
        self.in_flight.push_back(InFlight {
            offset: Some(offset),
            release,
        });
        Ok(())
    }

    /// An answer decided against the state as it stands, appends in flight included (a refusal,
    /// "nothing changed"): it must not reach anyone before those appends are committed and
    /// answered. With nothing in flight it is handed back to run now; otherwise it runs right
    /// after the last append now in flight is released (with that append's outcome: when an
    /// append before it fails, so does it).
    pub fn after_writes(&mut self, release: Release<K>) -> Option<Release<K>> {
        if self.in_flight.is_empty() {
            return Some(release);
        }
        self.in_flight.push_back(InFlight {
            offset: None,
            release,
        });
        None
    }

    /// Whether appends are in flight.
    pub fn writing(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Stops the room after this message (deleted, or fenced off).
    pub fn stop(&mut self, why: Stop) {
        self.stop = Some(why);
    }

    /// Locks the roster. A poisoned lock only means another thread panicked while holding it;
    /// the map itself is still consistent (every operation on it is a single insert or remove).
    pub fn roster(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<ConnId, ConnHandle>> {
        self.roster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs `f` now, or, with appends in flight, right after them (see [`Core::after_writes`]): a
/// command that writes nothing (presence, a relayed event, a signal) still takes effect, and is
/// answered, in the order the room received it, never ahead of an earlier write. Should an
/// append before it fail, `f` is dropped, and the answer it held says `unavailable` as it goes.
pub fn in_order<K: RoomKind>(
    kind: &mut K,
    core: &mut Core<K>,
    f: impl FnOnce(&mut K, &mut Core<K>) + Send + 'static,
) {
    let release: Release<K> = Box::new(move |k, c, outcome| {
        if outcome.is_ok() {
            f(k, c);
        }
    });
    if let Some(now) = core.after_writes(release) {
        now(kind, core, Ok(0));
    }
}

/// Waits for each queued append in order and tells the room.
async fn watch<M: Send + 'static>(
    room: ActorRef<RoomMsg<M>>,
    mut rx: mpsc::UnboundedReceiver<(u64, Committed)>,
) {
    while let Some((offset, committed)) = rx.recv().await {
        let result = match committed.await {
            Ok(()) => Ok(()),
            Err(StoreError::StaleEpoch) => Err(AppendError::Fenced),
            Err(e) => Err(AppendError::Failed(e)),
        };
        if room.cast(RoomMsg::Committed { offset, result }).is_err() {
            return;
        }
    }
}

/// The room actor of kind `K`.
pub struct RoomActor<K>(PhantomData<fn() -> K>);

impl<K> Default for RoomActor<K> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// What the supervisor starts a room with (and restarts it with after a crash).
pub struct RoomArgs {
    /// The room.
    pub key: RoomKey,
    /// Shared services.
    pub ctx: Arc<RoomContext>,
    /// The connections to re-attach after a crash.
    pub roster: Roster,
    /// Messages sent but not yet handled.
    pub depth: Arc<AtomicUsize>,
    /// True when restarting after a crash.
    pub restarted: bool,
}

/// A running room: its kind and its core.
pub struct Room<K: RoomKind> {
    kind: K,
    core: Core<K>,
}

impl<K: RoomKind> Actor for RoomActor<K> {
    type Msg = RoomMsg<K::Msg>;
    type State = Room<K>;
    type Arguments = RoomArgs;

    #[tracing::instrument(skip_all, fields(room = %args.key))]
    async fn pre_start(
        &self,
        myself: ActorRef<RoomMsg<K::Msg>>,
        args: RoomArgs,
    ) -> Result<Room<K>, ActorProcessingErr> {
        let RoomArgs {
            key,
            ctx,
            roster,
            depth,
            restarted,
        } = args;
        let (kind, durable) = K::load(&ctx, key, &roster).await?;
        let (watcher, rx) = mpsc::unbounded_channel();
        let watcher_task = tokio::spawn(watch(myself.clone(), rx));
        let ticker = Some(myself.send_interval(ctx.config.tick, || RoomMsg::Tick));
        Ok(Room {
            kind,
            core: Core {
                ctx,
                durable,
                roster,
                depth,
                myself,
                catching_up: Arc::default(),
                in_flight: VecDeque::new(),
                deferred: VecDeque::new(),
                watcher,
                watcher_task,
                stop: None,
                handing_off: None,
                key,
                snapshot_wanted: false,
                last_activity: Instant::now(),
                restarted,
                ticker,
            },
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<RoomMsg<K::Msg>>,
        room: &mut Room<K>,
    ) -> Result<(), ActorProcessingErr> {
        if room.core.restarted {
            room.kind.restarted(&mut room.core);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RoomMsg<K::Msg>>,
        room: &mut Room<K>,
    ) -> Result<(), ActorProcessingErr> {
        let core = &mut room.core;
        if let Some(t) = core.ticker.take() {
            t.abort();
        }
        core.watcher_task.abort();
        // The state runs ahead of the journal while appends are in flight: snapshot only what
        // is known committed (the journal has the rest for the next start).
        if core.stop.is_none() && core.in_flight.is_empty() {
            snapshot(&room.kind, core).await;
        }
        // Before the supervisor hears of the stop, so before this node can start the room again.
        if let Some(cluster) = &core.ctx.cluster {
            match core.handing_off.as_ref().and_then(|to| to.as_deref()) {
                Some(to) => cluster.pass_lease(core.durable.key(), to).await,
                None => cluster.release_lease(core.durable.key()).await,
            }
        }
        if core.handing_off.is_some() {
            // After the lease is passed on: their joins find the room's next node.
            let frame = crate::room::resync_frame(core.key, Some(room.kind.offset()));
            let conns: Vec<ConnHandle> = core.roster().drain().map(|(_, c)| c).collect();
            for conn in conns {
                conn.unmark_pending(core.key);
                conn.mark_left(core.key);
                conn.push(frame.clone(), crate::conn::Class::MustDeliver);
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RoomMsg<K::Msg>>,
        msg: RoomMsg<K::Msg>,
        room: &mut Room<K>,
    ) -> Result<(), ActorProcessingErr> {
        let Room { kind, core } = room;
        if !matches!(msg, RoomMsg::Tick | RoomMsg::Committed { .. }) {
            let depth = depth_down(&core.depth);
            core.ctx.metrics.mailbox_depth.record(depth as f64);
            core.last_activity = Instant::now();
        }
        match msg {
            // Handing off: nothing more is decided here; what waits is answered `unavailable`
            // as the room stops, and the client retries wherever the room runs next.
            RoomMsg::Kind(m) if core.handing_off.is_some() => core.deferred.push_back(m),
            RoomMsg::Describe(reply) => {
                let _ = reply.send(RoomInfo {
                    room: core.key.to_string(),
                    epoch: core.durable.epoch(),
                    offset: kind.offset(),
                    members: core.roster().len(),
                });
            }
            RoomMsg::HandOff(to) => {
                tracing::info!(room = %core.key, to = ?to, "handing the room off");
                core.handing_off = Some(to);
            }
            RoomMsg::Kind(m) => {
                // A snapshot due waits for the appends in flight, and so does what comes after
                // it: a room kept busy still snapshots (and trims its journal) on time.
                let snapshot_due = core.snapshot_wanted
                    || core.durable.snapshot_due(
                        kind.offset(),
                        core.ctx.config.snapshot_every,
                        None,
                    );
                if core.writing()
                    && (snapshot_due || K::needs_committed(&m) || !core.deferred.is_empty())
                {
                    core.deferred.push_back(m);
                } else {
                    kind.handle(core, m).await;
                }
            }
            RoomMsg::Disconnected(conn) => kind.disconnected(core, conn),
            RoomMsg::Lost(conn) => kind.lost(core, conn),
            RoomMsg::Committed { offset, result } => {
                committed(kind, core, offset, result).await?;
            }
            RoomMsg::Tick => {
                kind.tick(core);
                let due = core.durable.snapshot_due(
                    kind.offset(),
                    u64::MAX,
                    Some(core.ctx.config.snapshot_interval),
                );
                if due && core.writing() {
                    core.snapshot_wanted = true;
                } else if due {
                    snapshot(kind, core).await;
                }
            }
            RoomMsg::Crash => {
                if core.ctx.config.fault_injection {
                    panic!("fault injection: room {} told to crash", core.durable.key());
                }
            }
        }
        if core.stop.is_some() {
            // Answer whatever is still in flight or waiting: nothing more will be written.
            while let Some(f) = core.in_flight.pop_front() {
                (f.release)(kind, core, Err(Refused));
            }
            core.deferred.clear();
            if core.stop == Some(Stop::Failed) {
                // The state ran ahead of the store: fail, so that the supervisor starts the room
                // over from the store and its members are told to resync.
                return Err(
                    format!("room {} closed: its appends failed", core.durable.key()).into(),
                );
            }
            myself.stop(Some("room closed".into()));
        } else if core.handing_off.is_some() && !core.writing() {
            core.deferred.clear();
            myself.stop(Some("handed off".into()));
        } else if kind.is_empty()
            && !core.writing()
            && core.deferred.is_empty()
            && core.catching_up.load(std::sync::atomic::Ordering::Relaxed) == 0
            && core.last_activity.elapsed() >= core.ctx.config.idle_timeout
        {
            myself.stop(Some("idle".into()));
        }
        Ok(())
    }
}

/// An append's outcome: release it (and, on failure, everything after it), then, once nothing
/// is in flight, snapshot if due and take the messages that waited.
async fn committed<K: RoomKind>(
    kind: &mut K,
    core: &mut Core<K>,
    offset: u64,
    result: Result<(), AppendError>,
) -> Result<(), ActorProcessingErr> {
    match result {
        Ok(()) => {
            let Some(front) = core.in_flight.pop_front() else {
                return Ok(());
            };
            debug_assert_eq!(front.offset, Some(offset), "commits come back in order");
            (front.release)(kind, core, Ok(offset));
            // The answers that waited for it.
            while core.in_flight.front().is_some_and(|f| f.offset.is_none()) {
                if let Some(f) = core.in_flight.pop_front() {
                    (f.release)(kind, core, Ok(offset));
                }
            }
        }
        Err(e) => {
            let failed: Vec<InFlight<K>> = core.in_flight.drain(..).collect();
            for f in failed {
                (f.release)(kind, core, Err(Refused));
            }
            core.deferred.clear();
            return match e {
                AppendError::Fenced => {
                    tracing::error!(room = %core.durable.key(), epoch = core.durable.epoch(), "room fenced off by a newer owner; stopping");
                    core.stop(Stop::Fenced);
                    Ok(())
                }
                AppendError::Failed(e) => {
                    tracing::error!(room = %core.durable.key(), offset, error = %e, "journal append failed; restarting the room from the store");
                    // The state ran ahead of the store: start over from what is committed.
                    core.stop(Stop::Failed);
                    Err(format!("journal append failed: {e}").into())
                }
            };
        }
    }
    if core.writing() {
        return Ok(());
    }
    if core.snapshot_wanted
        || core
            .durable
            .snapshot_due(kind.offset(), core.ctx.config.snapshot_every, None)
    {
        snapshot(kind, core).await;
    }
    while let Some(front) = core.deferred.front() {
        // A fenced snapshot just now, or the message before, may have closed the room; a room
        // being handed off decides nothing more (what waits is answered as it stops).
        if core.stop.is_some()
            || core.handing_off.is_some()
            || (core.writing() && K::needs_committed(front))
        {
            break;
        }
        if let Some(m) = core.deferred.pop_front() {
            kind.handle(core, m).await;
        }
    }
    Ok(())
}

/// Stores the state at the current offset (fenced by the epoch) and trims the journal.
async fn snapshot<K: RoomKind>(kind: &K, core: &mut Core<K>) {
    core.snapshot_wanted = false;
    let offset = kind.offset();
    if core
        .durable
        .snapshot(&core.ctx, offset, kind.snapshot())
        .await
        .is_err()
    {
        core.stop(Stop::Fenced);
    }
}
