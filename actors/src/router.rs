//! The one way to reach a room. [`Router::send`] finds the room's actor, starting it under the
//! supervisor on first use, and delivers the message; a room that stopped in between (idle, or
//! restarted after a crash) is looked up again.
//!
//! In a cluster, a client's command for a room that runs on another node (or that placement
//! puts there) goes over the link to that node ([`Links`]), which answers the client itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dashmap::DashMap;
use persistence::{Journal, Store};
use ractor::{Actor, ActorCell, ActorId, ActorRef, MessagingErr, RpcReplyPort};
use signaling::client::ClientMsg;
use signaling::{RoomKey, SessionId, UserId, WorkspaceId};
use tokio::sync::oneshot;

use crate::cluster::Cluster;
use crate::cluster::link::{Links, Place};
use crate::conn::ConnId;
use crate::metrics::RoomMetrics;
use crate::room::ReplyTo;
use crate::room::core::RoomMsg;
use crate::room::{MAX_CATCHUPS, RoomConfig, RoomContext, RouterError, depth_down};
use crate::session::state::SessionError;
use crate::session::{Caller, SessionMsg, SessionOp, SessionReply};
use crate::supervisor::{RoomEntry, RoomRef, RoomSupervisor, Shared, SupervisorMsg};
use crate::workspace::{Op, Reply, RoomError, WorkspaceMsg};

/// Finds, starts and messages rooms. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
    supervisor: ActorRef<SupervisorMsg>,
    links: Option<Arc<Links>>,
}

impl Router {
    /// Starts the room supervisor.
    ///
    /// # Errors
    /// The supervisor actor could not be spawned.
    pub async fn start(
        store: Store,
        journal: Journal,
        config: RoomConfig,
        metrics: RoomMetrics,
        links: Option<Arc<Links>>,
    ) -> Result<Router, RouterError> {
        let cluster: Option<Arc<Cluster>> = links.as_ref().map(|l| l.cluster().clone());
        let lost = cluster.as_ref().and_then(|c| c.lost_leases());
        let shared = Arc::new(Shared {
            rooms: DashMap::new(),
            ctx: Arc::new(RoomContext {
                store,
                journal,
                config,
                metrics,
                catchups: Arc::new(tokio::sync::Semaphore::new(MAX_CATCHUPS)),
                cluster,
            }),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        let (supervisor, _) = Actor::spawn(None, RoomSupervisor, shared.clone())
            .await
            .map_err(|e| RouterError::Unavailable(e.to_string()))?;
        if let Some(mut lost) = lost {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Some(room) = lost.recv().await {
                    // Its members resync, and find the room on the node that took it.
                    if let Some(key) = shared
                        .rooms
                        .iter()
                        .map(|e| *e.key())
                        .find(|k| k.to_string() == room)
                    {
                        hand_off_in(&shared, key, None);
                    }
                }
            });
        }
        Ok(Router {
            shared,
            supervisor,
            links,
        })
    }

    /// Delivers a message to a workspace's room, starting the room if needed.
    ///
    /// # Errors
    /// The workspace does not exist, or its room cannot be started; the message comes back (when
    /// it was not consumed) so that the caller can answer it.
    pub async fn send(
        &self,
        id: WorkspaceId,
        msg: WorkspaceMsg,
    ) -> Result<(), (RouterError, Option<WorkspaceMsg>)> {
        let sent = self.deliver(RoomKey::Workspace(id), RoomMsg::Kind(msg), |r| match r {
            RoomRef::Workspace(a) => Some(a),
            RoomRef::Session(_) => None,
        });
        kind_back(sent.await)
    }

    /// Delivers a message to a conference session's room, starting the room if needed.
    ///
    /// # Errors
    /// As [`Router::send`].
    pub async fn send_session(
        &self,
        id: SessionId,
        msg: SessionMsg,
    ) -> Result<(), (RouterError, Option<SessionMsg>)> {
        let sent = self.deliver(RoomKey::Session(id), RoomMsg::Kind(msg), |r| match r {
            RoomRef::Session(a) => Some(a),
            RoomRef::Workspace(_) => None,
        });
        kind_back(sent.await)
    }

