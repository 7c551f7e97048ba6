//! The hub server: configuration, the REST API, the WebSocket gateway, auth and metrics.
//!
//! Flow position: the top of `hub -> actors -> persistence -> signaling`. A WebSocket frame
//! enters [`ws`] (decoded, rate-limited, authenticated by the connection's token), goes through
//! `actors::Router` to its room, and the room's answer comes back through the connection's
//! outbox to the writer task in [`ws::writer`]. REST writes ([`api`]) take the same road to the
//! room, so members see them live.
//!
//! - [`config`]: settings, flags and `HUB_*` variables.
//! - [`server`]: start, serve, graceful shutdown; [`http`]: the accept loop (header deadline,
//!   keep-alive close, client address).
//! - [`api`]: REST routes (auth, workspaces, members, tasks, admin, health, metrics).
//! - [`ws`]: the WebSocket gateway.
//! - [`auth`]: passwords, JWTs, refresh tokens, the account check on every request;
//!   [`hasher`]: the argon2 thread pool; [`accounts`]: disabling and deleting accounts.
//! - [`limits`]: every abuse throttle (rates, caps, quotas) in one place.
//! - [`error`]: REST errors and their codes; [`metrics`]: the Prometheus registry.
//! - [`turn`]: STUN/TURN servers for conference peers, with time-limited TURN credentials;
//!   [`analytics`]: session attendance and CSV exports, from the tables.

pub mod accounts;
pub mod analytics;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod hasher;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod state;
pub mod turn;
pub mod ws;

pub use api::app;
pub use config::Config;
pub use server::Hub;
pub use state::AppState;
