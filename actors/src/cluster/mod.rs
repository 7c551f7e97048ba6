//! The cluster: nodes that find each other through Redis.
//!
//! A node registers itself under `{prefix}:node:{id}` (its address, start time and load) with an
//! expiry, and renews it on every heartbeat; the same call reads back every node still
//! registered, so each node holds a recent view of the live nodes. A node that stops renewing
//! (killed, cut off) drops out of every view once its key expires. See `docs/cluster.md`.
//!
//! - [`placement`]: which live node owns a room (rendezvous hashing).
//! - [`lease`]: the lease a node holds on each room it runs, renewed with the heartbeat.
//! - [`limits`]: the shared rate limits, kept in Redis so that they hold across nodes.
//! - [`link`]: the direct links between nodes that carry forwarded commands and room frames.
//!
//! Keys are wrapped in a hash tag (`{prefix}`), so that all of one cluster's keys live in one
//! slot should the Redis behind it be a Redis Cluster: the scripts here touch several at once.

pub mod lease;
pub mod limits;
pub mod link;
pub mod placement;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::interfaces::{ClientLike, LuaInterface};
use fred::prelude::{Builder, Client, Config, ReconnectPolicy};
use fred::types::scripts::Script;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// The cluster's name: every key of it starts with `{prefix}:`. Clusters sharing one Redis
    /// need different prefixes.
    pub prefix: String,
    /// This node's id (unique in the cluster; at most [`MAX_NODE_ID`] bytes).
    pub node_id: String,
    /// The address other nodes and clients reach this node at (`host:port`).
    pub advertise: String,
    /// The address other nodes open their links to this node at (`host:port`).
    pub link: String,
    /// How long a node stays listed without a heartbeat. Heartbeats go out four times as often.
    pub node_ttl: Duration,
}

/// The longest node id.
pub const MAX_NODE_ID: usize = 64;

/// A node as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// The address it is reached at.
    pub addr: String,
    /// The address its cluster links are reached at.
    #[serde(default)]
    pub link: String,
    /// When it started (Unix milliseconds).
    pub started_at_ms: u64,
    /// When it last renewed its registration (Unix milliseconds, by its own clock).
    pub heartbeat_at_ms: u64,
    /// Rooms running on it.
    pub rooms: u64,
    /// WebSocket connections open on it.
    pub connections: u64,
    /// It is draining: it takes no new rooms, and hands its own to the others.
    #[serde(default)]
    pub draining: bool,
}

/// What a node reports of its load on each heartbeat.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Rooms running.
    pub rooms: u64,
    /// Connections open.
    pub connections: u64,
}

/// Why the cluster could not be joined or reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// Another live node already uses this id.
    #[error("node id {0:?} is already registered by a live node")]
    DuplicateId(String),
    /// Another node holds the room's lease.
    #[error("the room runs on node {0}")]
    Elsewhere(String),
}

/// Registers `ARGV[2]` (info `ARGV[3]`, expiring in `ARGV[4]` ms) and returns whether it was
/// still registered (`"1"` or `"0"`) followed by every registered node's info, forgetting ids
/// whose registration expired. With `ARGV[5] == "new"`, refuses (returns `false`) if the id is
/// already registered.
const HEARTBEAT: &str = r"
local key = ARGV[1] .. ARGV[2]
local existed = redis.call('EXISTS', key)
if ARGV[5] == 'new' and existed == 1 then
  return false
end
redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
redis.call('SADD', KEYS[1], ARGV[2])
local live = {tostring(existed)}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local info = redis.call('GET', ARGV[1] .. id)
  if info then
    table.insert(live, info)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return live
";

/// This node's membership in the cluster. Cheap to share (`Arc`).
pub struct Cluster {
    redis: Client,
    config: ClusterConfig,
    started_at_ms: u64,
    heartbeat: Script,
    /// The live nodes as of the last heartbeat, sorted by id.
    live: RwLock<Arc<[NodeInfo]>>,
    /// Room leases held here.
    held: Mutex<lease::Held>,
    /// Rooms whose lease another node took (see [`Cluster::lost_leases`]).
    lost: tokio::sync::mpsc::UnboundedSender<String>,
    lost_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    /// This node is draining (said in its registration).
    draining: std::sync::atomic::AtomicBool,
    /// The load last reported.
    load: Mutex<Load>,
    /// Lease renewals and losses, for the metrics.
    pub stats: ClusterStats,
    /// Until then, nodes missing from the registry stay in the view: Redis lost the
    /// registrations (it restarted empty), and the others re-register on their next heartbeats.
    sticky_until: Mutex<Option<std::time::Instant>>,
}

