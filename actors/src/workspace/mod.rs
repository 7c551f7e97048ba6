//! The workspace room: a team's members, their presence and the live task board.
//!
//! - [`state`]: the durable state and its rules (pure, unit-tested).
//! - [`messages`]: what the room is sent and answers.
//! - [`actor`]: wires messages to the state, the journal and the members' outboxes, with what
//!   every room kind shares from `crate::room`.

pub mod actor;
pub mod merge;
pub mod messages;
pub mod state;

pub use actor::Room as WorkspaceRoom;
pub use messages::{Op, Reply, ReplyTo, RoomError, WorkspaceMsg};
pub use state::WorkspaceState;

#[cfg(test)]
mod props;
