//! Bringing a far-behind client up to date without the room waiting for it.
//!
//! A client that joins with a `last_offset` more than a page behind is not replayed by the room
//! itself: the room hands its join to a catch-up task and carries on. The task waits until the
//! client has read enough of its outbox ([`ConnHandle::room_for`](crate::conn::ConnHandle::room_for), which takes no room from the
//! other rooms meanwhile), then reads one page of the journal and queues it, and so on: however
//! long the gap, the outbox never overflows, the client is never mistaken for a slow consumer,
//! and a client that stops reading costs at most the page it is not reading. When the task
//! reaches the offset the room had when it started, it gives the join back to the room (the
//! message [`CatchUp::resume`] builds), which sends whatever happened meanwhile (or hands it out
//! again if that is still a lot) and only then joins the connection and acks. If the journal no
//! longer reaches back, the room sends a snapshot instead.
//!
//! The task knows nothing of the room's kind: the room gives it the frame for a journal entry
//! ([`CatchUp::frame`]) and the message that hands the join back.
//!
//! A connection has at most one catch-up per room ([`super::PendingJoin`]); at most
//! [`MAX_CATCHUPS`](crate::room::MAX_CATCHUPS) run at once in the hub, the others wait their turn without reading anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use persistence::Store;
use ractor::{ActorRef, Message};
use tokio::sync::Semaphore;

use crate::conn::{ConnHandle, WireFrame};

/// The frame a client gets for the journal entry `event` (JSON) at `offset`.
pub type FrameOf = Box<dyn Fn(u64, &str) -> WireFrame + Send>;
/// The message that gives the join back to the room: given the offset the client now has
/// (`None`: the journal no longer reached back, send a snapshot) and the events replayed. It
/// holds the join's answer and its place ([`super::PendingJoin`]); dropped unsent, they answer
/// and free themselves.
pub type ResumeWith<M> = Box<dyn FnOnce(Option<u64>, u64) -> M + Send>;

/// A join being caught up.
pub struct CatchUp<M: Message> {
    /// The room to give the join back to.
    pub room: ActorRef<M>,
    /// The room's mailbox depth counter (every message sent to it is counted).
    pub depth: Arc<AtomicUsize>,
    /// Where the journal is.
    pub store: Store,
    /// The hub's catch-up permits.
    pub permits: Arc<Semaphore>,
    /// The room's journal key.
    pub key: String,
    /// The joining connection.
    pub conn: ConnHandle,
    /// A journal entry's frame.
    pub frame: FrameOf,
    /// The message that gives the join back.
    pub resume: ResumeWith<M>,
    /// The client has every event up to here.
    pub after: u64,
    /// Replay up to here (the room's offset when it handed the join out).
    pub target: u64,
    /// Events already replayed to this client for this join.
    pub replayed: u64,
}

impl<M: Message> CatchUp<M> {
    /// Replays the journal from `after` to `target`, then gives the join back to the room.
    pub async fn run(self) {
        let conn = self.conn.clone();
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let cap = conn.capacity();
        let page = crate::room::page_size(cap);
        let mut after = self.after;
        let mut replayed = self.replayed;
        let mut reached = true;
        while after < self.target {
            // Room first, then read: a client that stops reading holds no page in memory.
            if !conn.room_for(page + cap / 2).await {
                return; // The connection closed; the reply has no one to go to.
            }
            let want = u32::try_from((self.target - after).min(page as u64)).unwrap_or(1);
            let records = match self.store.journal_since(&self.key, after, want).await {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(room = %self.key, error = %e, "journal read failed; sending a snapshot instead");
                    reached = false;
                    break;
                }
            };
            let contiguous = !records.is_empty()
                && records
                    .iter()
                    .zip(after + 1..)
                    .all(|(r, expected)| u64::try_from(r.seq).ok() == Some(expected));
            if !contiguous {
                // Trimmed by a snapshot since the room looked: the client gets a snapshot.
                reached = false;
                break;
            }
            let frames: Vec<WireFrame> = records
                .iter()
                .zip(after + 1..)
                .map(|(r, seq)| (self.frame)(seq, &r.event))
                .collect();
            let n = frames.len() as u64;
            if !conn.push_waiting(frames).await {
                return;
            }
            after += n;
            replayed += n;
        }
        // Let the client read most of it, so the room can finish the join in one go.
        if reached && !conn.room_for(cap * 3 / 4).await {
            return;
        }
        self.depth.fetch_add(1, Ordering::Relaxed);
        let resume = (self.resume)(reached.then_some(after), replayed);
        if self.room.cast(resume).is_err() {
            // The room stopped meanwhile: the reply, dropped with the message, says so.
            crate::room::depth_down(&self.depth);
        }
    }
}
