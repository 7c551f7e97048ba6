//! The hub's wire protocol, shared by the server and every client (the load harness included).
//!
//! This crate sits at the bottom of the dependency graph (`hub -> actors -> persistence ->
//! signaling`, `loadtest -> signaling`) and is pure: no tokio, no IO. It holds
//!
//! - [`ids`]: typed ids (`UserId`, `WorkspaceId`, `TaskId`, `RoomKey`) validated on parse;
//! - [`task`]: the task board's records and their validation;
//! - [`workspace`]: roles, members, presence;
//! - [`client`]: what a client sends ([`client::ClientMsg`]) and how a frame is decoded;
//! - [`server`]: what the hub sends back ([`server::ServerMsg`]) and the durable [`server::Event`]s;
//! - [`error`]: the stable error codes every client can match on.

pub mod client;
pub mod error;
pub mod ids;
pub mod server;
pub mod task;
pub mod workspace;

pub use error::ErrorCode;
pub use ids::{RoomKey, TaskId, UserId, WorkspaceId};
