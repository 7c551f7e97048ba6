//! The workspace room actor: wires [`WorkspaceMsg`]s to the pure [`WorkspaceState`] and
//! [`Sessions`], the journal, snapshots and fan-out.
//!
//! A durable write goes decide -> journal append (awaited) -> apply -> fan-out -> reply, so no
//! client hears of an event that is not on disk. A room that panics is restarted by the
//! supervisor from snapshot + journal; the connections it had (kept in the shared roster) are
//! re-attached and told to `resync`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::Utc;
use persistence::SideEffect;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use signaling::client::ClientMsg;
use signaling::server::{AckResult, Event, JoinMode, ServerMsg, durable_frame};
use signaling::workspace::PresenceStatus;
use signaling::{RoomKey, UserId, WorkspaceId};
use tokio::task::JoinHandle;

use super::messages::{Op, Reply, ReplyTo, RoomError, WorkspaceMsg};
use super::state::WorkspaceState;
use crate::conn::{Class, ConflationKey, ConnHandle, ConnId, WireFrame};
use crate::room::catchup::CatchUp;
use crate::room::durable::{AppendError, Durable};
use crate::room::{PendingJoin, RoomContext, Roster, Sessions, StartError, Tail, depth_down};

/// The actor. Holds nothing: all mutable state is [`Room`].
pub struct WorkspaceRoom;

/// Start-up arguments (the supervisor passes the same ones again on restart).
pub struct RoomArgs {
    /// The workspace.
    pub id: WorkspaceId,
    /// Shared services.
    pub ctx: Arc<RoomContext>,
    /// The connections to re-attach after a crash.
    pub roster: Roster,
    /// Messages sent but not yet handled.
    pub depth: Arc<AtomicUsize>,
    /// True when restarting after a crash: members are told to resync.
    pub restarted: bool,
}

/// A running room's state.
pub struct Room {
    /// The journal key, epoch and snapshot bookkeeping.
    durable: Durable,
    board: WorkspaceState,
    sessions: Sessions,
    /// The latest durable frames and the snapshot frame, in memory.
    tail: Tail,
    last_activity: Instant,
    deleted: bool,
    restarted: bool,
    roster: Roster,
    depth: Arc<AtomicUsize>,
    /// Joins handed to catch-up tasks and not back yet: the room does not stop meanwhile.
    catching_up: Arc<AtomicUsize>,
    ticker: Option<JoinHandle<()>>,
    ctx: Arc<RoomContext>,
}

impl Actor for WorkspaceRoom {
    type Msg = WorkspaceMsg;
    type State = Room;
    type Arguments = RoomArgs;

    #[tracing::instrument(skip_all, fields(room = %args.id))]
    async fn pre_start(
        &self,
        myself: ActorRef<WorkspaceMsg>,
        args: RoomArgs,
    ) -> Result<Room, ActorProcessingErr> {
        let mut room = Room::load(args).await?;
        room.ticker = Some(myself.send_interval(room.ctx.config.tick, || WorkspaceMsg::Tick));
        Ok(room)
    }

