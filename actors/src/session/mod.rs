//! The conference session room (issue 7), built up piece by piece.
//!
//! - [`state`]: the session's durable state: info, settings, lifecycle (scheduled, live,
//!   ended), staff roles, admission under capacity, and its Q&A.
//! - [`qa`]: live Q&A: questions, votes, moderation and spam rules.
//! - [`signal`]: WebRTC signaling: polite and impolite sides, checked SDP and ICE candidates,
//!   and the relay that holds signals for a peer briefly away.
//!
//! All are pure decide/apply functions, unit-tested without spawning anything. They are not
//! wired to an actor, REST or the protocol yet: that waits for the room-neutral core both room
//! kinds will share (`crate::room`, under way).

pub mod qa;
pub mod signal;
pub mod state;
