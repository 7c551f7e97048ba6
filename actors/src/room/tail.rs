//! A room's recent past in memory: its latest durable frames, so that a client a short gap
//! behind is replayed without a journal read, and the `snapshot` frame of its current state,
//! built on the first join that needs it and shared by every later one until the state moves on
//! (a reconnect storm serializes the state once, not once per client).

use std::collections::VecDeque;

use crate::conn::{ConnHandle, WireFrame};

/// How many events one replay page holds for a connection with this outbox capacity: a quarter
/// of it, so that a page never fills the outbox of a client that is reading.
pub fn page_size(outbox_capacity: usize) -> usize {
    (outbox_capacity / 4).max(1)
}

/// The recent durable frames (at most `capacity`) and the cached snapshot frame.
#[derive(Debug)]
pub struct Tail {
    frames: VecDeque<(u64, WireFrame)>,
    capacity: usize,
    snapshot: Option<(u64, WireFrame)>,
    /// Every offset after this one is either held or was skipped on purpose (a room kind that
    /// shows some events to some members only keeps a tail per audience; an event an audience
    /// does not see is skipped in its tail).
    covered_after: Option<u64>,
}

impl Tail {
    /// Keeps at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            capacity,
            snapshot: None,
            covered_after: None,
        }
    }

    /// A tail that covers every offset after `head` (the room's offset when it loaded): for a
    /// tail that [`Tail::skip`]s events.
    pub fn from_head(capacity: usize, head: u64) -> Self {
        Self {
            covered_after: Some(head),
            ..Self::new(capacity)
        }
    }

    /// The state moved to `offset` with an event this tail's audience does not see.
    pub fn skip(&mut self, _offset: u64) {
        self.snapshot = None;
    }

    /// Records the frame of the event at `offset`; the snapshot frame, now stale, is dropped.
    pub fn record(&mut self, offset: u64, frame: WireFrame) {
        self.snapshot = None;
        self.frames.push_back((offset, frame));
        while self.frames.len() > self.capacity {
            if let Some((o, _)) = self.frames.pop_front() {
                self.covered_after = Some(o);
            }
        }
    }

    /// The frames after offset `after` up to `head`, when they are all still here and fit in
    /// `conn`'s outbox now as one page; `None` when they have to be paged from the journal.
    pub fn since(&self, head: u64, after: u64, conn: &ConnHandle) -> Option<Vec<WireFrame>> {
        let gap = head.saturating_sub(after);
        if gap == 0 {
            return Some(Vec::new());
        }
        let fits =
            gap <= page_size(conn.capacity()) as u64 && conn.free_slots() >= conn.capacity() / 2;
        let held = self.covered_after.is_some_and(|c| c <= after)
            || self
                .frames
                .front()
                .is_some_and(|(first, _)| *first <= after + 1);
        (fits && held).then(|| {
            self.frames
                .iter()
                .filter(|(o, _)| *o > after)
                .map(|(_, f)| f.clone())
                .collect()
        })
    }

    /// The snapshot frame of the state at `offset`: the one built before if the state has not
    /// moved since, else `build()`'s, kept for the next join.
    pub fn snapshot(&mut self, offset: u64, build: impl FnOnce() -> WireFrame) -> WireFrame {
        match &self.snapshot {
            Some((at, frame)) if *at == offset => frame.clone(),
            _ => {
                let frame = build();
                self.snapshot = Some((offset, frame.clone()));
                frame
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use signaling::UserId;

    use super::*;

    fn frame(n: u64) -> WireFrame {
        WireFrame::text(format!("{{\"offset\":{n}}}"))
    }

    #[test]
    fn a_short_gap_still_held_is_replayed_from_memory_in_order() {
        let mut tail = Tail::new(4);
        for n in 1..=6 {
            tail.record(n, frame(n));
        }
        let (conn, _outbox) = ConnHandle::new(1, UserId::new(), 64);
        let got = tail.since(6, 3, &conn).unwrap();
        let payloads: Vec<&[u8]> = got.iter().map(WireFrame::payload).collect();
        assert_eq!(
            payloads,
            [frame(4), frame(5), frame(6)].map(|f| f.payload().to_vec())
        );
        assert_eq!(tail.since(6, 6, &conn), Some(Vec::new()), "up to date");
        assert!(
            tail.since(6, 1, &conn).is_none(),
            "offset 2 fell out of memory"
        );
        let (small, _o) = ConnHandle::new(2, UserId::new(), 8);
        assert!(
            tail.since(6, 3, &small).is_none(),
            "more than a page for this outbox"
        );
    }

    #[test]
    fn the_snapshot_frame_is_built_once_per_state() {
        let mut tail = Tail::new(4);
        let mut built = 0;
        let mut take = |tail: &mut Tail, offset| {
            tail.snapshot(offset, || {
                built += 1;
                frame(offset)
            })
        };
        let a = take(&mut tail, 7);
        let b = take(&mut tail, 7);
        assert_eq!(a.bytes().as_ptr(), b.bytes().as_ptr(), "the same buffer");
        tail.record(8, frame(8));
        let c = take(&mut tail, 8);
        assert_eq!(c.payload(), frame(8).payload());
        assert_eq!(built, 2);
    }
}