    async fn post_start(
        &self,
        _myself: ActorRef<WorkspaceMsg>,
        room: &mut Room,
    ) -> Result<(), ActorProcessingErr> {
        if room.restarted {
            room.reattach();
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WorkspaceMsg>,
        room: &mut Room,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = room.ticker.take() {
            t.abort();
        }
        if !room.deleted {
            room.snapshot().await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkspaceMsg>,
        msg: WorkspaceMsg,
        room: &mut Room,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, WorkspaceMsg::Tick) {
            let depth = depth_down(&room.depth);
            room.ctx.metrics.mailbox_depth.record(depth as f64);
            room.last_activity = Instant::now();
        }
        match msg {
            WorkspaceMsg::Client { reply, cmd } => room.on_client(&myself, reply, cmd).await,
            WorkspaceMsg::Resume {
                reply,
                pending,
                after,
                replayed,
            } => room.resume(&myself, reply, after, replayed, Some(pending)),
            WorkspaceMsg::Disconnected(conn) => room.drop_session(conn),
            WorkspaceMsg::Call { user, op, reply } => {
                let result = room.execute(user, op).await;
                let _ = reply.send(result);
            }
            WorkspaceMsg::Tick => room.tick().await,
            WorkspaceMsg::Crash => {
                if room.ctx.config.fault_injection {
                    panic!("fault injection: room {} told to crash", room.board.id);
                }
            }
        }
        if room.deleted {
            myself.stop(Some("workspace deleted".into()));
        } else if room.should_stop() {
            myself.stop(Some("idle".into()));
        }
        Ok(())
    }
}

impl Room {
    /// Claims the room's epoch, then rebuilds its state: the snapshot, the journal after it, and
    /// the membership table (authoritative for who belongs).
    async fn load(args: RoomArgs) -> Result<Room, StartError> {
        let RoomArgs {
            id,
            ctx,
            roster,
            depth,
            restarted,
        } = args;
        let store = &ctx.store;
        let key = RoomKey::Workspace(id).to_string();
        let ws = store.workspace(id).await?.ok_or(StartError::NotFound)?;
        let (durable, mut board) = Durable::open(
            &ctx,
            key,
            || WorkspaceState::new(id, ws.name.clone()),
            |b: &WorkspaceState| b.offset,
            |b: &mut WorkspaceState, offset, e: &Event| b.apply(offset, e),
        )
        .await?;
        board.name = ws.name;
        board.members = store
            .members(id)
            .await?
            .into_iter()
            .map(|m| (m.user_id, m))
            .collect();
        tracing::info!(
            epoch = durable.epoch(),
            offset = board.offset,
            tasks = board.tasks.len(),
            restarted,
            "room loaded"
        );
        Ok(Room {
            durable,
            board,
            sessions: Sessions::default(),
            tail: Tail::new(ctx.config.replay_buffer),
            last_activity: Instant::now(),
            deleted: false,
            restarted,
            roster,
            depth,
            catching_up: Arc::default(),
            ticker: None,
            ctx,
        })
    }

    /// After a crash: re-attach the connections that were joined and tell them to resync.
    fn reattach(&mut self) {
        let conns: Vec<ConnHandle> = lock(&self.roster).values().cloned().collect();
        let frame = WireFrame::text(
            ServerMsg::Resync {
                workspace_id: self.board.id,
                offset: self.board.offset,
            }
            .to_json(),
        );
        for conn in conns {
            if conn.is_closed() || self.board.role(conn.user()).is_err() {
                lock(&self.roster).remove(&conn.id());
                conn.mark_left(RoomKey::Workspace(self.board.id));
                continue;
            }
            conn.push(frame.clone(), Class::MustDeliver);
            self.sessions.join(conn);
        }
    }

    async fn on_client(&mut self, myself: &ActorRef<WorkspaceMsg>, reply: ReplyTo, cmd: ClientMsg) {
        match cmd {
            ClientMsg::JoinWorkspace(join) => {
                self.resume(myself, reply, join.last_offset, 0, None);
            }
            _ if !self.sessions.is_joined(reply.conn().id()) => reply.error(&RoomError::NotJoined),
            cmd => {
                let conn = reply.conn().clone();
                let result = self.run_joined(&conn, cmd).await;
                self.answer(reply, result);
            }
        }
    }

    /// A command from a joined connection.
    async fn run_joined(
        &mut self,
        conn: &ConnHandle,
        cmd: ClientMsg,
    ) -> Result<Option<Reply>, RoomError> {
        let user = conn.user();
        match cmd {
            // Handled by `on_client` before a session is required.
            ClientMsg::JoinWorkspace(_) => Ok(None),
            ClientMsg::LeaveWorkspace(_) => {
                self.drop_session(conn.id());
                Ok(None)
            }
            ClientMsg::PresenceUpdate(p) => {
                if self.sessions.set_status(user, p.status) {
                    self.broadcast_presence(user, p.status, None);
                }
                Ok(None)
            }
            ClientMsg::Typing(t) => {
                let frame = ServerMsg::Typing {
                    workspace_id: self.board.id,
                    user_id: user,
                    task_id: t.task_id,
                };
                self.fan_out(
                    WireFrame::text(frame.to_json()),
                    Class::Droppable,
                    Some(conn.id()),
                );
                Ok(None)
            }
            ClientMsg::Broadcast(b) => {
                let frame = ServerMsg::Broadcast {
                    workspace_id: self.board.id,
                    from: user,
                    event: &b.event,
                    data: &b.data,
                };
                let class = if b.droppable {
                    Class::Droppable
                } else {
                    Class::MustDeliver
                };
                self.fan_out(WireFrame::text(frame.to_json()), class, None);
                Ok(None)
            }
            ClientMsg::TaskCreate(c) => self.execute(user, Op::CreateTask(c.task)).await.map(Some),
            ClientMsg::TaskUpdate(u) => {
                let op = Op::UpdateTask {
                    task_id: u.task_id,
                    base_version: Some(u.base_version),
                    changes: u.changes,
                };
                self.execute(user, op).await.map(Some)
            }
            ClientMsg::TaskDelete(d) => self
                .execute(user, Op::DeleteTask(d.task_id))
                .await
                .map(Some),
        }
    }

