//! The hub's actor system: one supervised [ractor] actor per room.
//!
//! Flow position: the gateway (`hub::ws`) and the REST handlers hand commands to the
//! [`Router`], which finds the room's actor (starting it under the [`supervisor`] if needed) and
//! sends the command. The room decides in its pure state ([`workspace::state`]), journals durable
//! events through `persistence::Journal`, then fans the serialized frame out to every member's
//! [`conn::ConnHandle`] outbox.
//!
//! - [`cluster`]: the nodes of a cluster, found through Redis, and which one owns a room.
//! - [`conn`]: a connection as rooms see it: a bounded outbox and a way to close it.
//! - [`room`]: what every room kind shares (tunables, services, roster, join bookkeeping).
//! - [`workspace`]: the workspace room (members, presence, task board).
//! - [`session`]: the conference session room, in progress (its pure Q&A rules so far).
//! - [`supervisor`]: starts rooms, restarts crashed ones from snapshot + journal.
//! - [`router`]: the one way to reach a room; the seam where cross-node forwarding will go.
//! - [`metrics`]: the handles rooms record into.

pub mod cluster;
pub mod conn;
pub mod metrics;
pub mod room;
pub mod router;
pub mod session;
pub mod supervisor;
pub mod workspace;

pub use conn::{Class, CloseReason, ConflationKey, ConnHandle, ConnId, Member, Outbox, WireFrame};
pub use metrics::RoomMetrics;
pub use room::{RoomConfig, RouterError};
pub use router::Router;
