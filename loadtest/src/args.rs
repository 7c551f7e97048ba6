//! The command line ([`Args`], parsed by clap) and its validated form ([`Config`]), which is what
//! the rest of the harness reads. Every check that needs no network happens here, before any
//! account is registered.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use crate::target::Target;

/// Accounts registered when `--accounts` is not given (or fewer, with fewer users).
pub const DEFAULT_MAX_ACCOUNTS: usize = 50;
/// Highest send rate of one connection: above it the ticker period would be under a
/// millisecond, which says the command line is wrong rather than the hub slow.
pub const MAX_RATE_PER_CONNECTION: f64 = 1000.0;
/// Longest load phase accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `loadtest`: many real WebSocket clients against a hub, with a latency/throughput report.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Args {
    /// Base URL of the hub (plain http://; loopback only unless --allow-remote).
    #[arg(long, env = "LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// WebSocket connections to open (N).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Workspaces (rooms) to spread the connections over (R); connection i joins room i % R.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Messages per second in total across all connections (M); 0 only holds connections open.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Length of the load phase, in seconds (S).
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// What each connection sends.
    #[arg(long, value_enum, default_value_t = Op::Broadcast)]
    pub op: Op,
    /// Accounts to register (K; default min(N, 50)); connection i uses account i % K.
    #[arg(long)]
    pub accounts: Option<usize>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Print the final report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Allow a hub that is not on a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
}

/// The command each connection sends during the load phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `broadcast` an `lt` event that the room relays to every member, sender included.
    #[value(name = "broadcast")]
    Broadcast,
    /// `task_update` the connection's own task; every member receives `task_updated`.
    #[value(name = "task_update")]
    TaskUpdate,
}

impl Op {
    /// The name used on the command line and in the report.
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::Broadcast => "broadcast",
            Op::TaskUpdate => "task_update",
        }
    }
}

/// A validated command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The hub.
    pub target: Target,
    /// Connections to open.
    pub users: usize,
    /// Rooms.
    pub rooms: usize,
    /// Accounts.
    pub accounts: usize,
    /// Messages per second in total.
    pub rate: f64,
    /// Load phase length.
    pub duration: Duration,
    /// What to send.
    pub op: Op,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// JSON report instead of a table.
    pub json: bool,
}

impl Args {
    /// Checks the arguments against each other.
    ///
    /// # Errors
    /// The first argument that is out of range, in words a user can act on.
    pub fn validate(self) -> anyhow::Result<Config> {
        let target = Target::parse(&self.url, self.allow_remote).context("--url")?;
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        if self.rooms == 0 || self.rooms > self.users {
            bail!(
                "--rooms must be between 1 and --users ({}): a room nobody joins measures nothing",
                self.users
            );
        }
        let accounts = self
            .accounts
            .unwrap_or_else(|| self.users.min(DEFAULT_MAX_ACCOUNTS));
        if accounts == 0 || accounts > self.users {
            bail!("--accounts must be between 1 and --users ({})", self.users);
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            bail!("--rate must be a number of messages per second, 0 or more");
        }
        // Precision loss only matters beyond 2^53 users.
        #[allow(clippy::cast_precision_loss)]
        let per_connection = self.rate / self.users as f64;
        if per_connection > MAX_RATE_PER_CONNECTION {
            bail!(
                "--rate {} over {} connections is {per_connection:.0}/s each; at most \
                 {MAX_RATE_PER_CONNECTION}/s per connection",
                self.rate,
                self.users
            );
        }
        let duration = Duration::from_secs(self.duration);
        if duration.is_zero() || duration > MAX_DURATION {
            bail!(
                "--duration must be between 1 and {} seconds",
                MAX_DURATION.as_secs()
            );
        }
        if self.connect_concurrency == 0 {
            bail!("--connect-concurrency must be at least 1");
        }
        Ok(Config {
            target,
            users: self.users,
            rooms: self.rooms,
            accounts,
            rate: self.rate,
            duration,
            op: self.op,
            connect_concurrency: self.connect_concurrency,
            json: self.json,
        })
    }
}

impl Config {
    /// Messages per second each connection sends.
    pub fn rate_per_connection(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let users = self.users as f64;
        self.rate / users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["loadtest"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)?.validate()
    }

    #[test]
    fn the_defaults_are_valid() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.users, c.rooms, c.accounts), (100, 10, 50));
        assert_eq!(c.op, Op::Broadcast);
        assert!((c.rate_per_connection() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn accounts_default_to_at_most_fifty_and_at_most_users() {
        assert_eq!(
            parse(&["--users", "7", "--rooms", "2"]).unwrap().accounts,
            7
        );
        assert_eq!(parse(&["--users", "500"]).unwrap().accounts, 50);
        assert_eq!(
            parse(&["--users", "500", "--accounts", "3"])
                .unwrap()
                .accounts,
            3
        );
        assert!(parse(&["--users", "5", "--rooms", "1", "--accounts", "6"]).is_err());
        assert!(parse(&["--accounts", "0"]).is_err());
    }

    #[test]
    fn rooms_users_rate_and_duration_are_bounded() {
        assert!(parse(&["--users", "0"]).is_err());
        assert!(parse(&["--rooms", "0"]).is_err());
        assert!(parse(&["--users", "5", "--rooms", "6"]).is_err());
        assert!(parse(&["--rate", "-1"]).is_err());
        assert!(parse(&["--rate", "NaN"]).is_err());
        assert!(parse(&["--rate", "0"]).is_ok());
        assert!(parse(&["--users", "1", "--rooms", "1", "--rate", "5000"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--connect-concurrency", "0"]).is_err());
    }

    #[test]
    fn ops_use_their_wire_names() {
        assert_eq!(parse(&["--op", "task_update"]).unwrap().op, Op::TaskUpdate);
        assert_eq!(parse(&["--op", "broadcast"]).unwrap().op, Op::Broadcast);
        assert!(parse(&["--op", "task-update"]).is_err());
    }

    #[test]
    fn remote_urls_are_refused_without_the_flag() {
        let err = parse(&["--url", "http://192.0.2.1:8080"]).unwrap_err();
        assert!(format!("{err:#}").contains("--allow-remote"), "{err:#}");
        assert!(parse(&["--url", "http://192.0.2.1:8080", "--allow-remote"]).is_ok());
    }
}