    /// Answers a WebSocket command; a conflict also sends `conflict_detected` with the details.
    fn answer(&self, reply: ReplyTo, result: Result<Option<Reply>, RoomError>) {
        match result {
            Ok(Some(Reply::Task(task, Some(offset)))) => reply.ack(Some(AckResult::Task {
                task: &task,
                offset,
            })),
            Ok(Some(Reply::Done(offset))) => reply.ack(Some(AckResult::Offset { offset })),
            Ok(_) => reply.ack(None),
            Err(err) => {
                if let RoomError::Conflict {
                    current,
                    base_version,
                    fields,
                } = &err
                {
                    let frame = ServerMsg::ConflictDetected {
                        workspace_id: self.board.id,
                        task_id: current.id,
                        base_version: *base_version,
                        current,
                        fields: fields.clone(),
                    };
                    reply
                        .conn()
                        .push(WireFrame::text(frame.to_json()), Class::MustDeliver);
                }
                reply.error(&err);
            }
        }
    }

    /// Joins a connection (a `join_workspace`, or a join coming back from a catch-up task with
    /// its `pending` place): brings it up to date, then acks. A client within a page of the head
    /// is replayed here from memory; one further behind is handed to a [`CatchUp`] task that
    /// pages the journal at the client's pace and gives the join back; one behind by more than
    /// the replay budget, or with no `last_offset`, gets a snapshot. A connection already joined
    /// (rejoining to catch up after a `resync`) is never handed out, since live events already
    /// flow to it: it gets what memory holds, or a snapshot.
    fn resume(
        &mut self,
        myself: &ActorRef<WorkspaceMsg>,
        reply: ReplyTo,
        after: Option<u64>,
        replayed: u64,
        pending: Option<PendingJoin>,
    ) {
        let conn = reply.conn().clone();
        let key = RoomKey::Workspace(self.board.id);
        if pending.is_none() && conn.is_pending(key) {
            return reply.error(&RoomError::JoinInProgress);
        }
        let role = match self.board.role(conn.user()) {
            Ok(role) => role,
            Err(e) => return reply.error(&e),
        };
        if conn.is_closed() {
            return; // Gone while it was caught up: nothing to join, no one to answer.
        }
        let head = self.board.offset;
        let joined = self.sessions.is_joined(conn.id());
        let (mode, replayed) = match after.filter(|&n| n <= head) {
            Some(n) if replayed + (head - n) > self.ctx.config.replay_limit => {
                self.send_snapshot(&conn)
            }
            Some(n) => match self.tail.since(head, n, &conn) {
                Some(frames) => {
                    let count = frames.len() as u64;
                    for f in frames {
                        conn.push(f, Class::MustDeliver);
                    }
                    (JoinMode::Replay, replayed + count)
                }
                None if joined => self.send_snapshot(&conn),
                None => {
                    let pending = match pending {
                        Some(p) => p,
                        None => match PendingJoin::start(&conn, key, &self.catching_up) {
                            Some(p) => p,
                            None => return reply.error(&RoomError::JoinInProgress),
                        },
                    };
                    let workspace = self.board.id;
                    let catch_up = CatchUp {
                        room: myself.clone(),
                        depth: self.depth.clone(),
                        store: self.ctx.store.clone(),
                        permits: self.ctx.catchups.clone(),
                        key: self.durable.key().to_owned(),
                        conn: conn.clone(),
                        frame: Box::new(move |seq, event| {
                            WireFrame::text(durable_frame(workspace, seq, event))
                        }),
                        resume: Box::new(move |after, replayed| WorkspaceMsg::Resume {
                            reply,
                            pending,
                            after,
                            replayed,
                        }),
                        after: n,
                        target: head,
                        replayed,
                    };
                    tokio::spawn(catch_up.run());
                    return;
                }
            },
            None => self.send_snapshot(&conn),
        };
        let user = conn.user();
        conn.mark_joined(key);
        drop(pending);
        lock(&self.roster).insert(conn.id(), conn.clone());
        let conn_id = conn.id();
        if self.sessions.join(conn) {
            // The joiner learns who is present from the ack; the others hear of the joiner.
            self.broadcast_presence(user, PresenceStatus::Online, Some(conn_id));
        }
        reply.ack(Some(AckResult::Joined {
            workspace_id: self.board.id,
            offset: head,
            mode,
            replayed,
            role,
            presence: self.sessions.presence(),
        }));
    }

