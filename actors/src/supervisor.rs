//! The root supervisor of every room on this node. It starts rooms on demand and, when one
//! panics, restarts it from its snapshot and journal with the same roster of connections, which
//! are then told to resync. A room that keeps crashing is given up on after
//! [`MAX_RESTARTS`] within [`RESTART_WINDOW`], so a poisoned journal cannot spin a core.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use signaling::RoomKey;

use crate::room::core::{RoomActor, RoomArgs, RoomKind, RoomMsg};
use crate::room::{RoomContext, Roster, RouterError, StartError};
use crate::session::{SessionMsg, SessionRoom};
use crate::workspace::{WorkspaceMsg, WorkspaceRoom};

/// Restarts allowed within [`RESTART_WINDOW`].
pub const MAX_RESTARTS: usize = 5;
/// The window restarts are counted in.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// A running room's actor, whatever its kind.
#[derive(Clone)]
pub enum RoomRef {
    /// A workspace room.
    Workspace(ActorRef<RoomMsg<WorkspaceMsg>>),
    /// A conference session room.
    Session(ActorRef<RoomMsg<SessionMsg>>),
}

impl RoomRef {
    /// The actor, untyped: its id, and stopping it.
    pub fn cell(&self) -> ActorCell {
        match self {
            RoomRef::Workspace(a) => a.get_cell(),
            RoomRef::Session(a) => a.get_cell(),
        }
    }
}

/// A running room as the router knows it.
#[derive(Clone)]
pub struct RoomEntry {
    /// The actor.
    pub actor: RoomRef,
    /// Its joined connections (survives restarts).
    pub roster: Roster,
    /// Messages sent to it and not yet handled.
    pub depth: Arc<AtomicUsize>,
}

/// What the router and the supervisor share: the running rooms and the rooms' services.
pub struct Shared {
    pub(crate) rooms: DashMap<RoomKey, RoomEntry>,
    pub(crate) ctx: Arc<RoomContext>,
    /// The node is draining: no room starts here any more.
    pub(crate) draining: std::sync::atomic::AtomicBool,
}

/// A message to the supervisor.
pub enum SupervisorMsg {
    /// Return the room's entry, starting the room if it is not running.
    Start {
        /// The room.
        key: RoomKey,
        /// The room's actor the sender found stopped: answer once its end has been handled
        /// (restarted with its roster after a crash, or removed), never by starting a second,
        /// empty room beside the one being restarted.
        dead: Option<ActorId>,
        /// The entry, or why the room cannot run.
        reply: RpcReplyPort<Result<RoomEntry, RouterError>>,
    },
}

/// The supervisor actor.
pub struct RoomSupervisor;

/// Which room each child actor is, and when each room last crashed.
pub struct SupervisorState {
    shared: Arc<Shared>,
    children: HashMap<ActorId, RoomKey>,
    crashes: HashMap<RoomKey, Vec<Instant>>,
    /// Starts waiting for a stopped actor's supervision event (see [`SupervisorMsg::Start`]).
    waiting: HashMap<ActorId, Vec<StartReply>>,
}

/// A `Start` waiting for an actor's end: its room and where to answer.
type StartReply = (RoomKey, RpcReplyPort<Result<RoomEntry, RouterError>>);

impl Actor for RoomSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        shared: Arc<Shared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            shared,
            children: HashMap::new(),
            crashes: HashMap::new(),
            waiting: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start { key, dead, reply } => {
                let current = state
                    .shared
                    .rooms
                    .get(&key)
                    .map(|e| e.actor.cell().get_id());
                match dead {
                    // Its mailbox closed before its supervision event was sent: wait for it.
                    Some(dead) if current == Some(dead) && state.children.contains_key(&dead) => {
                        state.waiting.entry(dead).or_default().push((key, reply));
                    }
                    _ => {
                        let result = state.entry(&myself, key).await;
                        let _ = reply.send(result);
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let ended = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(id) = state.children.remove(&cell.get_id()) {
                    tracing::debug!(room = %id, ?reason, "room stopped");
                    state
                        .shared
                        .rooms
                        .remove_if(&id, |_, e| e.actor.cell().get_id() == cell.get_id());
                }
                Some(cell.get_id())
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(id) = state.children.remove(&cell.get_id()) {
                    tracing::error!(room = %id, error = %err, "room crashed");
                    state.restart(&myself, id, cell.get_id()).await;
                }
                Some(cell.get_id())
            }
            _ => None,
        };
        // The starts that waited for this end get the room as it now stands.
        for (key, reply) in ended
            .and_then(|dead| state.waiting.remove(&dead))
            .unwrap_or_default()
        {
            let result = state.entry(&myself, key).await;
            let _ = reply.send(result);
        }
        state.update_gauge();
        Ok(())
    }
}

