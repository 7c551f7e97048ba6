//! The hub's configuration: one tree of settings, each with a default that runs with no setup,
//! each overridable by a command-line flag and a `HUB_*` environment variable (`DATABASE_URL`
//! for the database). `hub --help` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actors::RoomConfig;
use clap::{Args, Parser};

use crate::limits::rate::Rate;

/// Everything the hub can be told.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hub",
    version,
    about = "A realtime collaboration hub: rooms over WebSockets."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HUB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder for the embedded database and the generated JWT secret.
    #[arg(long, env = "HUB_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL; without it, a SQLite file in the data folder.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Secret for signing access tokens (at least 32 bytes). Without it, one is generated and
    /// kept in the data folder.
    #[arg(long, env = "HUB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Log filter (`info`, `hub=debug,info`, ...).
    #[arg(long, env = "HUB_LOG", default_value = "info")]
    pub log: String,
    /// Auth settings.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// WebSocket settings.
    #[command(flatten)]
    pub ws: WsConfig,
    /// Room settings.
    #[command(flatten)]
    pub rooms: RoomSettings,
    /// HTTP settings.
    #[command(flatten)]
    pub http: HttpConfig,
    /// Abuse throttles.
    #[command(flatten)]
    pub limits: LimitsConfig,
    /// STUN and TURN servers for conference peers.
    #[command(flatten)]
    pub ice: crate::turn::IceConfig,
    /// Cluster mode (with `REDIS_URL`).
    #[command(flatten)]
    pub cluster: ClusterSettings,
    /// Mail and the job outbox.
    #[command(flatten)]
    pub mail: MailConfig,
    /// Bearer token for the operator routes under `/api/v1/admin` (at least 32 bytes). Without
    /// it, those routes answer 404.
    #[arg(long, env = "HUB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Seconds to wait for connections and rooms to finish at shutdown.
    #[arg(long, env = "HUB_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
    /// Enables `POST /debug/rooms/{id}/crash`, which panics a room (for tests of recovery).
    #[arg(long, env = "HUB_FAULT_INJECTION")]
    pub fault_injection: bool,
}

/// Cluster mode: with a Redis URL (and a PostgreSQL database) this process is one node of a
/// cluster; without, it runs alone.
#[derive(Debug, Clone, Args)]
pub struct ClusterSettings {
    /// `redis://host:port[/db]`: join the cluster coordinated through this Redis. Needs
    /// `DATABASE_URL` to be PostgreSQL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This node's id in the cluster (letters, digits, `-`, `_`, `.`; at most 64). Without it,
    /// one is made from the host name and the listening port.
    #[arg(long, env = "HUB_NODE_ID")]
    pub node_id: Option<String>,
    /// The `host:port` other nodes and clients reach this node at. Without it, the address it
    /// listens on.
    #[arg(long, env = "HUB_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// The cluster's name in Redis: nodes with the same Redis and prefix form one cluster.
    #[arg(long, env = "HUB_CLUSTER_PREFIX", default_value = "hub")]
    pub cluster_prefix: String,
    /// Milliseconds a node stays listed without a heartbeat (heartbeats go out four times as
    /// often). A killed node's rooms move after about this long.
    #[arg(long, env = "HUB_NODE_TTL_MS", default_value_t = 2000)]
    pub node_ttl_ms: u64,
    /// Where this node listens for the other nodes' links (`ip:port`). Without it, the HTTP
    /// address's IP and a free port; other nodes learn it from Redis.
    #[arg(long, env = "HUB_LINK_ADDR")]
    pub link_addr: Option<SocketAddr>,
}

/// Mail (invitations, password resets) and the outbox worker that sends it.
#[derive(Debug, Clone, Args)]
pub struct MailConfig {
    /// `smtp://user:pass@host:port` (STARTTLS when the server offers it) or
    /// `smtps://user:pass@host:port` (TLS from the start). Without it, each mail is written as
    /// an `.eml` file in `<data dir>/mail/`.
    #[arg(long, env = "HUB_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of the hub's mail.
    #[arg(long, env = "HUB_MAIL_FROM", default_value = "The hub <hub@localhost>")]
    pub mail_from: String,
    /// The address people reach the app at, for the links in mail (`https://app.example.com`).
    /// Without it, `http://` and the listening address.
    #[arg(long, env = "HUB_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Hours an invitation link works.
    #[arg(long, env = "HUB_INVITE_TTL_HOURS", default_value_t = 168)]
    pub invite_ttl_hours: u64,
    /// Minutes a password reset link works.
    #[arg(long, env = "HUB_RESET_TTL_MINUTES", default_value_t = 60)]
    pub reset_ttl_minutes: u64,
    /// Attempts at a job before it is parked as dead.
    #[arg(long, env = "HUB_JOB_MAX_ATTEMPTS", default_value_t = 8)]
    pub job_max_attempts: u32,
    /// The first retry's delay in milliseconds; each next one doubles (at most an hour).
    #[arg(long, env = "HUB_JOB_BACKOFF_MS", default_value_t = 2000)]
    pub job_backoff_ms: u64,
    /// How often the worker looks for due jobs, in milliseconds (0: no worker on this node).
    #[arg(long, env = "HUB_JOB_POLL_MS", default_value_t = 1000)]
    pub job_poll_ms: u64,
}