    fn send_snapshot(&mut self, conn: &ConnHandle) -> (JoinMode, u64) {
        let board = &self.board;
        let frame = self.tail.snapshot(board.offset, || {
            WireFrame::text(ServerMsg::Snapshot(board.view()).to_json())
        });
        conn.push(frame, Class::MustDeliver);
        (JoinMode::Snapshot, 0)
    }

    /// Runs an operation shared by REST and WebSocket.
    #[tracing::instrument(skip_all, fields(room = %self.board.id))]
    async fn execute(&mut self, user: UserId, op: Op) -> Result<Reply, RoomError> {
        let now = Utc::now();
        let ws = self.board.id;
        match op {
            Op::Describe => {
                let role = self.board.role(user)?;
                Ok(Reply::Workspace {
                    name: self.board.name.clone(),
                    role,
                    members: self.board.members_in_order().into_iter().cloned().collect(),
                    offset: self.board.offset,
                })
            }
            Op::ListTasks => {
                self.board.role(user)?;
                Ok(Reply::Tasks(
                    self.board.tasks_in_order().into_iter().cloned().collect(),
                ))
            }
            Op::GetTask(id) => {
                self.board.role(user)?;
                Ok(Reply::Task(self.board.task(id)?.clone(), None))
            }
            Op::CreateTask(draft) => {
                let event = self.board.decide_create(user, draft, now)?;
                self.commit_task(event).await
            }
            Op::UpdateTask {
                task_id,
                base_version,
                changes,
            } => {
                let event = self
                    .board
                    .decide_update(user, task_id, base_version, changes, now)?;
                self.commit_task(event).await
            }
            Op::DeleteTask(id) => {
                let event = self.board.decide_delete(user, id)?;
                self.commit(event, None).await.map(Reply::Done)
            }
            Op::AddMember(member) => {
                let effect = SideEffect::UpsertMember {
                    workspace: ws,
                    user: member.user_id,
                    role: member.role,
                    by: user,
                };
                let event = self.board.decide_add_member(user, member)?;
                self.commit(event, Some(effect)).await.map(Reply::Done)
            }
            Op::SetRole { user: target, role } => {
                let event = self.board.decide_set_role(user, target, role)?;
                let effect = SideEffect::UpsertMember {
                    workspace: ws,
                    user: target,
                    role,
                    by: user,
                };
                self.commit(event, Some(effect)).await.map(Reply::Done)
            }
            Op::RemoveMember(target) => {
                let event = self.board.decide_remove_member(user, target)?;
                let effect = SideEffect::RemoveMember {
                    workspace: ws,
                    user: target,
                };
                let offset = self.commit(event, Some(effect)).await?;
                for conn in self.sessions.conns_of(target) {
                    self.drop_session(conn);
                }
                Ok(Reply::Done(offset))
            }
            Op::Rename(name) => {
                let event = self.board.decide_rename(user, name)?;
                let Event::WorkspaceRenamed { name, .. } = &event else {
                    return Err(RoomError::Unavailable);
                };
                let effect = SideEffect::RenameWorkspace {
                    workspace: ws,
                    name: name.clone(),
                };
                self.commit(event, Some(effect)).await.map(Reply::Done)
            }
            Op::Delete => {
                self.board.check_delete(user)?;
                // Boxed for the reason given in `Durable::snapshot`.
                Box::pin(self.ctx.store.delete_workspace(ws))
                    .await
                    .map_err(|e| {
                        tracing::error!(room = %ws, error = %e, "deleting the workspace failed");
                        RoomError::Unavailable
                    })?;
                self.deleted = true;
                let frame =
                    WireFrame::text(ServerMsg::WorkspaceDeleted { workspace_id: ws }.to_json());
                self.fan_out(frame, Class::MustDeliver, None);
                for conn in self.sessions.conns() {
                    conn.mark_left(RoomKey::Workspace(ws));
                }
                lock(&self.roster).clear();
                Ok(Reply::Done(self.board.offset))
            }
        }
    }

    /// Commits a task create or update and answers with the task as it now is.
    async fn commit_task(&mut self, event: Event) -> Result<Reply, RoomError> {
        let id = match &event {
            Event::TaskCreated { task, .. } | Event::TaskUpdated { task, .. } => task.id,
            _ => return Err(RoomError::Unavailable),
        };
        let offset = self.commit(event, None).await?;
        let task = self.board.task(id)?.clone();
        Ok(Reply::Task(task, Some(offset)))
    }

