//! The metric handles rooms record into. They are registered once (by the hub, against its own
//! recorder) and cloned into every room, so the hot path never looks a metric up by name.

use metrics::{Counter, Gauge, Histogram};

/// Handles for the room-side metrics.
#[derive(Clone)]
pub struct RoomMetrics {
    /// `hub_rooms_active`: room actors running.
    pub rooms_active: Gauge,
    /// `hub_events_fanned_out_total`: frames handed to member outboxes.
    pub events_fanned_out: Counter,
    /// `hub_room_mailbox_depth`: messages waiting in a room's mailbox, sampled as each is handled.
    pub mailbox_depth: Histogram,
    /// `hub_room_restarts_total`: rooms restarted after a crash.
    pub room_restarts: Counter,
    /// `hub_events_dropped_total`: droppable frames skipped for members falling behind.
    pub events_dropped: Counter,
    /// `hub_events_conflated_total`: conflatable frames that replaced an older one still queued.
    pub events_conflated: Counter,
    /// `hub_slow_consumers_total`: connections closed because their outbox stayed full.
    pub slow_consumers: Counter,
    /// `hub_journal_append_seconds`: time from a room's append to its commit.
    pub journal_append: Histogram,
}

impl RoomMetrics {
    /// Handles that record nowhere (for unit tests).
    pub fn noop() -> RoomMetrics {
        RoomMetrics {
            rooms_active: Gauge::noop(),
            events_fanned_out: Counter::noop(),
            mailbox_depth: Histogram::noop(),
            room_restarts: Counter::noop(),
            events_dropped: Counter::noop(),
            events_conflated: Counter::noop(),
            slow_consumers: Counter::noop(),
            journal_append: Histogram::noop(),
        }
    }
}
