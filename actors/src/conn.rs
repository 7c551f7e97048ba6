//! A connection as rooms see it: a bounded outbox of ready-to-send frames and a way to close the
//! connection. The gateway owns the other end ([`Outbox`]) and runs the one writer task that
//! drains it into the socket.
//!
//! Frames are [`WireFrame`]s: a complete WebSocket frame, header and payload. Server frames are
//! not masked, so every member gets the same bytes: a room serializes and frames an event once,
//! every member's outbox holds a reference to the same buffer, and the writer hands those
//! buffers to the kernel as they are, with no copy and no per-member framing.
//!
//! An idle connection costs little here: the outbox's buffer grows with a burst and is freed
//! when the burst has been written, so an idle connection keeps a few slots at most.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use signaling::frame::{self, OpCode};
use signaling::{AttendeeId, RoomKey, SessionId, UserId};
use tokio::sync::Notify;

/// A complete WebSocket frame (FIN set, unmasked), ready for the socket. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireFrame(Bytes);

impl WireFrame {
    /// A text frame carrying `text` (a JSON message).
    pub fn text(text: impl AsRef<[u8]>) -> Self {
        Self::with_opcode(OpCode::Text, text.as_ref())
    }

    /// A frame of any type with `payload`.
    pub fn with_opcode(opcode: OpCode, payload: &[u8]) -> Self {
        let mut frame = Vec::with_capacity(payload.len() + frame::MAX_HEADER_BYTES);
        frame::encode_header(&mut frame, opcode, payload.len());
        frame.extend_from_slice(payload);
        Self(Bytes::from(frame))
    }

    /// A close frame with `code` and `reason` (at most 123 bytes of it are sent), or with no
    /// payload for [`CloseReason::NO_STATUS`].
    pub fn close(code: u16, reason: &str) -> Self {
        if code == CloseReason::NO_STATUS {
            return Self::with_opcode(OpCode::Close, &[]);
        }
        let mut payload = code.to_be_bytes().to_vec();
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Self::with_opcode(OpCode::Close, &payload)
    }

    /// The frame's bytes, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// A frame already encoded (one that came over a cluster link).
    pub(crate) fn from_bytes(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The payload (for tests and logs).
    pub fn payload(&self) -> &[u8] {
        let b = &self.0;
        let start = match b.get(1).map(|l| l & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        b.get(start..).unwrap_or_default()
    }
}

/// How often a wait for room in an outbox looks again even without a wake-up.
const RECHECK_ROOM: std::time::Duration = std::time::Duration::from_millis(50);

/// Identifies one connection within this hub process.
pub type ConnId = u64;

/// Why the hub closed a connection: sent as the WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code.
    pub code: u16,
    /// Short reason text.
    pub reason: &'static str,
}

impl CloseReason {
    /// "No status code": never sent on the wire (RFC 6455, 7.4.1); a close frame for it carries
    /// no payload.
    pub const NO_STATUS: u16 = 1005;

    /// The echo of a client's close frame: its code, or none if it gave none.
    pub fn echo(code: Option<u16>) -> CloseReason {
        CloseReason {
            code: code.unwrap_or(Self::NO_STATUS),
            reason: "",
        }
    }