    /// Hands a WebSocket command to the room it names, whatever its kind, here or on the node
    /// that runs it; the room answers on the connection (and so does this, when the room cannot
    /// be reached).
    /// `raw` is the command as the client sent it: it goes to another node as it is.
    pub async fn client(&self, reply: ReplyTo, cmd: ClientMsg, raw: &[u8]) {
        let key = cmd.room();
        if let Some(links) = &self.links
            && !self.shared.rooms.contains_key(&key)
        {
            match links.place_of(key).await {
                Ok(Place::Here) => {}
                Ok(Place::Node(node)) => return links.forward(&node, reply, key, raw).await,
                Err(e) => {
                    tracing::debug!(room = %key, error = %e, "where the room runs is unknown");
                    return drop(reply);
                }
            }
        }
        self.client_here(reply, cmd).await;
    }

    /// Hands a WebSocket command to its room on this node (a command another node forwarded).
    pub async fn client_here(&self, reply: ReplyTo, cmd: ClientMsg) {
        match cmd.room() {
            RoomKey::Workspace(id) => {
                let sent = self.send(id, WorkspaceMsg::Client { reply, cmd }).await;
                // Answer with the real reason (the `ReplyTo` would otherwise say `unavailable`).
                if let Err((err, Some(WorkspaceMsg::Client { reply, .. }))) = sent {
                    reply.error(&RoomError::from(err));
                }
            }
            RoomKey::Session(id) => {
                let sent = self
                    .send_session(id, SessionMsg::Client { reply, cmd })
                    .await;
                if let Err((err, Some(SessionMsg::Client { reply, .. }))) = sent {
                    reply.error(&SessionError::from(err));
                }
            }
        }
    }

    /// Runs a REST operation in a session's room and waits for the answer.
    ///
    /// # Errors
    /// The room's refusal; [`SessionError::NotFound`] for no such session;
    /// [`SessionError::Unavailable`] when it cannot be reached in time.
    pub async fn call_session(
        &self,
        id: SessionId,
        caller: Caller,
        op: SessionOp,
    ) -> Result<SessionReply, SessionError> {
        let (tx, rx) = oneshot::channel();
        let reply = RpcReplyPort::from(tx);
        self.send_session(id, SessionMsg::Call { caller, op, reply })
            .await
            .map_err(|(e, _)| SessionError::from(e))?;
        match tokio::time::timeout(self.shared.ctx.config.call_timeout, rx).await {
            Ok(Ok(result)) => result,
            _ => Err(SessionError::Unavailable),
        }
    }

    /// Tells a room to panic (fault injection, when the config allows it), starting it first
    /// if needed.
    ///
    /// # Errors
    /// The room does not exist or cannot be started.
    pub async fn crash(&self, key: RoomKey) -> Result<(), RouterError> {
        match key {
            RoomKey::Workspace(_) => self
                .deliver(key, RoomMsg::<WorkspaceMsg>::Crash, |r| match r {
                    RoomRef::Workspace(a) => Some(a),
                    RoomRef::Session(_) => None,
                })
                .await
                .map_err(|(e, _)| e),
            RoomKey::Session(_) => self
                .deliver(key, RoomMsg::<SessionMsg>::Crash, |r| match r {
                    RoomRef::Session(a) => Some(a),
                    RoomRef::Workspace(_) => None,
                })
                .await
                .map_err(|(e, _)| e),
        }
    }