/// Token lifetimes.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// Access token lifetime, in seconds.
    #[arg(long, env = "HUB_ACCESS_TTL_SECS", default_value_t = 900)]
    pub access_ttl_secs: u64,
    /// Refresh token lifetime, in days.
    #[arg(long, env = "HUB_REFRESH_TTL_DAYS", default_value_t = 30)]
    pub refresh_ttl_days: u64,
}

/// Per-connection limits.
#[derive(Debug, Clone, Args)]
pub struct WsConfig {
    /// Largest text frame answered; larger ones get `frame_too_large` (up to 16x this, beyond
    /// which the connection is closed with 1009).
    #[arg(long, env = "HUB_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Frames queued per connection before it counts as a slow consumer.
    #[arg(long, env = "HUB_OUTBOX_FRAMES", default_value_t = 1024)]
    pub outbox_frames: usize,
    /// Seconds between pings.
    #[arg(long, env = "HUB_PING_SECS", default_value_t = 20)]
    pub ping_secs: u64,
    /// Seconds without a data frame or a pong from the client before it is closed (the hub
    /// pings every `ping_secs`; any WebSocket client answers).
    #[arg(long, env = "HUB_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Sustained messages per second per connection.
    #[arg(long, env = "HUB_RATE_PER_SEC", default_value_t = 10)]
    pub rate_per_sec: u32,
    /// Burst allowance per connection.
    #[arg(long, env = "HUB_RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,
    /// WebRTC `signal` commands per second per connection beyond the message rate: a presenter
    /// negotiates with every attendee over one connection (an offer, candidates, an end marker
    /// each).
    #[arg(long, env = "HUB_SIGNAL_RATE_PER_SEC", default_value_t = 100)]
    pub signal_rate_per_sec: u32,
    /// Burst allowance of `signal` commands per connection.
    #[arg(long, env = "HUB_SIGNAL_BURST", default_value_t = 500)]
    pub signal_burst: u32,
    /// Seconds a write to a client may stall (the client not reading) before the connection is
    /// closed as a slow consumer and its socket shut down.
    #[arg(long, env = "HUB_WRITE_TIMEOUT_SECS", default_value_t = 10)]
    pub write_timeout_secs: u64,
    /// Open WebSocket connections per user.
    #[arg(long, env = "HUB_MAX_CONNS_PER_USER", default_value_t = 50)]
    pub max_conns_per_user: usize,
    /// Open WebSocket connections per client address.
    #[arg(long, env = "HUB_MAX_CONNS_PER_IP", default_value_t = 1000)]
    pub max_conns_per_ip: usize,
}

/// HTTP connection handling.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Seconds a client has to send a request's headers, counted from the connection opening or
    /// the previous response (so an idle keep-alive connection is closed after as long).
    #[arg(long, env = "HUB_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a REST request may take, body upload included.
    #[arg(long, env = "HUB_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Largest REST request body, in bytes.
    #[arg(long, env = "HUB_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Take the client's address from the last `X-Forwarded-For` entry (only behind a proxy
    /// that sets it; otherwise clients could choose their own address).
    #[arg(long, env = "HUB_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Browser origins allowed to call the REST API from another site (`https://app.example.com`,
    /// comma-separated, exact). None by default: no CORS header is sent.
    #[arg(long, env = "HUB_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