    /// The outbox stayed full: the client reads too slowly. It should reconnect and resume by
    /// offset.
    pub const SLOW_CONSUMER: CloseReason = CloseReason {
        code: 4008,
        reason: "slow consumer: reconnect and resume from your last offset",
    };
    /// The hub is shutting down.
    pub const GOING_AWAY: CloseReason = CloseReason {
        code: 1001,
        reason: "server shutting down",
    };
    /// The node is draining (cluster mode): reconnect, to any node, and resume by offset.
    pub const NODE_DRAINING: CloseReason = CloseReason {
        code: 4010,
        reason: "node draining: reconnect and resume from your last offset",
    };
    /// Nothing was received for too long.
    pub const IDLE: CloseReason = CloseReason {
        code: 4000,
        reason: "idle timeout",
    };
    /// A message at or above the hard transport limit, however it was fragmented.
    pub const TOO_BIG: CloseReason = CloseReason {
        code: 1009,
        reason: "frame too large",
    };
    /// A text message that is not valid UTF-8.
    pub const INVALID_UTF8: CloseReason = CloseReason {
        code: 1007,
        reason: "invalid UTF-8",
    };
    /// The client broke the WebSocket framing rules (a stray continuation, reserved bits...).
    pub const PROTOCOL_ERROR: CloseReason = CloseReason {
        code: 1002,
        reason: "protocol error",
    };
    /// The access token the connection was opened (or last renewed) with expired; connect
    /// again with a fresh one (or send `auth` before it expires).
    pub const TOKEN_EXPIRED: CloseReason = CloseReason {
        code: 4002,
        reason: "access token expired",
    };
    /// The account was disabled or deleted, logged out, or its password reset: its sockets
    /// close (a disabled or deleted account's token no longer opens any).
    pub const ACCESS_REVOKED: CloseReason = CloseReason {
        code: 4001,
        reason: "access revoked",
    };
}

/// How much a frame matters when a member falls behind (see `DESIGN.md`, event classes, and
/// `docs/protocol.md`, "Slow consumers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Must arrive, in order (durable events, replies, broadcasts): a full outbox disconnects
    /// the member, who recovers by offset.
    MustDeliver,
    /// Only the latest value per key matters (presence): while an earlier frame of the same key
    /// still waits in the outbox, a new one replaces it in place, so a slow member ends up with
    /// the current state and never a stale one, using one slot per key.
    Conflatable(ConflationKey),
    /// May be skipped (typing, broadcasts marked droppable): queued only while at least a
    /// quarter of the outbox is free, so they are the first to go and never crowd out the rest.
    Droppable,
}

/// What a conflatable frame is the latest value of: one subject of one topic in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConflationKey {
    /// The room.
    pub room: RoomKey,
    /// What kind of value (`"presence"`, ...).
    pub topic: &'static str,
    /// Whose or which (a user id, a question id...).
    pub subject: u128,
}

/// What the outbox queue holds.
#[derive(Debug)]
enum Slot {
    /// A frame.
    Frame(Bytes),
    /// Stands for the oldest key in [`Latest`]: the writer sends that key's latest frame.
    Latest,
}

/// The conflatable frames waiting in an outbox: their keys in the order their slots were
/// queued, and each key's latest frame.
#[derive(Default)]
struct Latest {
    order: std::collections::VecDeque<ConflationKey>,
    frames: std::collections::HashMap<ConflationKey, Bytes>,
}

/// What happened to a frame handed to [`ConnHandle::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the writer.
    Queued,
    /// Skipped: droppable and the outbox was filling up.
    Dropped,
    /// Replaced an earlier frame of the same key still waiting in the outbox.
    Conflated,
    /// The outbox was full: the connection has just been closed as a slow consumer.
    Evicted,
    /// The connection is already closed: forget it.
    Gone,
}

/// Slots an outbox keeps allocated once drained (a larger buffer is freed when the outbox
/// empties): an idle connection holds at most this, a burst's buffer lives only while it lasts.
const KEEP_SLOTS: usize = 4;

/// The outbox itself: a bounded queue of slots. A plain queue behind a lock held for a push or a
/// pop, rather than a channel, because a channel allocates its first block of slots up front
/// and keeps it: 1.5 KiB per idle connection.
type Queue = std::collections::VecDeque<Slot>;

/// Why a slot was not queued.
enum Refused {
    Full,
    Gone,
}

/// What both sides of a connection share.
struct Shared {
    queue: Mutex<Queue>,
    /// How many slots the queue holds when full.
    capacity: usize,
    /// How many it holds now (written under the lock, read without it).
    len: AtomicUsize,
    /// The writer's side is gone: nothing will be taken any more (set under the lock).
    receiver_gone: AtomicBool,
    /// Wakes the writer when a slot is queued or the connection closes. `notify_one` keeps a
    /// permit when the writer is not waiting yet, so no wake-up is lost.
    ready: Notify,
    /// Set once the connection must close. An atomic rather than a cancellation token: it is
    /// read for every frame the writer takes, and must cost no lock.
    closed: AtomicBool,
    /// Wakes whoever waits for the close ([`ConnHandle::closed`]).
    close_notify: Notify,
    reason: OnceLock<CloseReason>,
    /// Woken when the writer takes frames, for those waiting for room in the outbox.
    drained: Notify,
    /// How many are waiting on `drained` (so that the writer only wakes anyone when someone
    /// waits: one atomic load per frame otherwise).
    waiting: AtomicUsize,
    /// Conflatable frames waiting in the outbox, behind a lock taken only while the outbox is
    /// under pressure or holds one already.
    latest: Mutex<Latest>,
    /// How many keys `latest` holds (read without the lock).
    latest_len: AtomicUsize,
}

