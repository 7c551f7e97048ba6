//! A connection as rooms see it: a bounded outbox of ready-to-send frames and a way to close the
//! connection. The gateway owns the other end ([`Outbox`]) and runs the one writer task that
//! drains it into the socket.
//!
//! Frames are `Bytes`: a room serializes an event once and every member's outbox holds a
//! reference to the same buffer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use signaling::{RoomKey, UserId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// The account was disabled or deleted: its token no longer opens connections.
    pub const ACCESS_REVOKED: CloseReason = CloseReason {
        code: 4001,
        reason: "access revoked: the account was disabled or deleted",
    };
}

/// How much a frame matters when the outbox is full (see `DESIGN.md`, event classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Must arrive (durable events, replies, broadcasts): a full outbox disconnects the member,
    /// who recovers by offset.
    MustDeliver,
    /// May be skipped (typing): a full outbox drops it.
    Droppable,
}

/// What happened to a frame handed to [`ConnHandle::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the writer.
    Queued,
    /// Skipped: droppable and the outbox was full.
    Dropped,
    /// The outbox was full: the connection has just been closed as a slow consumer.
    Evicted,
    /// The connection is already closed: forget it.
    Gone,
}

struct Closer {
    token: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// The room side of a connection. Cheap to clone.
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    user: UserId,
    tx: mpsc::Sender<Bytes>,
    closer: Arc<Closer>,
    /// The rooms this connection is joined to, kept by the rooms themselves (they mark a join
    /// when they accept it and unmark it whenever they drop the session), so that the gateway
    /// can refuse commands for other rooms without a round trip. Locked on join, leave and
    /// once per inbound command; never per event.
    joined: Arc<Mutex<HashSet<RoomKey>>>,
}

/// The gateway side of a connection: what the writer task drains.
pub struct Outbox {
    rx: mpsc::Receiver<Bytes>,
    closer: Arc<Closer>,
}

impl ConnHandle {
    /// A connection for `user` with an outbox of `capacity` frames.
    pub fn new(id: ConnId, user: UserId, capacity: usize) -> (ConnHandle, Outbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let closer = Arc::new(Closer {
            token: CancellationToken::new(),
            reason: OnceLock::new(),
        });
        (
            ConnHandle {
                id,
                user,
                tx,
                closer: closer.clone(),
                joined: Arc::default(),
            },
            Outbox { rx, closer },
        )
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The authenticated user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// Queues a frame without waiting. A full outbox drops a droppable frame and closes the
    /// connection for anything else: a room never waits for a slow member.
    pub fn push(&self, frame: Bytes, class: Class) -> Delivery {
        match self.tx.try_send(frame) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) if class == Class::Droppable => {
                Delivery::Dropped
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(CloseReason::SLOW_CONSUMER);
                Delivery::Evicted
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    /// How many frames the outbox holds when full.
    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// How many more frames fit in the outbox right now.
    pub fn free_slots(&self) -> usize {
        self.tx.capacity()
    }

    /// Queues a page of must-deliver frames at the pace the client reads them: waits until the
    /// outbox has room for the page and still half its capacity free for everything else (so
    /// that a long replay never makes the connection look like a slow consumer to the other
    /// rooms). Returns false if the connection closed first.
    pub async fn push_page(&self, frames: Vec<Bytes>) -> bool {
        let cap = self.capacity();
        let want = (frames.len() + cap / 2).min(cap);
        debug_assert!(frames.len() <= want, "a page must fit in the outbox");
        let permits = tokio::select! {
            () = self.closer.token.cancelled() => return false,
            permits = self.tx.reserve_many(want) => permits,
        };
        let Ok(mut permits) = permits else {
            return false;
        };
        for frame in frames {
            match permits.next() {
                Some(permit) => permit.send(frame),
                None => return false,
            }
        }
        true
    }

    /// Waits until at least `free` frames fit in the outbox (the client has read what was
    /// queued). Returns false if the connection closed first.
    pub async fn drained(&self, free: usize) -> bool {
        let free = free.clamp(1, self.capacity());
        tokio::select! {
            () = self.closer.token.cancelled() => false,
            permits = self.tx.reserve_many(free) => permits.is_ok(),
        }
    }

    /// Asks the writer to close the connection. The first reason given wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.closer.reason.set(reason);
        self.closer.token.cancel();
    }

    fn joined(&self) -> std::sync::MutexGuard<'_, HashSet<RoomKey>> {
        // A poisoned set is still a valid set: each operation is a single insert or remove.
        self.joined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `room` accepted this connection (called by the room).
    pub fn mark_joined(&self, room: RoomKey) {
        self.joined().insert(room);
    }

    /// Records that `room` dropped this connection (called by the room).
    pub fn mark_left(&self, room: RoomKey) {
        self.joined().remove(&room);
    }

    /// True when `room` has accepted this connection and not dropped it since.
    pub fn is_joined(&self, room: RoomKey) -> bool {
        self.joined().contains(&room)
    }

    /// How many rooms this connection is in.
    pub fn joined_count(&self) -> usize {
        self.joined().len()
    }

    /// The rooms this connection is in.
    pub fn joined_rooms(&self) -> Vec<RoomKey> {
        self.joined().iter().copied().collect()
    }

    /// Resolves when the connection is asked to close.
    pub async fn closed(&self) {
        self.closer.token.cancelled().await;
    }

    /// True once the connection is closing.
    pub fn is_closed(&self) -> bool {
        self.closer.token.is_cancelled() || self.tx.is_closed()
    }
}

impl Outbox {
    /// The next frame, or `None` once the connection must close (see [`Outbox::close_reason`]).
    pub async fn recv(&mut self) -> Option<Bytes> {
        tokio::select! {
            biased;
            () = self.closer.token.cancelled() => None,
            frame = self.rx.recv() => frame,
        }
    }