/// Starts a room of kind `K`, linked to the supervisor.
async fn spawn_kind<K: RoomKind>(
    supervisor: &ActorRef<SupervisorMsg>,
    args: RoomArgs,
) -> Result<ActorRef<RoomMsg<K::Msg>>, ractor::SpawnErr> {
    let actor = RoomActor::<K>::default();
    Actor::spawn_linked(None, actor, args, supervisor.get_cell())
        .await
        .map(|(actor, _)| actor)
}

impl SupervisorState {
    /// The room's running entry, starting the room if it is not running.
    async fn entry(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: RoomKey,
    ) -> Result<RoomEntry, RouterError> {
        match self.shared.rooms.get(&key).map(|e| e.clone()) {
            Some(entry) => Ok(entry),
            None => {
                self.spawn(
                    myself,
                    key,
                    Roster::default(),
                    Arc::new(AtomicUsize::new(0)),
                    false,
                )
                .await
            }
        }
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: RoomKey,
        roster: Roster,
        depth: Arc<AtomicUsize>,
        restarted: bool,
    ) -> Result<RoomEntry, RouterError> {
        let args = RoomArgs {
            key: id,
            ctx: self.shared.ctx.clone(),
            roster: roster.clone(),
            depth: depth.clone(),
            restarted,
        };
        let spawned = match id {
            RoomKey::Workspace(_) => spawn_kind::<WorkspaceRoom>(myself, args)
                .await
                .map(RoomRef::Workspace),
            RoomKey::Session(_) => spawn_kind::<SessionRoom>(myself, args)
                .await
                .map(RoomRef::Session),
        };
        let result = match spawned {
            Ok(actor) => {
                self.children.insert(actor.cell().get_id(), id);
                let entry = RoomEntry {
                    actor,
                    roster,
                    depth,
                };
                self.shared.rooms.insert(id, entry.clone());
                Ok(entry)
            }
            Err(ractor::SpawnErr::StartupFailed(e)) => match e.downcast_ref::<StartError>() {
                Some(StartError::NotFound) => Err(RouterError::NotFound),
                _ => {
                    tracing::error!(room = %id, error = %e, "room failed to start");
                    Err(RouterError::Unavailable(e.to_string()))
                }
            },
            Err(e) => Err(RouterError::Unavailable(e.to_string())),
        };
        self.update_gauge();
        result
    }

    /// Restarts a crashed room with its roster, unless it crashes too often.
    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, id: RoomKey, dead: ActorId) {
        let Some((_, entry)) = self
            .shared
            .rooms
            .remove_if(&id, |_, e| e.actor.cell().get_id() == dead)
        else {
            return;
        };
        let crashes = self.crashes.entry(id).or_default();
        crashes.retain(|t| t.elapsed() < RESTART_WINDOW);
        crashes.push(Instant::now());
        if crashes.len() > MAX_RESTARTS {
            tracing::error!(room = %id, "room crashes too often; not restarting until next use");
            // A crashed room never ran its stop: give its lease up for it.
            if let Some(cluster) = self.shared.ctx.cluster.clone() {
                tokio::spawn(async move { cluster.release_lease(&id.to_string()).await });
            }
            return;
        }
        self.shared.ctx.metrics.room_restarts.increment(1);
        // Messages that died with the old mailbox answered themselves (see `ReplyTo`).
        entry.depth.store(0, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self
            .spawn(myself, id, entry.roster, entry.depth, true)
            .await
        {
            tracing::error!(room = %id, error = %e, "restarting room failed");
        }
    }

    fn update_gauge(&self) {
        self.shared
            .ctx
            .metrics
            .rooms_active
            .set(self.shared.rooms.len() as f64);
    }
}