    async fn deliver<M: ractor::Message>(
        &self,
        key: RoomKey,
        mut msg: M,
        actor_of: impl Fn(&RoomRef) -> Option<&ActorRef<M>>,
    ) -> Result<(), (RouterError, Option<M>)> {
        // The actor found stopped: only the supervisor may replace it, once it has seen how it
        // ended (a crashed room is restarted with its roster, whose members are told to resync).
        let mut dead = None;
        for _ in 0..3 {
            let entry = match self.shared.rooms.get(&key).map(|e| e.clone()) {
                Some(e) if Some(e.actor.cell().get_id()) != dead => e,
                _ if self.shared.draining.load(Ordering::Relaxed) => {
                    let why = "this node is draining; retry".to_owned();
                    return Err((RouterError::Unavailable(why), Some(msg)));
                }
                // Boxed: starting a room is rare, and its state would otherwise sit in every
                // connection's reader (this future is part of it) for the connection's life.
                _ => match Box::pin(self.start_room(key, dead)).await {
                    Ok(e) => e,
                    Err(e) => return Err((e, Some(msg))),
                },
            };
            let Some(actor) = actor_of(&entry.actor) else {
                return Err((RouterError::NotFound, Some(msg)));
            };
            entry.depth.fetch_add(1, Ordering::Relaxed);
            match actor.cast(msg) {
                Ok(()) => return Ok(()),
                Err(MessagingErr::SendErr(back)) => {
                    depth_down(&entry.depth);
                    msg = back;
                    dead = Some(actor.get_id());
                }
                // The message was consumed; a `ReplyTo` inside answered for itself as it dropped.
                Err(MessagingErr::ChannelClosed) => {
                    return Err((RouterError::Unavailable("room stopped".into()), None));
                }
                Err(MessagingErr::InvalidActorType) => {
                    return Err((RouterError::Unavailable("wrong actor type".into()), None));
                }
            }
        }
        Err((
            RouterError::Unavailable("room kept stopping".into()),
            Some(msg),
        ))
    }

    /// Runs an operation in a room and waits for the answer.
    ///
    /// # Errors
    /// The room's refusal, or [`RoomError::Unavailable`] when it cannot be reached in time.
    pub async fn call(&self, id: WorkspaceId, user: UserId, op: Op) -> Result<Reply, RoomError> {
        let (tx, rx) = oneshot::channel();
        let reply = RpcReplyPort::from(tx);
        self.send(id, WorkspaceMsg::Call { user, op, reply })
            .await
            .map_err(|(e, _)| RoomError::from(e))?;
        match tokio::time::timeout(self.shared.ctx.config.call_timeout, rx).await {
            Ok(Ok(result)) => result,
            _ => Err(RoomError::Unavailable),
        }
    }

    /// Tells a running room that a connection closed, here or on the node it runs on. A room
    /// that is not running has nothing to forget, so this never starts one.
    pub fn disconnected(&self, room: RoomKey, conn: ConnId) {
        if let Some(links) = &self.links {
            links.disconnected(room, conn);
        }
        self.disconnected_here(room, conn);
    }

    /// A connection is gone for good: the other nodes that knew it forget it.
    pub fn gone(&self, conn: ConnId) {
        if let Some(links) = &self.links {
            links.gone(conn);
        }
    }

    /// Tells a room running here that a connection was lost with its node.
    pub fn lost_here(&self, room: RoomKey, conn: ConnId) {
        self.tell_running(room, || RoomMsg::Lost(conn), || RoomMsg::Lost(conn));
    }

    /// Tells a room running here that a connection closed.
    pub fn disconnected_here(&self, room: RoomKey, conn: ConnId) {
        self.tell_running(
            room,
            || RoomMsg::Disconnected(conn),
            || RoomMsg::Disconnected(conn),
        );
    }

    /// Sends a core message to `room` if it runs here (never starting it), counted in its
    /// mailbox depth; the two builders make the same message for either kind.
    fn tell_running(
        &self,
        room: RoomKey,
        workspace: impl FnOnce() -> RoomMsg<WorkspaceMsg>,
        session: impl FnOnce() -> RoomMsg<SessionMsg>,
    ) {
        if let Some(e) = self.shared.rooms.get(&room) {
            e.depth.fetch_add(1, Ordering::Relaxed);
            let sent = match &e.actor {
                RoomRef::Workspace(a) => a.cast(workspace()).is_ok(),
                RoomRef::Session(a) => a.cast(session()).is_ok(),
            };
            if !sent {
                depth_down(&e.depth);
            }
        }
    }

    /// The rooms running here.
    pub fn rooms(&self) -> Vec<RoomKey> {
        self.shared.rooms.iter().map(|e| *e.key()).collect()
    }

    /// Hands a running room to another node (`to`, or wherever its members' next joins take
    /// it): see [`RoomMsg::HandOff`]. False if it does not run here.
    pub fn hand_off(&self, room: RoomKey, to: Option<String>) -> bool {
        hand_off_in(&self.shared, room, to)
    }

