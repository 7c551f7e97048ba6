//! The conference session room (issue 7), built up piece by piece.
//!
//! - [`qa`]: live Q&A: questions, votes, moderation and spam rules, as pure decide/apply
//!   functions (unit-tested without spawning anything). Not wired to an actor or the protocol
//!   yet: that waits for the room-neutral core both room kinds will share.

pub mod qa;