/// The shared abuse throttles, as `COUNT/UNIT[+BURST]` (UNIT `s`, `min` or `h`).
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// REST reads (GET) per user.
    #[arg(long, env = "HUB_LIMIT_READ_PER_USER", default_value = "100/min+100")]
    pub read_per_user: Rate,
    /// REST writes per user.
    #[arg(long, env = "HUB_LIMIT_WRITE_PER_USER", default_value = "100/min+100")]
    pub write_per_user: Rate,
    /// Offline-sync calls (push, pull, status) per user, on top of the above.
    #[arg(long, env = "HUB_LIMIT_SYNC_PER_USER", default_value = "5/s+50")]
    pub sync_per_user: Rate,
    /// REST reads per client address.
    #[arg(long, env = "HUB_LIMIT_READ_PER_IP", default_value = "100/s+1000")]
    pub read_per_ip: Rate,
    /// REST writes per client address.
    #[arg(long, env = "HUB_LIMIT_WRITE_PER_IP", default_value = "50/s+500")]
    pub write_per_ip: Rate,
    /// Calls to the auth routes (register, login, refresh, logout, password reset, accepting an
    /// invitation) per client address.
    #[arg(long, env = "HUB_LIMIT_AUTH_PER_IP", default_value = "30/min+60")]
    pub auth_per_ip: Rate,
    /// Registrations per client address.
    #[arg(long, env = "HUB_LIMIT_REGISTER_PER_IP", default_value = "20/h+20")]
    pub register_per_ip: Rate,
    /// Registration attempts per email.
    #[arg(long, env = "HUB_LIMIT_REGISTER_PER_EMAIL", default_value = "5/h+5")]
    pub register_per_email: Rate,
    /// Failed logins per (email, client address) before that pair must wait.
    #[arg(
        long,
        env = "HUB_LIMIT_LOGIN_FAILURES_PER_PAIR",
        default_value = "5/15min"
    )]
    pub login_failures_per_pair: Rate,
    /// Failed logins per email, from any address.
    #[arg(
        long,
        env = "HUB_LIMIT_LOGIN_FAILURES_PER_EMAIL",
        default_value = "20/h+20"
    )]
    pub login_failures_per_email: Rate,
    /// Failed logins per client address, for any email (password spraying).
    #[arg(
        long,
        env = "HUB_LIMIT_LOGIN_FAILURES_PER_IP",
        default_value = "20/h+20"
    )]
    pub login_failures_per_ip: Rate,
    /// Member additions by an email that has no account, per user (an account-existence probe).
    #[arg(
        long,
        env = "HUB_LIMIT_LOOKUP_MISSES_PER_USER",
        default_value = "20/h+20"
    )]
    pub lookup_misses_per_user: Rate,
    /// Member additions by an email that has no account, per client address.
    #[arg(
        long,
        env = "HUB_LIMIT_LOOKUP_MISSES_PER_IP",
        default_value = "60/h+60"
    )]
    pub lookup_misses_per_ip: Rate,
    /// Workspaces one user may create per hour.
    #[arg(long, env = "HUB_QUOTA_WORKSPACES_PER_HOUR", default_value_t = 20)]
    pub workspaces_per_hour: u32,
    /// Conference sessions one user may create per hour.
    #[arg(long, env = "HUB_QUOTA_SESSIONS_PER_HOUR", default_value_t = 50)]
    pub sessions_per_hour: u32,
    /// Guest joins (`POST /api/v1/sessions/{id}/join`) per client address.
    #[arg(long, env = "HUB_LIMIT_GUEST_JOINS_PER_IP", default_value = "60/m+200")]
    pub guest_joins_per_ip: Rate,
}

/// Room lifecycle and durability.
#[derive(Debug, Clone, Args)]
pub struct RoomSettings {
    /// Seconds a room with no one connected stays up.
    #[arg(long, env = "HUB_ROOM_IDLE_SECS", default_value_t = 300)]
    pub room_idle_secs: u64,
    /// Milliseconds a workspace member whose node was lost shows as `suspect` (cluster mode)
    /// before `offline`; reconnecting within it shows no leave and no join.
    #[arg(long, env = "HUB_PRESENCE_GRACE_MS", default_value_t = 10_000)]
    pub presence_grace_ms: u64,
    /// Days a workspace's activity feed is kept (past the journal's trimming).
    #[arg(long, env = "HUB_ACTIVITY_RETENTION_DAYS", default_value_t = 365)]
    pub activity_retention_days: u64,
    /// Snapshot a room after this many events...
    #[arg(long, env = "HUB_SNAPSHOT_EVERY", default_value_t = 500)]
    pub snapshot_every: u64,
    /// ...or this many seconds after the last snapshot, if anything changed.
    #[arg(long, env = "HUB_SNAPSHOT_SECS", default_value_t = 30)]
    pub snapshot_secs: u64,
    /// Journal entries kept behind the latest snapshot for replay to reconnecting clients.
    #[arg(long, env = "HUB_JOURNAL_RETAIN", default_value_t = 10_000)]
    pub journal_retain: u64,
    /// Longest gap replayed event by event to a reconnecting client; a client further behind
    /// gets a snapshot instead.
    #[arg(long, env = "HUB_REPLAY_MAX_EVENTS", default_value_t = 10_000)]
    pub replay_max_events: u64,
    /// Conference Q&A: questions one attendee may ask per window.
    #[arg(long, env = "HUB_QA_MAX_QUESTIONS", default_value_t = 3)]
    pub qa_max_questions: usize,
    /// Conference Q&A: the window of that rate, in seconds.
    #[arg(long, env = "HUB_QA_WINDOW_SECS", default_value_t = 60)]
    pub qa_window_secs: u64,
    /// Conference Q&A: most links in one question.
    #[arg(long, env = "HUB_QA_MAX_LINKS", default_value_t = 1)]
    pub qa_max_links: usize,
    /// Conference Q&A: words or phrases refused in questions, comma-separated (matched anywhere
    /// in the text, ignoring case).
    #[arg(long, env = "HUB_QA_BLOCKLIST", value_delimiter = ',')]
    pub qa_blocklist: Vec<String>,
}

