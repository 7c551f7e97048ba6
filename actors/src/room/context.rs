//! The services every room is given, and the bookkeeping they share: the roster that outlives
//! a crash, the mailbox depth count, and why a room could not start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use persistence::{Journal, Store, StoreError};
use tokio::sync::Semaphore;

use super::config::RoomConfig;
use crate::conn::{ConnHandle, ConnId};
use crate::metrics::RoomMetrics;

/// Catch-ups reading the journal at once, in the whole hub.
pub const MAX_CATCHUPS: usize = 32;

/// What every room shares.
pub struct RoomContext {
    /// Account and room storage.
    pub store: Store,
    /// The group-committing journal writer.
    pub journal: Journal,
    /// Tunables.
    pub config: RoomConfig,
    /// Metric handles.
    pub metrics: RoomMetrics,
    /// Catch-ups that may read the journal at once, across rooms.
    pub catchups: Arc<Semaphore>,
    /// This node's cluster membership: rooms run here only under a lease (`None`: alone).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The connections joined to a room, kept outside the actor so that they survive a crash.
/// Touched only on join and leave, never per event.
pub type Roster = Arc<Mutex<HashMap<ConnId, ConnHandle>>>;

/// Why a room could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The workspace does not exist.
    #[error("workspace not found")]
    NotFound,
    /// Storage failed or held something unreadable.
    #[error("loading the room failed: {0}")]
    Load(String),
    /// Another node runs the room (holds its lease), or Redis could not say.
    #[error("{0}")]
    Lease(String),
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError::Load(e.to_string())
    }
}

/// Counts a message out of a room's mailbox depth. Saturating: after a restart the supervisor
/// resets the count, and a message counted in before that must not wrap it below zero.
pub fn depth_down(depth: &AtomicUsize) -> usize {
    depth
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            Some(d.saturating_sub(1))
        })
        .unwrap_or(0)
}

/// Why a room could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouterError {
    /// The workspace does not exist.
    #[error("workspace not found")]
    NotFound,
    /// The room could not be started or did not take the message.
    #[error("room unavailable: {0}")]
    Unavailable(String),
}
