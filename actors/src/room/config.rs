//! Room tunables, the same for every room kind.

use std::time::Duration;

/// Room tunables.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// A room with no connections and no messages for this long stops (after a final snapshot).
    pub idle_timeout: Duration,
    /// Take a snapshot after this many events...
    pub snapshot_every: u64,
    /// ...or this long after the last one, if anything changed.
    pub snapshot_interval: Duration,
    /// Journal entries kept behind the latest snapshot, so that reconnecting clients can replay.
    pub journal_retain: u64,
    /// Recent durable frames kept in memory per room, for replaying a short gap without reading
    /// the journal. A gap is only replayed from memory when it fits in one page of the
    /// connection's outbox (a quarter of it), so the hub keeps exactly that many.
    pub replay_buffer: usize,
    /// Longest gap replayed event by event; a longer one gets a snapshot.
    pub replay_limit: u64,
    /// How often rooms do housekeeping.
    pub tick: Duration,
    /// How long a caller waits for a room's answer.
    pub call_timeout: Duration,
    /// Lets `WorkspaceMsg::Crash` panic a room (tests only).
    pub fault_injection: bool,
    /// Conference Q&A: the spam rules every session applies.
    pub spam: SpamRules,
    /// How long a member whose node was lost shows as `suspect` before `offline` (cluster).
    pub presence_grace: Duration,
}

/// The spam rules of conference Q&A (the presenter's switches come on top).
#[derive(Debug, Clone)]
pub struct SpamRules {
    /// Questions one attendee may ask within `window`.
    pub questions_per_window: usize,
    /// The window of the question rate.
    pub window: Duration,
    /// Most links in one question.
    pub max_links: usize,
    /// Words and phrases refused in questions (anywhere in the text, ignoring case).
    pub blocklist: Vec<String>,
}

impl Default for SpamRules {
    fn default() -> Self {
        Self {
            questions_per_window: 3,
            window: Duration::from_secs(60),
            max_links: 1,
            blocklist: Vec::new(),
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            snapshot_every: 500,
            snapshot_interval: Duration::from_secs(30),
            journal_retain: 10_000,
            replay_buffer: 256,
            replay_limit: 10_000,
            tick: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
            presence_grace: Duration::from_secs(10),
            fault_injection: false,
            spam: SpamRules::default(),
        }
    }
}