impl Shared {
    fn new(capacity: usize) -> Shared {
        Shared {
            queue: Mutex::default(),
            capacity: capacity.max(1),
            len: AtomicUsize::new(0),
            receiver_gone: AtomicBool::new(false),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            reason: OnceLock::new(),
            drained: Notify::new(),
            waiting: AtomicUsize::new(0),
            latest: Mutex::default(),
            latest_len: AtomicUsize::new(0),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A poisoned queue is still a valid queue: each operation is a single push or pop.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn try_push(&self, slot: Slot) -> Result<(), Refused> {
        let mut queue = self.queue();
        if self.receiver_gone.load(Ordering::SeqCst) {
            return Err(Refused::Gone);
        }
        if queue.len() >= self.capacity {
            return Err(Refused::Full);
        }
        queue.push_back(slot);
        self.len.store(queue.len(), Ordering::SeqCst);
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    fn pop(&self) -> Option<Slot> {
        let mut queue = self.queue();
        let slot = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP_SLOTS {
            *queue = Queue::new();
        }
        self.len.store(queue.len(), Ordering::SeqCst);
        slot
    }

    fn free_slots(&self) -> usize {
        self.capacity
            .saturating_sub(self.len.load(Ordering::SeqCst))
    }

    fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.close_notify.notify_waiters();
            self.ready.notify_one();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    async fn closed(&self) {
        loop {
            // Registered before looking, so that a close in between is not missed.
            let notified = self.close_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// The rooms of a connection, as the rooms themselves record them.
#[derive(Default)]
struct Rooms {
    /// Joined: the room accepted the connection and has not dropped it since.
    joined: HashSet<RoomKey>,
    /// A join being caught up (a long replay in progress): not joined yet, but no second join
    /// for the same room is taken meanwhile.
    pending: HashSet<RoomKey>,
}

/// Who sent a command, by ids that mean the same on any node: the connection, the account (a
/// guest's attendee id, for a guest) and, for a guest, the one session it may be in. Rooms decide
/// by these; the [`ConnHandle`] that rides alongside only delivers frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The connection.
    pub conn: ConnId,
    /// The account, or a guest's attendee id.
    pub user: UserId,
    /// A guest's session.
    pub guest: Option<SessionId>,
}

impl Member {
    /// Who this member is in `session`: its attendee id, and its account unless a guest.
    pub fn attendee_in(&self, session: SessionId) -> (AttendeeId, Option<UserId>) {
        match self.guest {
            Some(_) => (AttendeeId::from_uuid(self.user.as_uuid()), None),
            None => (AttendeeId::of_user(session, self.user), Some(self.user)),
        }
    }
}

/// Where a remote member's frames go: the connection is on another node of the cluster, and
/// this end stands for it in the rooms here (see `cluster::link`). The room sees a
/// [`ConnHandle`] like any other; what it pushes, marks and closes goes over the link to the
/// node the client is connected to, whose own outbox applies the class rules.
pub trait Remote: Send + Sync {
    /// Sends a frame to the member's node.
    fn push(&self, frame: &WireFrame, class: Class) -> Delivery;
    /// Mirrors a change of the connection's rooms (so that the member's node routes its
    /// commands and its disconnect).
    fn mark(&self, room: RoomKey, mark: Mark);
    /// Asks the member's node to close the connection.
    fn close(&self, reason: CloseReason);
    /// Resolves when the member's outbox over there has `free` slots (false: it closed).
    fn room_for(
        &self,
        free: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>;
}

/// A change of a connection's rooms, as [`Remote::mark`] mirrors it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The room accepted the connection.
    Joined,
    /// The room dropped it.
    Left,
    /// The room is catching it up.
    Pending,
    /// The catch-up ended.
    Unpending,
}

/// The room side of a connection. Cheap to clone.
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    user: UserId,
    /// A guest's connection: good for this one conference session only (`user` is then the
    /// guest's attendee id).
    guest: Option<SessionId>,
    shared: Arc<Shared>,
    /// The rooms this connection is joined to (or joining), kept by the rooms themselves (they
    /// mark a join when they accept it and unmark it whenever they drop the session), so that
    /// the gateway can refuse commands for other rooms without a round trip. Locked on join,
    /// leave and once per inbound command; never per event.
    rooms: Arc<Mutex<Rooms>>,
    /// Set for a member connected to another node: frames go there instead of to an outbox.
    remote: Option<Arc<dyn Remote>>,
}

/// The gateway side of a connection: what the writer task drains.
pub struct Outbox {
    shared: Arc<Shared>,
}

impl Drop for Outbox {
    /// The writer is gone: whatever is queued will never be sent, and nothing more is taken.
    fn drop(&mut self) {
        let mut queue = self.shared.queue();
        self.shared.receiver_gone.store(true, Ordering::SeqCst);
        *queue = Queue::new();
        self.shared.len.store(0, Ordering::SeqCst);
    }
}

impl ConnHandle {
    /// A connection for `user` with an outbox of `capacity` frames.
    pub fn new(id: ConnId, user: UserId, capacity: usize) -> (ConnHandle, Outbox) {
        Self::build(id, user, None, capacity)
    }

    /// A guest's connection to one conference session, as `attendee`.
    pub fn guest(
        id: ConnId,
        session: SessionId,
        attendee: AttendeeId,
        capacity: usize,
    ) -> (ConnHandle, Outbox) {
        Self::build(
            id,
            UserId::from_uuid(attendee.as_uuid()),
            Some(session),
            capacity,
        )
    }

    fn build(
        id: ConnId,
        user: UserId,
        guest: Option<SessionId>,
        capacity: usize,
    ) -> (ConnHandle, Outbox) {
        let shared = Arc::new(Shared::new(capacity));
        (
            ConnHandle {
                id,
                user,
                guest,
                shared: shared.clone(),
                rooms: Arc::default(),
                remote: None,
            },
            Outbox { shared },
        )
    }

    /// A member connected to another node, as `member` (whose `conn` is this node's id for it),
    /// reached through `remote`.
    pub fn remote(member: Member, capacity: usize, remote: Arc<dyn Remote>) -> ConnHandle {
        // No outbox: nothing is queued here. Only the close flag and the room marks are used.
        ConnHandle {
            id: member.conn,
            user: member.user,
            guest: member.guest,
            shared: Arc::new(Shared::new(capacity)),
            rooms: Arc::default(),
            remote: Some(remote),
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The authenticated user (a guest's attendee id, as a user id, for a guest).
    pub fn user(&self) -> UserId {
        self.user
    }

    /// For a guest's connection, the one session it may join.
    pub fn guest_session(&self) -> Option<SessionId> {
        self.guest
    }

    /// Who is on this connection, by ids alone.
    pub fn member(&self) -> Member {
        Member {
            conn: self.id,
            user: self.user,
            guest: self.guest,
        }
    }

    /// Who this connection is in `session`: its attendee id, and its account unless a guest.
    pub fn attendee_in(&self, session: SessionId) -> (AttendeeId, Option<UserId>) {
        self.member().attendee_in(session)
    }

    /// Queues a frame without waiting, as its class says (see [`Class`]): a room never waits
    /// for a slow member. Anything but a droppable frame closes the connection as a slow
    /// consumer when the outbox is full.
    pub fn push(&self, frame: WireFrame, class: Class) -> Delivery {
        if let Some(remote) = &self.remote {
            if self.is_closed() {
                return Delivery::Gone;
            }
            let delivery = remote.push(&frame, class);
            if delivery == Delivery::Evicted {
                // The sink asked the member's node to close it: closed here too, once.
                self.shared.close(CloseReason::SLOW_CONSUMER);
            }
            return delivery;
        }
        match class {
            Class::MustDeliver => self.send_or_evict(Slot::Frame(frame.0)),
            Class::Droppable if self.free_slots() * 4 <= self.capacity() => Delivery::Dropped,
            Class::Droppable => match self.shared.try_push(Slot::Frame(frame.0)) {
                Ok(()) => Delivery::Queued,
                Err(Refused::Full) => Delivery::Dropped,
                Err(Refused::Gone) => Delivery::Gone,
            },
            Class::Conflatable(key) => self.push_latest(key, frame.0),
        }
    }

    fn send_or_evict(&self, slot: Slot) -> Delivery {
        match self.shared.try_push(slot) {
            Ok(()) => Delivery::Queued,
            Err(Refused::Full) => {
                self.close(CloseReason::SLOW_CONSUMER);
                Delivery::Evicted
            }
            Err(Refused::Gone) => Delivery::Gone,
        }
    }

    /// A conflatable frame. While the outbox is at least half free and holds no conflatable
    /// frame, it is queued like any other (no lock). Otherwise it replaces the frame of the same
    /// key still waiting, or takes a slot that stands for its key.
    fn push_latest(&self, key: ConflationKey, frame: Bytes) -> Delivery {
        let shared = &self.shared;
        if shared.latest_len.load(Ordering::SeqCst) == 0 && self.free_slots() * 2 > self.capacity()
        {
            return self.send_or_evict(Slot::Frame(frame));
        }
        let mut latest = shared
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(waiting) = latest.frames.get_mut(&key) {
            *waiting = frame;
            return Delivery::Conflated;
        }
        // Queued under the lock, so that the writer cannot take the slot before its key is in.
        let queued = self.send_or_evict(Slot::Latest);
        if queued == Delivery::Queued {
            latest.order.push_back(key);
            latest.frames.insert(key, frame);
            shared.latest_len.fetch_add(1, Ordering::SeqCst);
        }
        queued
    }

    /// How many frames the outbox holds when full.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// How many more frames fit in the outbox right now.
    pub fn free_slots(&self) -> usize {
        self.shared.free_slots()
    }

    /// Waits until at least `free` frames fit in the outbox (the client has read what was
    /// queued), without taking any of that room meanwhile: other rooms keep pushing to this
    /// connection as usual while it waits. Returns false if the connection closed first.
    pub async fn room_for(&self, free: usize) -> bool {
        let free = free.clamp(1, self.capacity());
        if let Some(remote) = &self.remote {
            return tokio::select! {
                () = self.shared.closed() => false,
                ready = remote.room_for(free) => ready && !self.is_closed(),
            };
        }
        let shared = &self.shared;
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let ready = loop {
            // Registered before looking, so that a drain in between is not missed.
            let drained = shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.is_closed() {
                break false;
            }
            if self.free_slots() >= free {
                break true;
            }
            tokio::select! {
                () = shared.closed() => break false,
                () = drained => {}
                // The wake-up is an optimization of this check: a late look costs nothing.
                () = tokio::time::sleep(RECHECK_ROOM) => {}
            }
        };
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        ready
    }

    /// Queues must-deliver frames, waiting for room one frame at a time if the outbox is full
    /// (so never closing the connection as a slow consumer). For a catch-up that has made room
    /// first with [`ConnHandle::room_for`]. Returns false if the connection closed first.
    pub async fn push_waiting(&self, frames: Vec<WireFrame>) -> bool {
        if let Some(remote) = &self.remote {
            // The member's node queues them; the catch-up made room over there first.
            for frame in &frames {
                if self.is_closed() || remote.push(frame, Class::MustDeliver) != Delivery::Queued {
                    return false;
                }
            }
            return true;
        }
        for frame in frames {
            loop {
                if self.is_closed() {
                    return false;
                }
                match self.shared.try_push(Slot::Frame(frame.0.clone())) {
                    Ok(()) => break,
                    Err(Refused::Gone) => return false,
                    Err(Refused::Full) => {
                        if !self.room_for(1).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Asks the writer to close the connection. The first reason given wins.
    pub fn close(&self, reason: CloseReason) {
        if let Some(remote) = &self.remote
            && !self.shared.is_closed()
        {
            remote.close(reason);
        }
        self.shared.close(reason);
    }

    /// Closes a remote member's stand-in without telling its node (which told us).
    pub(crate) fn close_here(&self, reason: CloseReason) {
        self.shared.close(reason);
    }

    fn mirror(&self, room: RoomKey, mark: Mark) {
        if let Some(remote) = &self.remote {
            remote.mark(room, mark);
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        // Poisoned sets are still valid sets: each operation is a single insert or remove.
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `room` accepted this connection (called by the room).
    pub fn mark_joined(&self, room: RoomKey) {
        let mut rooms = self.rooms();
        rooms.pending.remove(&room);
        rooms.joined.insert(room);
        drop(rooms);
        self.mirror(room, Mark::Joined);
    }

    /// Records that `room` dropped this connection (called by the room).
    pub fn mark_left(&self, room: RoomKey) {
        self.rooms().joined.remove(&room);
        self.mirror(room, Mark::Left);
    }

    /// Records that `room` is catching this connection up. Returns false when it already is (a
    /// second join for the same room while the first is in progress).
    pub fn mark_pending(&self, room: RoomKey) -> bool {
        let fresh = self.rooms().pending.insert(room);
        if fresh {
            self.mirror(room, Mark::Pending);
        }
        fresh
    }

    /// Records that `room`'s catch-up ended (joined, refused, or given up).
    pub fn unmark_pending(&self, room: RoomKey) {
        if self.rooms().pending.remove(&room) {
            self.mirror(room, Mark::Unpending);
        }
    }

    /// True when `room` is catching this connection up.
    pub fn is_pending(&self, room: RoomKey) -> bool {
        self.rooms().pending.contains(&room)
    }

    /// True when `room` has accepted this connection and not dropped it since.
    pub fn is_joined(&self, room: RoomKey) -> bool {
        self.rooms().joined.contains(&room)
    }

    /// How many rooms this connection is in or joining (the 64-room cap counts both).
    pub fn joined_count(&self) -> usize {
        let rooms = self.rooms();
        rooms.joined.len() + rooms.pending.difference(&rooms.joined).count()
    }

    /// The rooms this connection is in.
    pub fn joined_rooms(&self) -> Vec<RoomKey> {
        self.rooms().joined.iter().copied().collect()
    }

    /// Resolves when the connection is asked to close.
    pub async fn closed(&self) {
        self.shared.closed().await;
    }

    /// True once the connection is closing.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed() || self.shared.receiver_gone.load(Ordering::SeqCst)
    }
}

impl Outbox {
    /// The next frame, or `None` once the connection must close (see [`Outbox::close_reason`]).
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.try_recv() {
                return Some(frame);
            }
            if self.shared.is_closed() {
                return None;
            }
            self.shared.ready.notified().await;
        }
    }

    /// A frame that is already queued, without waiting (for batching writes).
    pub fn try_recv(&mut self) -> Option<Bytes> {
        loop {
            if self.shared.is_closed() {
                return None;
            }
            let slot = self.shared.pop();
            self.wake_waiters();
            if let Some(frame) = self.take(slot?) {
                return Some(frame);
            }
        }
    }

    /// The frame a slot stands for (`None` only if a conflated slot lost its frame, which the
    /// lock around both makes impossible).
    fn take(&self, slot: Slot) -> Option<Bytes> {
        match slot {
            Slot::Frame(frame) => Some(frame),
            Slot::Latest => {
                let mut latest = self
                    .shared
                    .latest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let key = latest.order.pop_front()?;
                let frame = latest.frames.remove(&key)?;
                self.shared.latest_len.fetch_sub(1, Ordering::SeqCst);
                Some(frame)
            }
        }
    }

    /// Room was made: wakes whoever waits for it ([`ConnHandle::room_for`]), if anyone does.
    fn wake_waiters(&self) {
        if self.shared.waiting.load(Ordering::SeqCst) > 0 {
            self.shared.drained.notify_waiters();
        }
    }

    /// Closes the connection from the writer's side (a write stalled). The first reason given
    /// wins.
    pub fn close(&self, reason: CloseReason) {
        self.shared.close(reason);
    }

    /// Why the connection is being closed, if a room or the hub asked.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.reason.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_for_room_takes_none_from_the_other_rooms() {
        let (conn, mut outbox) = ConnHandle::new(1, UserId::new(), 8);
        let frames = |n: usize| {
            (0..n)
                .map(|i| WireFrame::text([i as u8]))
                .collect::<Vec<_>>()
        };
        assert!(conn.push_waiting(frames(6)).await);
        // A catch-up waits for 6 free slots...
        let waiter = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.room_for(6).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // ...while another room's event still fits in the two that are free.
        assert_eq!(
            conn.push(WireFrame::text("live"), Class::MustDeliver),
            Delivery::Queued
        );
        assert!(!conn.is_closed());
        // Seven queued: six free once the reader has taken five.
        for _ in 0..5 {
            outbox.recv().await;
        }
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(woken.unwrap().unwrap(), "woken once the reader made room");
        // A closed connection ends a wait.
        conn.close(CloseReason::GOING_AWAY);
        assert!(!conn.room_for(8).await);
        assert!(!conn.push_waiting(frames(1)).await);
    }

    #[test]
    fn frames_are_built_once_with_the_right_header() {
        let small = WireFrame::text("hi");
        assert_eq!(small.bytes().as_ref(), b"\x81\x02hi");
        let medium = WireFrame::text(vec![b'x'; 300]);
        assert_eq!(&medium.bytes()[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(medium.payload().len(), 300);
        let large = WireFrame::text(vec![b'x'; 70_000]);
        assert_eq!(&large.bytes()[..2], &[0x81, 127]);
        assert_eq!(large.payload().len(), 70_000);
        let close = WireFrame::close(4008, "slow");
        assert_eq!(close.bytes().as_ref(), b"\x88\x06\x0f\xa8slow");
        let echo = WireFrame::close(CloseReason::echo(None).code, "");
        assert_eq!(
            echo.bytes().as_ref(),
            b"\x88\x00",
            "a close without a code, echoed"
        );
        // A long reason is cut on a character boundary, within the 125-byte control payload.
        let long = WireFrame::close(1000, &"é".repeat(100));
        assert!(long.payload().len() <= 125);
        assert!(std::str::from_utf8(&long.payload()[2..]).is_ok());
    }

    #[test]
    fn a_pending_join_is_taken_once_and_counts_toward_the_cap() {
        let (conn, _outbox) = ConnHandle::new(1, UserId::new(), 8);
        let room = RoomKey::Workspace(signaling::WorkspaceId::new());
        assert!(conn.mark_pending(room));
        assert!(
            !conn.mark_pending(room),
            "a second join while the first catches up"
        );
        assert_eq!(conn.joined_count(), 1);
        assert!(!conn.is_joined(room));
        conn.mark_joined(room);
        assert!(!conn.is_pending(room) && conn.is_joined(room));
        assert_eq!(conn.joined_count(), 1);
    }

    #[tokio::test]
    async fn a_full_outbox_drops_droppables_and_closes_for_the_rest() {
        let (conn, mut outbox) = ConnHandle::new(1, UserId::new(), 1);
        assert_eq!(
            conn.push(WireFrame::text("a"), Class::MustDeliver),
            Delivery::Queued
        );
        assert_eq!(
            conn.push(WireFrame::text("t"), Class::Droppable),
            Delivery::Dropped
        );
        assert!(!conn.is_closed());
        assert_eq!(
            conn.push(WireFrame::text("b"), Class::MustDeliver),
            Delivery::Evicted
        );
        assert!(conn.is_closed());
        assert_eq!(outbox.close_reason(), Some(CloseReason::SLOW_CONSUMER));
        assert_eq!(outbox.recv().await, None);
    }

    fn presence(user: u128) -> Class {
        Class::Conflatable(ConflationKey {
            room: RoomKey::Workspace(signaling::WorkspaceId::from_uuid(uuid::Uuid::nil())),
            topic: "presence",
            subject: user,
        })
    }

    fn drain(outbox: &mut Outbox) -> Vec<Bytes> {
        let mut got = Vec::new();
        while let Some(frame) = outbox.try_recv() {
            got.push(frame);
        }
        got
    }

    #[tokio::test]
    async fn a_falling_behind_member_gets_only_the_latest_presence_per_user() {
        let (conn, mut outbox) = ConnHandle::new(1, UserId::new(), 8);
        // With room to spare, every presence change is queued as it comes.
        for status in ["away", "online"] {
            assert_eq!(
                conn.push(WireFrame::text(status), presence(1)),
                Delivery::Queued
            );
        }
        let got = drain(&mut outbox);
        assert_eq!(got, vec![&b"\x81\x04away"[..], &b"\x81\x06online"[..]]);
        // Falling behind: five events wait, three slots are free.
        for i in 0..5u8 {
            assert_eq!(
                conn.push(WireFrame::text([i]), Class::MustDeliver),
                Delivery::Queued
            );
        }
        assert_eq!(
            conn.push(WireFrame::text("a1"), presence(1)),
            Delivery::Queued
        );
        assert_eq!(
            conn.push(WireFrame::text("b1"), presence(2)),
            Delivery::Queued
        );
        for latest in ["a2", "a3", "a4"] {
            assert_eq!(
                conn.push(WireFrame::text(latest), presence(1)),
                Delivery::Conflated
            );
        }
        assert_eq!(
            conn.push(WireFrame::text("b2"), presence(2)),
            Delivery::Conflated
        );
        // Two slots for two users, however many changes, and the last event still fits.
        assert_eq!(conn.free_slots(), 1);
        let got = drain(&mut outbox);
        let payloads: Vec<&[u8]> = got.iter().map(|f| &f[2..]).collect();
        assert_eq!(
            payloads,
            vec![&[0u8][..], &[1], &[2], &[3], &[4], b"a4", b"b2"],
            "in order, each user's latest value in its first slot"
        );
        assert!(!conn.is_closed());
    }

    #[tokio::test]
    async fn a_value_waiting_in_the_outbox_is_never_overtaken_by_an_older_one() {
        let (conn, mut outbox) = ConnHandle::new(1, UserId::new(), 4);
        for i in 0..3u8 {
            conn.push(WireFrame::text([i]), Class::MustDeliver);
        }
        assert_eq!(
            conn.push(WireFrame::text("v1"), presence(7)),
            Delivery::Queued
        );
        // The reader takes the three events: the outbox is almost empty again, but v1's slot
        // still waits, so v2 replaces it instead of queuing behind it.
        for _ in 0..3 {
            outbox.recv().await;
        }
        assert_eq!(
            conn.push(WireFrame::text("v2"), presence(7)),
            Delivery::Conflated
        );
        assert_eq!(outbox.recv().await.as_deref(), Some(&b"\x81\x02v2"[..]));
        // Nothing waits any more: the next one is queued as it comes.
        assert_eq!(
            conn.push(WireFrame::text("v3"), presence(7)),
            Delivery::Queued
        );
        assert_eq!(outbox.recv().await.as_deref(), Some(&b"\x81\x02v3"[..]));
    }

    #[tokio::test]
    async fn droppables_never_take_the_last_quarter_of_the_outbox() {
        let (conn, outbox) = ConnHandle::new(1, UserId::new(), 8);
        let mut queued = 0;
        while conn.push(WireFrame::text("cursor"), Class::Droppable) == Delivery::Queued {
            queued += 1;
        }
        assert_eq!(queued, 6, "two slots are kept for what must arrive");
        assert!(!conn.is_closed(), "a member is never closed for droppables");
        assert_eq!(
            conn.push(WireFrame::text("e1"), Class::MustDeliver),
            Delivery::Queued
        );
        assert_eq!(
            conn.push(WireFrame::text("e2"), Class::MustDeliver),
            Delivery::Queued
        );
        assert_eq!(
            conn.push(WireFrame::text("p"), presence(1)),
            Delivery::Evicted
        );
        assert_eq!(outbox.close_reason(), Some(CloseReason::SLOW_CONSUMER));
    }
}
