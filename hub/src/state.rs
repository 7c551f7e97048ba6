//! What every handler and connection shares.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use actors::Router;
use actors::cluster::Cluster;
use persistence::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::HubMetrics;
use crate::ws::registry::Registry;

/// The hub's shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Accounts and room storage.
    pub store: Store,
    /// The way to rooms.
    pub router: Router,
    /// Tokens and passwords.
    pub auth: Arc<Auth>,
    /// Metric handles.
    pub metrics: HubMetrics,
    /// The configuration.
    pub config: Arc<Config>,
    /// The abuse throttles.
    pub limits: Arc<Limits>,
    /// The open WebSocket connections, by user and address.
    pub registry: Registry,
    /// Cancelled when the hub shuts down: connections close with "going away".
    pub shutdown: CancellationToken,
    /// Every WebSocket connection's task, so shutdown can wait for them.
    pub connections: TaskTracker,
    /// Source of connection ids.
    pub next_conn: Arc<AtomicU64>,
    /// This node's place in the cluster (`None` when it runs alone).
    pub cluster: Option<Arc<Cluster>>,
    /// Cancelled by the operator's drain call: the process drains and exits, as on SIGTERM.
    pub drain: CancellationToken,
    /// The links to the other nodes (`None` when it runs alone).
    pub links: Option<Arc<actors::cluster::link::Links>>,
    /// Woken when a job is written to the outbox, so the worker sends it at once.
    pub jobs: Arc<tokio::sync::Notify>,
    /// The OpenAPI document of the routes, as served at `/openapi.json` (set by `api::app`).
    pub openapi: Arc<std::sync::OnceLock<bytes::Bytes>>,
}
