//! A join that is being caught up, as the connection and the room count it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use signaling::RoomKey;

use crate::conn::ConnHandle;

/// A connection's join of a room that is being caught up. While it lives, a second join of the
/// same room on the same connection is refused, and the room does not stop for idleness; when
/// it drops (the join done, refused, or given up), both end.
pub struct PendingJoin {
    conn: ConnHandle,
    room: RoomKey,
    in_flight: Arc<AtomicUsize>,
}

impl PendingJoin {
    /// Marks `conn`'s join of `room` as being caught up; `None` if one already is.
    pub fn start(conn: &ConnHandle, room: RoomKey, in_flight: &Arc<AtomicUsize>) -> Option<Self> {
        if !conn.mark_pending(room) {
            return None;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Self {
            conn: conn.clone(),
            room,
            in_flight: in_flight.clone(),
        })
    }
}

impl Drop for PendingJoin {
    fn drop(&mut self) {
        self.conn.unmark_pending(self.room);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