    /// Describes every room running here (those that answer within a second).
    pub async fn describe(&self) -> Vec<crate::room::core::RoomInfo> {
        let entries: Vec<RoomEntry> = self.shared.rooms.iter().map(|e| e.clone()).collect();
        let mut asked = Vec::with_capacity(entries.len());
        for e in entries {
            let (tx, rx) = oneshot::channel();
            let port = RpcReplyPort::from(tx);
            e.depth.fetch_add(1, Ordering::Relaxed);
            let sent = match &e.actor {
                RoomRef::Workspace(a) => a.cast(RoomMsg::Describe(port)).is_ok(),
                RoomRef::Session(a) => a.cast(RoomMsg::Describe(port)).is_ok(),
            };
            if sent {
                asked.push(rx);
            } else {
                depth_down(&e.depth);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut rooms = Vec::with_capacity(asked.len());
        for rx in asked {
            if let Ok(Ok(info)) = tokio::time::timeout_at(deadline, rx).await {
                rooms.push(info);
            }
        }
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    /// True once [`Router::drain`] began.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Drains this node: no room starts here any more, and every running room is handed to the
    /// node `next` names for it (its members elsewhere resync and continue there by offset).
    /// Returns when no room runs here, or after `timeout`.
    pub async fn drain(&self, next: impl Fn(RoomKey) -> Option<String>, timeout: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        for room in self.rooms() {
            self.hand_off(room, next(room));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.shared.rooms.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True when `room` runs on this node.
    pub fn runs(&self, room: RoomKey) -> bool {
        self.shared.rooms.contains_key(&room)
    }

    /// How many rooms are running.
    pub fn active_rooms(&self) -> usize {
        self.shared.rooms.len()
    }

    /// Stops every room, each writing its final snapshot, then the supervisor.
    pub async fn shutdown(&self, timeout: Duration) {
        let actors: Vec<ActorCell> = self.shared.rooms.iter().map(|e| e.actor.cell()).collect();
        let mut stopping = tokio::task::JoinSet::new();
        for actor in actors {
            stopping.spawn(async move {
                actor
                    .stop_and_wait(Some("shutdown".into()), Some(timeout))
                    .await
            });
        }
        while stopping.join_next().await.is_some() {}
        let _ = self.supervisor.stop_and_wait(None, Some(timeout)).await;
        self.shared.rooms.clear();
    }

    /// The room's entry from the supervisor, which starts the room if it is not running, or,
    /// given the actor found `dead`, answers after it has restarted or removed that one.
    async fn start_room(
        &self,
        key: RoomKey,
        dead: Option<ActorId>,
    ) -> Result<RoomEntry, RouterError> {
        let (tx, rx) = oneshot::channel();
        self.supervisor
            .cast(SupervisorMsg::Start {
                key,
                dead,
                reply: RpcReplyPort::from(tx),
            })
            .map_err(|e| RouterError::Unavailable(e.to_string()))?;
        match tokio::time::timeout(self.shared.ctx.config.call_timeout, rx).await {
            Ok(Ok(result)) => result,
            _ => Err(RouterError::Unavailable(
                "the supervisor did not answer".into(),
            )),
        }
    }
}

/// Tells `room`'s actor, if it runs, to hand off (see [`RoomMsg::HandOff`]).
fn hand_off_in(shared: &Shared, room: RoomKey, to: Option<String>) -> bool {
    let Some(e) = shared.rooms.get(&room).map(|e| e.clone()) else {
        return false;
    };
    e.depth.fetch_add(1, Ordering::Relaxed);
    let sent = match &e.actor {
        RoomRef::Workspace(a) => a.cast(RoomMsg::HandOff(to)).is_ok(),
        RoomRef::Session(a) => a.cast(RoomMsg::HandOff(to)).is_ok(),
    };
    if !sent {
        depth_down(&e.depth);
    }
    sent
}

/// A delivery's result with the kind's own message back (when it was not consumed).
fn kind_back<M>(
    sent: Result<(), (RouterError, Option<RoomMsg<M>>)>,
) -> Result<(), (RouterError, Option<M>)> {
    sent.map_err(|(e, back)| match back {
        Some(RoomMsg::Kind(m)) => (e, Some(m)),
        _ => (e, None),
    })
}
