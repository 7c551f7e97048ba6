//! The conference session room.
//!
//! - [`state`]: the session's durable state: info, settings, lifecycle (scheduled, live,
//!   ended), staff roles, admission under capacity, and its Q&A.
//! - [`qa`]: live Q&A: questions, votes, moderation and spam rules.
//! - [`signal`]: WebRTC signaling: polite and impolite sides, checked SDP and ICE candidates,
//!   and the relay that holds signals for a peer briefly away.
//! - [`wire`]: what members see: session and question views, frames and acks.
//! - [`messages`], [`actor`]: the room: journal -> apply -> fan-out by role, peers, relay.
//!
//! `state`, `qa` and `signal` are pure decide/apply functions, unit-tested without spawning.

pub mod actor;
pub mod messages;
pub mod qa;
pub mod signal;
pub mod state;
pub mod wire;

pub use actor::Room as SessionRoom;
pub use messages::{Caller, SessionMsg, SessionOp, SessionReply};
