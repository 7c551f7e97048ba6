//! The hub's configuration: one tree of settings, each with a default that runs with no setup,
//! each overridable by a command-line flag and a `HUB_*` environment variable (`DATABASE_URL`
//! for the database). `hub --help` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actors::RoomConfig;
use clap::{Args, Parser};

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
    /// Seconds to wait for connections and rooms to finish at shutdown.
    #[arg(long, env = "HUB_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
    /// Enables `POST /debug/rooms/{id}/crash`, which panics a room (for tests of recovery).
    #[arg(long, env = "HUB_FAULT_INJECTION")]
    pub fault_injection: bool,
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
}

/// Room lifecycle and durability.
#[derive(Debug, Clone, Args)]
pub struct RoomSettings {
    /// Seconds a room with no one connected stays up.
    #[arg(long, env = "HUB_ROOM_IDLE_SECS", default_value_t = 300)]
    pub room_idle_secs: u64,
    /// Snapshot a room after this many events...
    #[arg(long, env = "HUB_SNAPSHOT_EVERY", default_value_t = 500)]
    pub snapshot_every: u64,
    /// ...or this many seconds after the last snapshot, if anything changed.
    #[arg(long, env = "HUB_SNAPSHOT_SECS", default_value_t = 30)]
    pub snapshot_secs: u64,
    /// Journal entries kept behind the latest snapshot for replay to reconnecting clients.
    #[arg(long, env = "HUB_JOURNAL_RETAIN", default_value_t = 10_000)]
    pub journal_retain: u64,
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

    /// What rooms are told.
    pub fn room_config(&self) -> RoomConfig {
        RoomConfig {
            idle_timeout: Duration::from_secs(self.rooms.room_idle_secs),
            snapshot_every: self.rooms.snapshot_every.max(1),
            snapshot_interval: Duration::from_secs(self.rooms.snapshot_secs.max(1)),
            journal_retain: self.rooms.journal_retain,
            fault_injection: self.fault_injection,
            ..RoomConfig::default()
        }
    }
}
