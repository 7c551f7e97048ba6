//! The workspace room: a [`RoomKind`] that wires [`WorkspaceMsg`]s to the pure
//! [`WorkspaceState`] and [`Sessions`], with the journal, snapshots and the pipeline of appends
//! from [`Core`].
//!
//! A durable write goes decide -> apply -> journal append (queued; the room goes on deciding)
//! -> once committed, in offset order: fan-out -> reply. No client hears of an event that is
//! not on disk. A room that panics is restarted by the supervisor from snapshot + journal; the
//! connections it had (kept in the shared roster) are re-attached and told to `resync`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::Utc;
use persistence::{SideEffect, TaskRow};
use ractor::RpcReplyPort;
use signaling::client::ClientMsg;
use signaling::server::{AckResult, Event, JoinMode, ServerMsg, durable_frame};
use signaling::sync::{OpResult, OpStatus, SyncOp};
use signaling::workspace::PresenceStatus;
use signaling::{ErrorCode, RoomKey, TaskId, UserId, WorkspaceId};

use super::messages::{Op, Reply, ReplyTo, RoomError, WorkspaceMsg};
use super::state::{SyncDecision, WorkspaceState};
use crate::conn::{Class, ConflationKey, ConnHandle, ConnId, WireFrame};
use crate::room::catchup::CatchUp;
use crate::room::core::{Core, Outcome, Release, RoomKind, RoomMsg, Stop, in_order};
use crate::room::durable::Durable;
use crate::room::{PendingJoin, RoomContext, Roster, Sessions, StartError, Tail};

/// A workspace room's state (the rest is in its [`Core`]).
pub struct Room {
    board: WorkspaceState,
    sessions: Sessions,
    /// The latest durable frames and the snapshot frame, in memory.
    tail: Tail,
}

/// Where the answer of a write goes once it is committed.
enum Answer {
    /// A WebSocket command.
    Ws(ReplyTo),
    /// A REST call.
    Rest(RpcReplyPort<Result<Reply, RoomError>>),
    /// One operation of a sync batch: its result goes in its slot (the batch is answered once
    /// all are in).
    Batch {
        /// The batch's results.
        results: Arc<Mutex<Vec<OpResult>>>,
        /// This operation's slot.
        index: usize,
        /// Its result once committed (the offset is filled in).
        done: OpResult,
    },
}

impl RoomKind for Room {
    type Msg = WorkspaceMsg;
    type Snapshot = WorkspaceState;

