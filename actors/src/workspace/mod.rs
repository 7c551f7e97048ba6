//! The workspace room: a team's members, their presence and the live task board.
//!
//! - [`state`]: the durable state and its rules (pure, unit-tested).
//! - [`messages`]: what the room is sent and answers.
//! - [`actor`]: wires messages to the state, the journal and the members' outboxes.
//! - [`catchup`]: replays a long gap to a rejoining client, a page at a time, off the room.

pub mod actor;
pub mod catchup;
pub mod messages;
pub mod state;

pub use actor::{RoomArgs, WorkspaceRoom};
pub use messages::{Op, Reply, ReplyTo, RoomError, WorkspaceMsg};
pub use state::WorkspaceState;

#[cfg(test)]
mod props;