    /// Journals one durable event (with its relational side effect), then applies and fans it
    /// out. Nothing changes when the append fails.
    async fn commit(&mut self, event: Event, effect: Option<SideEffect>) -> Result<u64, RoomError> {
        let offset = self.board.offset + 1;
        let json = serde_json::to_string(&event).map_err(|_| RoomError::Unavailable)?;
        match self
            .durable
            .append(&self.ctx, offset, json.clone(), effect)
            .await
        {
            Ok(()) => {}
            Err(AppendError::Fenced) => {
                tracing::error!(room = %self.board.id, epoch = self.durable.epoch(), "room fenced off by a newer owner; stopping");
                self.deleted = true; // no final snapshot: it would be refused too
                return Err(RoomError::Unavailable);
            }
            Err(AppendError::Failed(e)) => {
                tracing::error!(room = %self.board.id, error = %e, "journal append failed");
                return Err(RoomError::Unavailable);
            }
        }
        self.board.apply(offset, &event);
        let frame = WireFrame::text(durable_frame(self.board.id, offset, &json));
        self.tail.record(offset, frame.clone());
        self.fan_out(frame, Class::MustDeliver, None);
        if self
            .durable
            .snapshot_due(offset, self.ctx.config.snapshot_every, None)
        {
            self.snapshot().await;
        }
        Ok(offset)
    }

    fn broadcast_presence(&mut self, user: UserId, status: PresenceStatus, except: Option<ConnId>) {
        let frame = ServerMsg::UserPresence {
            workspace_id: self.board.id,
            user_id: user,
            status,
        };
        // Presence is a state: a member that falls behind needs only each user's latest.
        let key = ConflationKey {
            room: RoomKey::Workspace(self.board.id),
            topic: "presence",
            subject: user.as_uuid().as_u128(),
        };
        self.fan_out(
            WireFrame::text(frame.to_json()),
            Class::Conflatable(key),
            except,
        );
    }

    /// Hands a frame to every joined connection (but `except`); members that cannot keep up are
    /// dropped from the room.
    fn fan_out(&mut self, frame: WireFrame, class: Class, except: Option<ConnId>) {
        let out = self.sessions.fan_out(&frame, class, except);
        let metrics = &self.ctx.metrics;
        metrics.events_fanned_out.increment(out.queued);
        metrics.events_dropped.increment(out.dropped);
        metrics.events_conflated.increment(out.conflated);
        if !out.evicted.is_empty() {
            self.ctx
                .metrics
                .slow_consumers
                .increment(out.evicted.len() as u64);
            tracing::warn!(room = %self.board.id, count = out.evicted.len(), "closed slow consumers");
        }
        for id in out.evicted.into_iter().chain(out.gone) {
            self.drop_session(id);
        }
    }

    /// Forgets a connection; tells the room when its user went offline.
    fn drop_session(&mut self, id: ConnId) {
        lock(&self.roster).remove(&id);
        if let Some(conn) = self.sessions.get(id) {
            conn.mark_left(RoomKey::Workspace(self.board.id));
        }
        if let Some(user) = self.sessions.leave(id) {
            self.broadcast_presence(user, PresenceStatus::Offline, None);
        }
    }

    async fn tick(&mut self) {
        let interval = Some(self.ctx.config.snapshot_interval);
        if self
            .durable
            .snapshot_due(self.board.offset, u64::MAX, interval)
        {
            self.snapshot().await;
        }
    }

    fn should_stop(&self) -> bool {
        self.sessions.is_empty()
            && self.catching_up.load(Ordering::Relaxed) == 0
            && self.last_activity.elapsed() >= self.ctx.config.idle_timeout
    }

    /// Stores the state at the current offset (fenced by the epoch) and trims the journal.
    async fn snapshot(&mut self) {
        let offset = self.board.offset;
        if self
            .durable
            .snapshot(&self.ctx, offset, &self.board)
            .await
            .is_err()
        {
            self.deleted = true; // fenced off: nothing more may be written
        }
    }
}

/// Locks the roster. A poisoned lock only means another thread panicked while holding it; the
/// map itself is still consistent (every operation on it is a single insert or remove).
fn lock(roster: &Roster) -> std::sync::MutexGuard<'_, HashMap<ConnId, ConnHandle>> {
    roster
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
