//! The hub's wire protocol, shared by the server and every client (the load harness included).
//!
//! This crate sits at the bottom of the dependency graph (`hub -> actors -> persistence ->
//! signaling`, `loadtest -> signaling`) and is pure: no tokio, no IO. It holds
//!
//! - [`ids`]: typed ids (`UserId`, `WorkspaceId`, `TaskId`, `RoomKey`) validated on parse;
//! - [`task`]: the task board's records and their validation; [`rank`]: board positions that
//!   never need renumbering; [`category`]: a workspace's task categories;
//! - [`text`]: normalizing and checking human text (emails, names, titles, descriptions) before
//!   it is stored, so that every database sees the same clean input;
//! - [`session`]: a conference session's status and staff roles;
//! - [`sync`]: offline clients' queued operations, the merge rules and the conflict ledger;
//! - [`workspace`]: roles, members, presence;
//! - [`client`]: what a client sends ([`client::ClientMsg`]) and how a frame is decoded;
//! - [`rest`]: the bodies of the REST requests and their checks;
//! - [`json`]: reading client JSON: the nesting limit and plain-worded parse errors;
//! - [`server`]: what the hub sends back ([`server::ServerMsg`]) and the durable [`server::Event`]s;
//! - [`frame`]: WebSocket framing: reading clients' masked frames, writing server frames;
//! - [`error`]: the stable error codes every client can match on.

pub mod category;
pub mod client;
pub mod conference;
pub mod error;
pub mod frame;
pub mod ids;
pub mod json;
pub mod rank;
pub mod rest;
pub mod server;
pub mod session;
pub mod sync;
pub mod task;
pub mod text;
pub mod workspace;

pub use error::ErrorCode;
pub use ids::{AttendeeId, CategoryId, RoomKey, SessionId, TaskId, UserId, WorkspaceId};