impl Config {
    /// The defaults (and whatever `HUB_*` variables are set), as if run with no flags.
    pub fn from_env() -> Config {
        Config::parse_from(["hub"])
    }

    /// The database to use: the configured URL, or a SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("hub.db").display()),
        }
    }

    /// How this process joins a cluster, when `REDIS_URL` is set; `listening` is the address
    /// it listens on (the advertised one by default).
    ///
    /// # Errors
    /// Cluster mode without PostgreSQL: nodes share one database, which SQLite cannot be.
    pub fn cluster_config(
        &self,
        listening: SocketAddr,
        link: SocketAddr,
    ) -> anyhow::Result<Option<actors::cluster::ClusterConfig>> {
        let Some(redis_url) = &self.cluster.redis_url else {
            return Ok(None);
        };
        anyhow::ensure!(
            persistence::Backend::of_url(&self.database_url()) == persistence::Backend::Postgres,
            "cluster mode (REDIS_URL is set) needs a PostgreSQL database shared by every node: \
             set DATABASE_URL=postgres://...; the embedded SQLite file is for one node alone"
        );
        anyhow::ensure!(
            self.jwt_secret.is_some(),
            "cluster mode (REDIS_URL is set) needs HUB_JWT_SECRET, the same on every node: a \
             token one node signs must be accepted by the others"
        );
        let node_id = match &self.cluster.node_id {
            Some(id) => id.clone(),
            None => {
                let host = std::env::var("HOSTNAME")
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "node".to_owned());
                let host: String = host
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .take(48)
                    .collect();
                format!("{host}-{}", listening.port())
            }
        };
        let advertise = self
            .cluster
            .advertise_addr
            .clone()
            .unwrap_or_else(|| listening.to_string());
        // The link is reached at the advertised host (unless it listens on one address only).
        let link = if link.ip().is_unspecified() {
            let host = advertise
                .rsplit_once(':')
                .map_or(advertise.as_str(), |(h, _)| h);
            format!("{host}:{}", link.port())
        } else {
            link.to_string()
        };
        Ok(Some(actors::cluster::ClusterConfig {
            redis_url: redis_url.clone(),
            prefix: self.cluster.cluster_prefix.clone(),
            node_id,
            advertise,
            link,
            node_ttl: Duration::from_millis(self.cluster.node_ttl_ms.max(200)),
        }))
    }

    /// What rooms are told.
    pub fn room_config(&self) -> RoomConfig {
        RoomConfig {
            idle_timeout: Duration::from_secs(self.rooms.room_idle_secs),
            presence_grace: Duration::from_millis(self.rooms.presence_grace_ms),
            snapshot_every: self.rooms.snapshot_every.max(1),
            snapshot_interval: Duration::from_secs(self.rooms.snapshot_secs.max(1)),
            journal_retain: self.rooms.journal_retain,
            replay_limit: self.rooms.replay_max_events,
            replay_buffer: actors::room::page_size(self.ws.outbox_frames),
            fault_injection: self.fault_injection,
            spam: actors::room::SpamRules {
                questions_per_window: self.rooms.qa_max_questions.max(1),
                window: Duration::from_secs(self.rooms.qa_window_secs.max(1)),
                max_links: self.rooms.qa_max_links,
                blocklist: self
                    .rooms
                    .qa_blocklist
                    .iter()
                    .map(|w| w.trim().to_owned())
                    .filter(|w| !w.is_empty())
                    .collect(),
            },
            ..RoomConfig::default()
        }
    }
}