    /// A frame that is already queued, without waiting (for batching writes).
    pub fn try_recv(&mut self) -> Option<Bytes> {
        if self.closer.token.is_cancelled() {
            return None;
        }
        self.rx.try_recv().ok()
    }

    /// Closes the connection from the writer's side (a write stalled). The first reason given
    /// wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.closer.reason.set(reason);
        self.closer.token.cancel();
    }

    /// Why the connection is being closed, if a room or the hub asked.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.closer.reason.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_wait_for_the_reader_and_leave_half_the_outbox_free() {
        let (conn, mut outbox) = ConnHandle::new(1, UserId::new(), 8);
        let page = |n: usize| {
            (0..n)
                .map(|i| Bytes::from(vec![i as u8]))
                .collect::<Vec<_>>()
        };
        assert!(conn.push_page(page(2)).await);
        assert!(conn.push_page(page(2)).await);
        assert_eq!(conn.free_slots(), 4);
        // A third page needs 2 + 4 free slots: it waits until the reader takes two frames.
        let pusher = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.push_page(page(2)).await })
        };
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished());
        outbox.recv().await;
        outbox.recv().await;
        assert!(pusher.await.unwrap());
        assert_eq!(conn.free_slots(), 4);
        // A closed connection stops a waiting page.
        conn.close(CloseReason::GOING_AWAY);
        assert!(!conn.push_page(page(4)).await);
        assert!(!conn.drained(8).await);
    }

    #[tokio::test]
    async fn a_full_outbox_drops_droppables_and_closes_for_the_rest() {
        let (conn, mut outbox) = ConnHandle::new(1, UserId::new(), 1);
        assert_eq!(
            conn.push(Bytes::from_static(b"a"), Class::MustDeliver),
            Delivery::Queued
        );
        assert_eq!(
            conn.push(Bytes::from_static(b"t"), Class::Droppable),
            Delivery::Dropped
        );
        assert!(!conn.is_closed());
        assert_eq!(
            conn.push(Bytes::from_static(b"b"), Class::MustDeliver),
            Delivery::Evicted
        );
        assert!(conn.is_closed());
        assert_eq!(outbox.close_reason(), Some(CloseReason::SLOW_CONSUMER));
        assert_eq!(outbox.recv().await, None);
    }
}