    async fn load(
        ctx: &Arc<RoomContext>,
        key: RoomKey,
        _roster: &Roster,
    ) -> Result<(Room, Durable), StartError> {
        let RoomKey::Workspace(id) = key else {
            return Err(StartError::NotFound);
        };
        let store = &ctx.store;
        let ws = store.workspace(id).await?.ok_or(StartError::NotFound)?;
        let (durable, mut board) = Durable::open(
            ctx,
            key.to_string(),
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
        if !store.board_in_step(&key.to_string(), board.offset).await? {
            rebuild_index(store, &key.to_string(), durable.epoch(), &board).await?;
        }
        tracing::info!(
            epoch = durable.epoch(),
            offset = board.offset,
            tasks = board.tasks.len(),
            "room loaded"
        );
        let room = Room {
            board,
            sessions: Sessions::default(),
            tail: Tail::new(ctx.config.replay_buffer),
        };
        Ok((room, durable))
    }

    fn offset(&self) -> u64 {
        self.board.offset
    }

    fn snapshot(&self) -> &WorkspaceState {
        &self.board
    }

    fn needs_committed(msg: &WorkspaceMsg) -> bool {
        match msg {
            WorkspaceMsg::Client { cmd, .. } => matches!(cmd, ClientMsg::JoinWorkspace(_)),
            WorkspaceMsg::Resume { .. } => true,
            WorkspaceMsg::Call { op, .. } => matches!(
                op,
                Op::Describe
                    | Op::Snapshot
                    | Op::ListTasks
                    | Op::GetTask(_)
                    | Op::ListCategories
                    | Op::Delete
            ),
        }
    }

    async fn handle(&mut self, core: &mut Core<Room>, msg: WorkspaceMsg) {
        match msg {
            WorkspaceMsg::Client { reply, cmd } => self.on_client(core, reply, cmd).await,
            WorkspaceMsg::Resume {
                reply,
                pending,
                after,
                replayed,
            } => self.resume(core, reply, after, replayed, Some(pending)),
            WorkspaceMsg::Call { user, op, reply } => {
                self.execute(core, user, op, Answer::Rest(reply)).await;
            }
        }
    }

    fn disconnected(&mut self, core: &mut Core<Room>, conn: ConnId) {
        self.drop_session(core, conn);
    }

    fn lost(&mut self, core: &mut Core<Room>, conn: ConnId) {
        core.roster().remove(&conn);
        if let Some(c) = self.sessions.get(conn) {
            c.mark_left(RoomKey::Workspace(self.board.id));
        }
        let until = Instant::now() + core.ctx.config.presence_grace;
        if let Some(user) = self.sessions.lose(conn, until) {
            self.broadcast_presence(core, user, PresenceStatus::Suspect, None);
        }
    }

    /// After a crash: re-attach the connections that were joined and tell them to resync.
    fn restarted(&mut self, core: &mut Core<Room>) {
        let conns: Vec<ConnHandle> = core.roster().values().cloned().collect();
        let frame =
            crate::room::resync_frame(RoomKey::Workspace(self.board.id), Some(self.board.offset));
        for conn in conns {
            if conn.is_closed() || self.board.role(conn.user()).is_err() {
                core.roster().remove(&conn.id());
                conn.mark_left(RoomKey::Workspace(self.board.id));
                continue;
            }
            conn.push(frame.clone(), Class::MustDeliver);
            self.sessions.join(conn);
        }
    }

    fn tick(&mut self, core: &mut Core<Room>) {
        for user in self.sessions.expire(Instant::now()) {
            self.broadcast_presence(core, user, PresenceStatus::Offline, None);
        }
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The activity feed's entry for an event (applied at `offset`).
fn activity_of(ws: WorkspaceId, seq: u64, event: &Event) -> persistence::ActivityRow {
    use serde_json::json;
    let (kind, actor, subject, detail) = match event {
        Event::TaskCreated { task, by, .. } => (
            "task_created",
            *by,
            Some(task.id.as_uuid()),
            json!({"title": task.title}),
        ),
        Event::TaskUpdated {
            task, changes, by, ..
        } => {
            let fields = signaling::server::changed_fields(changes);
            let completed = task.completed
                && task.completed_at == Some(task.updated_at)
                && fields.iter().any(|f| *f == "completed" || *f == "status");
            (
                if completed {
                    "task_completed"
                } else {
                    "task_updated"
                },
                *by,
                Some(task.id.as_uuid()),
                json!({"title": task.title, "fields": fields}),
            )
        }
        Event::TaskDeleted {
            task_id,
            subtasks,
            by,
            ..
        } => (
            "task_deleted",
            *by,
            Some(task_id.as_uuid()),
            json!({"subtasks": subtasks.len()}),
        ),
        Event::SyncConflicted { task_id, by, sync } => (
            "sync_conflicted",
            *by,
            Some(task_id.as_uuid()),
            json!({"op_id": sync.op_id, "conflicts": sync.conflicts.len()}),
        ),
        Event::ConflictResolved {
            conflict_id,
            field,
            choice,
            task,
            by,
        } => (
            "conflict_resolved",
            *by,
            task.as_ref().map(|t| t.id.as_uuid()),
            json!({"conflict_id": conflict_id, "field": field, "choice": choice}),
        ),
        Event::CategoryCreated { category, by } => (
            "category_created",
            *by,
            Some(category.id.as_uuid()),
            json!({"name": category.name}),
        ),
        Event::CategoryUpdated { category, by, .. } => (
            "category_updated",
            *by,
            Some(category.id.as_uuid()),
            json!({"name": category.name}),
        ),
        Event::CategoryDeleted {
            category_id,
            tasks,
            by,
            ..
        } => (
            "category_deleted",
            *by,
            Some(category_id.as_uuid()),
            json!({"tasks": tasks.len()}),
        ),
        Event::MemberJoined { member, by } => (
            "member_joined",
            *by,
            Some(member.user_id.as_uuid()),
            json!({"name": member.name, "role": member.role}),
        ),
        Event::MemberUpdated { user_id, role, by } => (
            "member_updated",
            *by,
            Some(user_id.as_uuid()),
            json!({"role": role}),
        ),
        Event::MemberLeft { user_id, by } => {
            ("member_left", *by, Some(user_id.as_uuid()), json!({}))
        }
        Event::WorkspaceRenamed { name, by } => {
            ("workspace_renamed", *by, None, json!({"name": name}))
        }
    };
    persistence::ActivityRow {
        workspace: ws,
        seq,
        at: Utc::now(),
        actor,
        kind: kind.to_owned(),
        subject,
        detail,
    }
}

/// Rewrites a workspace's board index from its state (a room journaled before the index existed,
/// or whose index fell behind).
async fn rebuild_index(
    store: &persistence::Store,
    room: &str,
    epoch: u64,
    board: &WorkspaceState,
) -> Result<(), StartError> {
    let started = Instant::now();
    let corrupt = |e: serde_json::Error| persistence::StoreError::Corrupt(e.to_string());
    let tasks = board
        .tasks
        .values()
        .map(|t| TaskRow::new(board.id, t.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let categories = board
        .categories
        .values()
        .map(|c| serde_json::to_string(c).map(|doc| (c.clone(), doc)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt)?;
    store
        .rebuild_board(room, epoch, board.offset, board.id, &tasks, &categories)
        .await?;
    tracing::info!(
        tasks = tasks.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "board index rebuilt"
    );
    Ok(())
}

impl Answer {
    /// Sends a write's result: over WebSocket an `ack` (or `error`, with `conflict_detected`
    /// first for a conflict), over REST the reply.
    fn send(self, workspace: WorkspaceId, result: Result<Reply, RoomError>) {
        match self {
            Answer::Rest(port) => {
                let _ = port.send(result);
            }
            Answer::Ws(reply) => answer_ws(workspace, reply, result.map(Some)),
            Answer::Batch {
                results,
                index,
                mut done,
            } => {
                let result = match result {
                    Ok(reply) => {
                        done.offset = match reply {
                            Reply::Task(_, offset) | Reply::Category(_, offset) => offset,
                            Reply::Done(offset) => Some(offset),
                            _ => None,
                        };
                        done
                    }
                    Err(e) => OpResult::refused(&done.op_id, e.code(), e.to_string()),
                };
                let mut results = results.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(slot) = results.get_mut(index) {
                    *slot = result;
                }
            }
        }
    }
}

/// Answers a WebSocket command; a conflict also sends `conflict_detected` with the details.
fn answer_ws(workspace: WorkspaceId, reply: ReplyTo, result: Result<Option<Reply>, RoomError>) {
    match result {
        Ok(Some(Reply::Task(task, Some(offset)))) => reply.ack(Some(AckResult::Task {
            task: &task,
            offset,
        })),
        Ok(Some(Reply::Category(category, Some(offset)))) => {
            reply.ack(Some(AckResult::Category {
                category: &category,
                offset,
            }));
        }
        Ok(Some(Reply::Done(offset))) => reply.ack(Some(AckResult::Offset { offset })),
        Ok(Some(Reply::Synced { results, offset })) => {
            reply.ack(Some(AckResult::Synced {
                results: &results,
                offset,
            }));
        }
        Ok(_) => reply.ack(None::<AckResult<'_>>),
        Err(err) => {
            if let RoomError::Conflict {
                current,
                base_version,
                fields,
            } = &err
            {
                let frame = ServerMsg::ConflictDetected {
                    workspace_id: workspace,
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

impl Room {
    async fn on_client(&mut self, core: &mut Core<Room>, reply: ReplyTo, cmd: ClientMsg) {
        if let ClientMsg::JoinWorkspace(join) = cmd {
            return self.resume(core, reply, join.last_offset, 0, None);
        }
        let member = reply.member();
        if !self.sessions.is_joined(member.conn) {
            return reply.error(&RoomError::NotJoined);
        }
        let user = member.user;
        let op = match cmd {
            cmd @ (ClientMsg::LeaveWorkspace(_)
            | ClientMsg::PresenceUpdate(_)
            | ClientMsg::Typing(_)
            | ClientMsg::Broadcast(_)) => {
                return in_order(self, core, move |room, core| {
                    room.ephemeral(core, reply, cmd);
                });
            }
            ClientMsg::TaskCreate(c) => Op::CreateTask(c.task),
            ClientMsg::TaskUpdate(u) => Op::UpdateTask {
                task_id: u.task_id,
                base_version: Some(u.base_version),
                changes: u.changes,
            },
            ClientMsg::TaskDelete(d) => Op::DeleteTask(d.task_id),
            ClientMsg::CategoryCreate(c) => Op::CreateCategory(c.category),
            ClientMsg::CategoryUpdate(u) => Op::UpdateCategory {
                category_id: u.category_id,
                changes: u.changes,
            },
            ClientMsg::CategoryDelete(d) => Op::DeleteCategory(d.category_id),
            ClientMsg::SyncPush(p) => Op::SyncPush(signaling::sync::parse_ops(&p.ops)),
            // The router sends a workspace only workspace commands.
            _ => return reply.error(&RoomError::Invalid("not a workspace command".into())),
        };
        self.execute(core, user, op, Answer::Ws(reply)).await;
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
        core: &mut Core<Room>,
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
        let member = reply.member();
        let role = match self.board.role(member.user) {
            Ok(role) => role,
            Err(e) => return reply.error(&e),
        };
        if conn.is_closed() {
            return; // Gone while it was caught up: nothing to join, no one to answer.
        }
        let head = self.board.offset;
        let joined = self.sessions.is_joined(member.conn);
        let (mode, replayed) = match after.filter(|&n| n <= head) {
            Some(n) if replayed + (head - n) > core.ctx.config.replay_limit => {
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
                        None => match PendingJoin::start(&conn, key, &core.catching_up) {
                            Some(p) => p,
                            None => return reply.error(&RoomError::JoinInProgress),
                        },
                    };
                    let workspace = self.board.id;
                    let catch_up = CatchUp {
                        room: core.myself.clone(),
                        depth: core.depth.clone(),
                        store: core.ctx.store.clone(),
                        permits: core.ctx.catchups.clone(),
                        key: core.durable.key().to_owned(),
                        conn: conn.clone(),
                        frame: Box::new(move |seq, event| {
                            WireFrame::text(durable_frame(workspace, seq, event))
                        }),
                        resume: Box::new(move |after, replayed| {
                            RoomMsg::Kind(WorkspaceMsg::Resume {
                                reply,
                                pending,
                                after,
                                replayed,
                            })
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
        let user = member.user;
        conn.mark_joined(key);
        drop(pending);
        core.roster().insert(conn.id(), conn.clone());
        let conn_id = conn.id();
        if self.sessions.join(conn) {
            // The joiner learns who is present from the ack; the others hear of the joiner.
            self.broadcast_presence(core, user, PresenceStatus::Online, Some(conn_id));
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

    /// A command that writes nothing: leave, presence, typing, a relayed event.
    fn ephemeral(&mut self, core: &mut Core<Room>, reply: ReplyTo, cmd: ClientMsg) {
        let member = reply.member();
        // It may have left while this waited behind writes.
        if !self.sessions.is_joined(member.conn) {
            return reply.error(&RoomError::NotJoined);
        }
        let user = member.user;
        match cmd {
            ClientMsg::LeaveWorkspace(_) => self.drop_session(core, member.conn),
            ClientMsg::PresenceUpdate(p) => {
                if self.sessions.set_status(user, p.status) {
                    self.broadcast_presence(core, user, p.status, None);
                }
            }
            ClientMsg::Typing(t) => {
                let frame = ServerMsg::Typing {
                    workspace_id: self.board.id,
                    user_id: user,
                    task_id: t.task_id,
                };
                let frame = WireFrame::text(frame.to_json());
                self.fan_out(core, frame, Class::Droppable, Some(member.conn));
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
                self.fan_out(core, WireFrame::text(frame.to_json()), class, None);
            }
            _ => return reply.error(&RoomError::Invalid("not a workspace command".into())),
        }
        reply.ack(None::<AckResult<'_>>);
    }

    fn send_snapshot(&mut self, conn: &ConnHandle) -> (JoinMode, u64) {
        let board = &self.board;
        let frame = self.tail.snapshot(board.offset, || {
            WireFrame::text(ServerMsg::Snapshot(board.view()).to_json())
        });
        conn.push(frame, Class::MustDeliver);
        (JoinMode::Snapshot, 0)
    }

    /// Runs an operation shared by REST and WebSocket: reads answer at once (they wait for the
    /// appends in flight, see [`RoomKind::needs_committed`]), writes once committed.
    #[tracing::instrument(skip_all, fields(room = %self.board.id))]
    async fn execute(&mut self, core: &mut Core<Room>, user: UserId, op: Op, answer: Answer) {
        let now = Utc::now();
        let ws = self.board.id;
        let decided: Result<(Event, Option<SideEffect>), RoomError> = match op {
            Op::Describe => {
                let result = self.board.role(user).map(|role| Reply::Workspace {
                    name: self.board.name.clone(),
                    role,
                    members: self.board.members_in_order().into_iter().cloned().collect(),
                    offset: self.board.offset,
                });
                return answer.send(ws, result);
            }
            Op::ListTasks => {
                let result = self.board.role(user).map(|_| {
                    Reply::Tasks(self.board.tasks_in_order().into_iter().cloned().collect())
                });
                return answer.send(ws, result);
            }
            Op::Snapshot => {
                let result = self
                    .board
                    .role(user)
                    .map(|_| Reply::Snapshot(ServerMsg::Snapshot(self.board.view()).to_json()));
                return answer.send(ws, result);
            }
            Op::ListCategories => {
                let result = self.board.role(user).map(|_| {
                    let categories = self.board.categories_in_order().into_iter();
                    Reply::Categories(categories.cloned().collect())
                });
                return answer.send(ws, result);
            }
            Op::GetTask(id) => {
                let result = self
                    .board
                    .role(user)
                    .and_then(|_| self.board.task(id))
                    .map(|t| Reply::Task(t.clone(), None));
                return answer.send(ws, result);
            }
            Op::Delete => return self.delete(core, user, answer).await,
            Op::SyncPush(ops) => return self.sync_push(core, user, ops, answer).await,
            Op::ResolveConflict { conflict, choice } => self
                .board
                .decide_resolve(user, &conflict, choice, now)
                .map(|e| (e, None)),
            Op::CreateTask(draft) => self
                .board
                .decide_create(user, draft, now)
                .map(|e| (e, None)),
            Op::UpdateTask {
                task_id,
                base_version,
                changes,
            } => self
                .board
                .decide_update(user, task_id, base_version, changes, now)
                .map(|e| (e, None)),
            Op::DeleteTask(id) => self.board.decide_delete(user, id).map(|e| (e, None)),
            Op::CreateCategory(draft) => self
                .board
                .decide_create_category(user, draft, now)
                .map(|e| (e, None)),
            Op::UpdateCategory {
                category_id,
                changes,
            } => self
                .board
                .decide_update_category(user, category_id, changes, now)
                .map(|e| (e, None)),
            Op::DeleteCategory(id) => self
                .board
                .decide_delete_category(user, id, now)
                .map(|e| (e, None)),
            Op::AddMember(member) => {
                let effect = SideEffect::UpsertMember {
                    workspace: ws,
                    user: member.user_id,
                    role: member.role,
                    by: user,
                };
                self.board
                    .decide_add_member(user, member)
                    .map(|e| (e, Some(effect)))
            }
            Op::SetRole { user: target, role } => {
                let effect = SideEffect::UpsertMember {
                    workspace: ws,
                    user: target,
                    role,
                    by: user,
                };
                self.board
                    .decide_set_role(user, target, role)
                    .map(|e| (e, Some(effect)))
            }
            Op::RemoveMember(target) => {
                let effect = SideEffect::RemoveMember {
                    workspace: ws,
                    user: target,
                };
                self.board
                    .decide_remove_member(user, target)
                    .map(|e| (e, Some(effect)))
            }
            Op::Rename(name) => self.board.decide_rename(user, name).map(|e| {
                let effect = match &e {
                    Event::WorkspaceRenamed { name, .. } => Some(SideEffect::RenameWorkspace {
                        workspace: ws,
                        name: name.clone(),
                    }),
                    _ => None,
                };
                (e, effect)
            }),
        };
        match decided {
            Ok((event, effect)) => self.commit(core, event, effect, answer).await,
            // Refused against the state the appends in flight make: answered after them.
            Err(e) => {
                let release: Release<Room> = Box::new(move |_room, _core, outcome| match outcome {
                    Ok(_) => answer.send(ws, Err(e)),
                    Err(_) => answer.send(ws, Err(RoomError::Unavailable)),
                });
                if let Some(now) = core.after_writes(release) {
                    now(self, core, Ok(0));
                }
            }
        }
    }

    /// Applies a batch of offline operations in order, each on the state the ones before it
    /// made; answers once all are committed, one result per operation.
    async fn sync_push(
        &mut self,
        core: &mut Core<Room>,
        user: UserId,
        ops: Vec<Result<SyncOp, OpResult>>,
        answer: Answer,
    ) {
        let ws = self.board.id;
        let placeholder = OpResult::refused("", ErrorCode::Unavailable, "not decided");
        let results = Arc::new(Mutex::new(vec![placeholder; ops.len()]));
        for (index, op) in ops.into_iter().enumerate() {
            let set = |result: OpResult| {
                if let Some(slot) = results
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_mut(index)
                {
                    *slot = result;
                }
            };
            let op = match op {
                Ok(op) => op,
                Err(refused) => {
                    set(refused);
                    continue;
                }
            };
            let op_id = op.op_id.clone();
            if op.workspace_id.is_some_and(|w| w != ws) {
                set(OpResult::refused(
                    &op_id,
                    ErrorCode::InvalidPayload,
                    format!("workspace_id: this push is for workspace {ws}"),
                ));
                continue;
            }
            let result = |status, offset, conflicts| OpResult {
                op_id: op_id.clone(),
                status,
                offset,
                code: None,
                message: None,
                conflicts,
            };
            match self.board.decide_sync(user, op, Utc::now()) {
                Err(e) => set(OpResult::refused(&op_id, e.code(), e.to_string())),
                Ok(SyncDecision::Duplicate(offset)) => {
                    set(result(OpStatus::Duplicate, Some(offset), Vec::new()));
                }
                Ok(SyncDecision::Nothing) => set(result(OpStatus::Applied, None, Vec::new())),
                Ok(SyncDecision::Write { event, merged }) => {
                    let (status, conflicts) = match event.as_ref() {
                        Event::SyncConflicted { sync, .. } => {
                            (OpStatus::Conflicted, sync.conflicts.clone())
                        }
                        Event::TaskCreated { sync, .. }
                        | Event::TaskUpdated { sync, .. }
                        | Event::TaskDeleted { sync, .. } => (
                            if merged {
                                OpStatus::Merged
                            } else {
                                OpStatus::Applied
                            },
                            sync.as_ref()
                                .map(|s| s.conflicts.clone())
                                .unwrap_or_default(),
                        ),
                        _ => (OpStatus::Applied, Vec::new()),
                    };
                    let done = result(status, None, conflicts);
                    let slot = Answer::Batch {
                        results: results.clone(),
                        index,
                        done,
                    };
                    self.commit(core, *event, None, slot).await;
                }
            }
        }
        // Answered after the last of the batch's appends (and any before them).
        let release: Release<Room> = Box::new(move |room, _core, outcome| {
            // An append of the batch (or before it) failed: the room starts over from the
            // store, and results read from the state it had (a `duplicate` of an operation
            // whose append failed) may not hold. The whole push is retried.
            if outcome.is_err() {
                return answer.send(ws, Err(RoomError::Unavailable));
            }
            let results =
                std::mem::take(&mut *results.lock().unwrap_or_else(PoisonError::into_inner));
            answer.send(
                ws,
                Ok(Reply::Synced {
                    results,
                    offset: room.board.offset,
                }),
            );
        });
        if let Some(now) = core.after_writes(release) {
            now(self, core, Ok(0));
        }
    }

    /// Deletes the workspace (nothing is in flight: a delete waits for the appends).
    async fn delete(&mut self, core: &mut Core<Room>, user: UserId, answer: Answer) {
        let ws = self.board.id;
        if let Err(e) = self.board.check_delete(user) {
            return answer.send(ws, Err(e));
        }
        // Boxed for the reason given in `Durable::snapshot`.
        if let Err(e) = Box::pin(core.ctx.store.delete_workspace(ws)).await {
            tracing::error!(room = %ws, error = %e, "deleting the workspace failed");
            return answer.send(ws, Err(RoomError::Unavailable));
        }
        core.stop(Stop::Deleted);
        let frame = WireFrame::text(ServerMsg::WorkspaceDeleted { workspace_id: ws }.to_json());
        self.fan_out(core, frame, Class::MustDeliver, None);
        for conn in self.sessions.conns() {
            conn.mark_left(RoomKey::Workspace(ws));
        }
        core.roster().clear();
        answer.send(ws, Ok(Reply::Done(self.board.offset)));
    }

    /// Applies one durable event and queues its append (with its relational side effect);
    /// once it is committed, the frame goes to every member and the caller gets its answer.
    async fn commit(
        &mut self,
        core: &mut Core<Room>,
        event: Event,
        effect: Option<SideEffect>,
        answer: Answer,
    ) {
        let ws = self.board.id;
        let offset = self.board.offset + 1;
        let Ok(json) = serde_json::to_string(&event) else {
            return answer.send(ws, Err(RoomError::Unavailable));
        };
        let unassigned: Vec<TaskId> = match &event {
            Event::MemberLeft { user_id, .. } => self
                .board
                .tasks
                .values()
                .filter(|t| t.assignee == Some(*user_id))
                .map(|t| t.id)
                .collect(),
            _ => Vec::new(),
        };
        self.board.apply(offset, &event);
        let mut effects: Vec<SideEffect> = effect.into_iter().collect();
        effects.push(SideEffect::Activity(Box::new(activity_of(
            ws, offset, &event,
        ))));
        if let Err(e) = self.index_effects(&event, &unassigned, &mut effects) {
            // Applied but not journaled: the room must start over from the store.
            tracing::error!(room = %ws, error = %e, "indexing a task failed");
            core.stop(Stop::Failed);
            return answer.send(ws, Err(RoomError::Unavailable));
        }
        let frame = WireFrame::text(durable_frame(ws, offset, &json));
        // What the caller is told, as of this event (later ones may be in flight by the time
        // it is released).
        let reply = match &event {
            Event::TaskCreated { task, .. } | Event::TaskUpdated { task, .. } => {
                Reply::Task(task.clone(), Some(offset))
            }
            Event::CategoryCreated { category, .. } | Event::CategoryUpdated { category, .. } => {
                Reply::Category(category.clone(), Some(offset))
            }
            Event::ConflictResolved {
                task: Some(task), ..
            } => Reply::Task(task.clone(), Some(offset)),
            _ => Reply::Done(offset),
        };
        let removed = match &event {
            Event::MemberLeft { user_id, .. } => Some(*user_id),
            _ => None,
        };
        let release: Release<Room> = Box::new(
            move |room: &mut Room, core: &mut Core<Room>, outcome: Outcome| match outcome {
                Ok(offset) => {
                    room.tail.record(offset, frame.clone());
                    room.fan_out(core, frame, Class::MustDeliver, None);
                    if let Some(user) = removed {
                        for conn in room.sessions.conns_of(user) {
                            room.drop_session(core, conn);
                        }
                    }
                    answer.send(ws, Ok(reply));
                }
                Err(_) => answer.send(ws, Err(RoomError::Unavailable)),
            },
        );
        if let Err(release) = core.commit(offset, json, effects, release).await {
            release(self, core, Err(crate::room::core::Refused));
        }
    }

    /// The board index's writes for an event already applied: the tasks and categories it
    /// changed, as they now are (`unassigned`: the tasks a leaving member had).
    fn index_effects(
        &self,
        event: &Event,
        unassigned: &[TaskId],
        effects: &mut Vec<SideEffect>,
    ) -> Result<(), persistence::StoreError> {
        let ws = self.board.id;
        // A task's row as it now is; its tag rows are rewritten only when its tags may have
        // changed (a category deleted under 10 000 tasks rewrites no tag).
        let put =
            |id: &TaskId, tags: bool| -> Result<Option<SideEffect>, persistence::StoreError> {
                self.board
                    .tasks
                    .get(id)
                    .map(|t| {
                        TaskRow::new(ws, t.clone()).map(|r| {
                            let r = if tags { r } else { r.tags_unchanged() };
                            SideEffect::PutTask(Box::new(r))
                        })
                    })
                    .transpose()
            };
        let ledger = |conflicts: &[signaling::sync::Conflict], effects: &mut Vec<SideEffect>| {
            if !conflicts.is_empty() {
                effects.push(SideEffect::PutConflicts {
                    workspace: ws,
                    conflicts: conflicts.to_vec(),
                });
            }
        };
        match event {
            Event::TaskCreated { task, sync, .. } => {
                effects.extend(put(&task.id, !task.tags.is_empty())?);
                ledger(sync.as_ref().map_or(&[], |s| &s.conflicts), effects);
            }
            Event::TaskUpdated {
                task,
                changes,
                sync,
                ..
            } => {
                // The row exists: only the changed columns are written.
                let fields = signaling::server::changed_fields(changes);
                let row = TaskRow::new(ws, task.clone())?.changing(fields);
                effects.push(SideEffect::PutTask(Box::new(row)));
                ledger(sync.as_ref().map_or(&[], |s| &s.conflicts), effects);
            }
            Event::SyncConflicted { sync, .. } => ledger(&sync.conflicts, effects),
            Event::ConflictResolved {
                conflict_id,
                field,
                choice,
                task,
                by,
            } => {
                effects.push(SideEffect::ResolveConflict {
                    workspace: ws,
                    id: *conflict_id,
                    choice: *choice,
                    by: *by,
                });
                if let Some(task) = task {
                    effects.extend(put(&task.id, field == "tags" || field == "task")?);
                }
            }
            Event::TaskDeleted {
                task_id,
                subtasks,
                sync,
                ..
            } => {
                effects.push(SideEffect::DeleteTasks {
                    workspace: ws,
                    tasks: std::iter::once(*task_id)
                        .chain(subtasks.iter().copied())
                        .collect(),
                });
                ledger(sync.as_ref().map_or(&[], |s| &s.conflicts), effects);
            }
            Event::CategoryCreated { category, .. } | Event::CategoryUpdated { category, .. } => {
                let doc = serde_json::to_string(category)
                    .map_err(|e| persistence::StoreError::Corrupt(e.to_string()))?;
                effects.push(SideEffect::PutCategory {
                    workspace: ws,
                    category: Box::new(category.clone()),
                    doc,
                });
            }
            Event::CategoryDeleted {
                category_id, tasks, ..
            } => {
                effects.push(SideEffect::DeleteCategory {
                    workspace: ws,
                    category: *category_id,
                });
                for id in tasks {
                    effects.extend(put(id, false)?);
                }
            }
            Event::MemberLeft { .. } => {
                for id in unassigned {
                    effects.extend(put(id, false)?);
                }
            }
            Event::MemberJoined { .. }
            | Event::MemberUpdated { .. }
            | Event::WorkspaceRenamed { .. } => {}
        }
        Ok(())
    }

    fn broadcast_presence(
        &mut self,
        core: &mut Core<Room>,
        user: UserId,
        status: PresenceStatus,
        except: Option<ConnId>,
    ) {
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
            core,
            WireFrame::text(frame.to_json()),
            Class::Conflatable(key),
            except,
        );
    }

    /// Hands a frame to every joined connection (but `except`); members that cannot keep up are
    /// dropped from the room.
    fn fan_out(
        &mut self,
        core: &mut Core<Room>,
        frame: WireFrame,
        class: Class,
        except: Option<ConnId>,
    ) {
        let out = self.sessions.fan_out(&frame, class, except);
        let metrics = &core.ctx.metrics;
        metrics.events_fanned_out.increment(out.queued);
        metrics.events_dropped.increment(out.dropped);
        metrics.events_conflated.increment(out.conflated);
        if !out.evicted.is_empty() {
            metrics.slow_consumers.increment(out.evicted.len() as u64);
            tracing::warn!(room = %self.board.id, count = out.evicted.len(), "closed slow consumers");
        }
        for id in out.evicted.into_iter().chain(out.gone) {
            self.drop_session(core, id);
        }
    }

    /// Forgets a connection; tells the room when its user went offline.
    fn drop_session(&mut self, core: &mut Core<Room>, id: ConnId) {
        core.roster().remove(&id);
        if let Some(conn) = self.sessions.get(id) {
            conn.mark_left(RoomKey::Workspace(self.board.id));
        }
        if let Some(user) = self.sessions.leave(id) {
            self.broadcast_presence(core, user, PresenceStatus::Offline, None);
        }
    }
}