/// What the cluster layer counts (exported as metrics by the hub).
#[derive(Default)]
pub struct ClusterStats {
    /// Room leases renewed (each lease, each heartbeat).
    pub lease_renewals: std::sync::atomic::AtomicU64,
    /// Room leases found taken by another node.
    pub leases_lost: std::sync::atomic::AtomicU64,
}

impl Cluster {
    /// Connects to Redis and registers this node.
    ///
    /// # Errors
    /// Redis cannot be reached, the configuration is unusable, or a live node has this id.
    pub async fn join(config: ClusterConfig) -> Result<Arc<Cluster>, ClusterError> {
        if config.node_id.is_empty()
            || config.node_id.len() > MAX_NODE_ID
            || !config
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(ClusterError::Config(format!(
                "node id {:?}: 1 to {MAX_NODE_ID} letters, digits, '-', '_' or '.'",
                config.node_id
            )));
        }
        if config.prefix.is_empty() || config.prefix.contains(['{', '}']) {
            return Err(ClusterError::Config(format!(
                "cluster prefix {:?}: not empty, no braces",
                config.prefix
            )));
        }
        let redis = Builder::from_config(Config::from_url(&config.redis_url)?)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            .with_performance_config(|p| {
                // A command waits at most this long (Redis down): the caller decides what then.
                p.default_command_timeout = Duration::from_secs(2);
            })
            // Reconnect forever, every 100 ms to 2 s: a Redis restart must not end the node.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()?;
        redis.init().await?;
        let (lost, lost_rx) = tokio::sync::mpsc::unbounded_channel();
        let cluster = Cluster {
            redis,
            started_at_ms: unix_ms(),
            heartbeat: Script::from_lua(HEARTBEAT),
            config,
            live: RwLock::new(Arc::from([])),
            held: Mutex::new(lease::Held::new()),
            lost,
            lost_rx: Mutex::new(Some(lost_rx)),
            draining: std::sync::atomic::AtomicBool::new(false),
            load: Mutex::new(Load::default()),
            stats: ClusterStats::default(),
            sticky_until: Mutex::new(None),
        };
        // A node restarted under the same id finds its previous registration until that
        // expires: wait that long. A live twin keeps renewing its own, and is refused.
        let patience = tokio::time::Instant::now() + cluster.config.node_ttl;
        while !cluster.beat(Load::default(), true).await? {
            if tokio::time::Instant::now() >= patience {
                let id = cluster.config.node_id.clone();
                let _ = cluster.redis.quit().await;
                return Err(ClusterError::DuplicateId(id));
            }
            tokio::time::sleep(cluster.config.node_ttl / 8).await;
        }
        tracing::info!(
            node = %cluster.config.node_id,
            nodes = cluster.live_nodes().len(),
            "joined the cluster"
        );
        Ok(Arc::new(cluster))
    }

    /// True when `id` is a live node (as of the last heartbeat).
    pub fn is_live(&self, id: &str) -> bool {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|n| n.id == id)
    }

    /// The live node `id`, if it is one.
    pub fn live_node(&self, id: &str) -> Option<NodeInfo> {
        self.live_nodes().iter().find(|n| n.id == id).cloned()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// The live nodes as of the last heartbeat, sorted by id (this node included while Redis
    /// answers).
    pub fn live_nodes(&self) -> Arc<[NodeInfo]> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The rooms (by journal key) whose lease another node took, to be stopped here. Given
    /// once (to the router).
    pub fn lost_leases(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.lost_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Says in this node's registration, at once, that it drains: the other nodes stop placing
    /// rooms on it.
    ///
    /// # Errors
    /// Redis did not answer (the next heartbeats say it).
    pub async fn announce_draining(&self) -> Result<(), ClusterError> {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let load = *self.load.lock().unwrap_or_else(PoisonError::into_inner);
        self.beat(load, false).await.map(|_| ())
    }

    /// True once this node announced it drains.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The node placement gives `room` among the live nodes that are not draining.
    pub fn placed(&self, room: &str) -> Option<String> {
        let live = self.live_nodes();
        let me = self.node_id();
        let draining_here = self.is_draining();
        placement::owner(
            room,
            live.iter()
                .filter(|n| !(n.draining || draining_here && n.id == me))
                .map(|n| n.id.as_str()),
        )
        .map(str::to_owned)
    }

    /// Whether Redis answers.
    ///
    /// # Errors
    /// It does not, in time.
    pub async fn ping(&self) -> Result<(), ClusterError> {
        let _: String = self.redis.ping(None).await?;
        Ok(())
    }

    /// Renews this node's registration (and its room leases) every quarter of its expiry, with the load `load`
    /// reports, until `stop`; then takes the registration out (so that the others stop counting
    /// this node at once rather than when it expires).
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        load: impl Fn() -> Load + Send + 'static,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(cluster.config.node_ttl / 4);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = every.tick() => {
                        let beat = match cluster.beat(load(), false).await {
                            Ok(_) => cluster.renew_leases().await,
                            Err(e) => Err(e),
                        };
                        // Said once when it starts failing and once when it recovers, not
                        // four times a second while Redis is away.
                        match beat {
                            Err(e) if !failing => {
                                failing = true;
                                tracing::warn!(error = %e, "cluster heartbeat failing");
                            }
                            Ok(()) if failing => {
                                failing = false;
                                tracing::info!("cluster heartbeat back");
                            }
                            _ => {}
                        }
                    }
                }
            }
            cluster.leave().await;
        })
    }

    /// Takes this node's registration out.
    pub async fn leave(&self) {
        let key = format!("{}{}", self.node_prefix(), self.config.node_id);
        let out: Result<(), _> = self
            .redis
            .eval(
                "redis.call('DEL', KEYS[2]) redis.call('SREM', KEYS[1], ARGV[1]) return 1",
                vec![self.nodes_key(), key],
                vec![self.config.node_id.clone()],
            )
            .await
            .map(|_: i64| ());
        if let Err(e) = out {
            tracing::warn!(error = %e, "could not leave the cluster; the registration expires");
        }
    }

    /// One heartbeat: register (refusing a taken id when `new`), read the live nodes back.
    /// `Ok(false)` when `new` and the id was taken.
    async fn beat(&self, load: Load, new: bool) -> Result<bool, ClusterError> {
        *self.load.lock().unwrap_or_else(PoisonError::into_inner) = load;
        let me = NodeInfo {
            id: self.config.node_id.clone(),
            addr: self.config.advertise.clone(),
            link: self.config.link.clone(),
            started_at_ms: self.started_at_ms,
            heartbeat_at_ms: unix_ms(),
            rooms: load.rooms,
            connections: load.connections,
            draining: self.is_draining(),
        };
        let info = serde_json::to_string(&me)
            .map_err(|e| ClusterError::Config(format!("node info: {e}")))?;
        let ttl = u64::try_from(self.config.node_ttl.as_millis()).unwrap_or(u64::MAX);
        let reply: Option<Vec<String>> = self
            .heartbeat
            .evalsha_with_reload(
                &self.redis,
                vec![self.nodes_key()],
                vec![
                    self.node_prefix(),
                    me.id.clone(),
                    info,
                    ttl.to_string(),
                    if new { "new" } else { "renew" }.to_owned(),
                ],
            )
            .await?;
        let Some(listed) = reply else {
            return Ok(false);
        };
        let (existed, listed) = listed
            .split_first()
            .map_or((true, &[][..]), |(e, rest)| (e == "1", rest));
        let now = std::time::Instant::now();
        let mut sticky = self
            .sticky_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !new && !existed {
            // This node's own registration was gone: Redis lost its data, so the others' are
            // gone too until their next heartbeats. Do not take them for dead meanwhile.
            tracing::warn!(
                "this node's registration was gone (Redis restarted?); registering again"
            );
            *sticky = Some(now + self.config.node_ttl * 2);
        }
        let keep_missing = sticky.is_some_and(|until| now < until);
        drop(sticky);
        let mut live: Vec<NodeInfo> = listed
            .iter()
            .filter_map(|raw| match serde_json::from_str(raw) {
                Ok(node) => Some(node),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable node registration skipped");
                    None
                }
            })
            .collect();
        if keep_missing {
            let before = self.live_nodes();
            let missing: Vec<NodeInfo> = before
                .iter()
                .filter(|old| !live.iter().any(|n| n.id == old.id))
                .cloned()
                .collect();
            live.extend(missing);
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = live.into();
        Ok(true)
    }

    fn nodes_key(&self) -> String {
        format!("{{{}}}:nodes", self.config.prefix)
    }

    pub(crate) fn node_prefix(&self) -> String {
        format!("{{{}}}:node:", self.config.prefix)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
