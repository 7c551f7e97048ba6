//! The command line ([`Args`], parsed by clap) and its validated form ([`Config`]), which is what
//! the rest of the harness reads. Every check that needs no network happens here, before any
//! account is registered.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use crate::addrs::SourceAddrs;
use crate::target::Target;

/// Accounts registered when `--accounts` is not given (or fewer, with fewer users).
pub const DEFAULT_MAX_ACCOUNTS: usize = 50;
/// Highest send rate of one connection: above it the ticker period would be under a
/// millisecond, which says the command line is wrong rather than the hub slow.
pub const MAX_RATE_PER_CONNECTION: f64 = 1000.0;
/// Longest load phase (and longest `--hold`) accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Questions one attendee may ask per minute (the hub's Q&A spam rule).
pub const MAX_QUESTIONS_PER_ASKER: usize = 3;
/// Questions a session holds at most.
pub const MAX_QUESTIONS: usize = 5000;
/// Highest `--storm` rate accepted: beyond it the schedule's step is under 10 µs, finer than
/// the timer that drives it.
pub const MAX_STORM_RATE: f64 = 100_000.0;

/// `loadtest`: many real WebSocket clients against a hub, with a latency/throughput report.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Args {
    /// Base URL of the hub (plain http://; loopback only unless --allow-remote). Several,
    /// comma-separated, for the nodes of a cluster: connection i goes to node i % n (so a room
    /// of n members or more has members on every node); the REST setup uses the first.
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
    /// What to load: workspace rooms (the default), Q&A votes in conference sessions, or
    /// WebRTC negotiations through a session's signaling.
    #[arg(long, value_enum, default_value_t = Scenario::Rooms)]
    pub scenario: Scenario,
    /// `--scenario votes`: questions asked in each session before the votes start (Q).
    #[arg(long, value_name = "Q", default_value_t = 10)]
    pub questions: usize,
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
    /// Loopback source addresses to spread the sockets over (127.0.0.2, 127.0.0.3, ...;
    /// connection i uses address i % N), each bound before connecting: one address has only
    /// the ephemeral port range (~28 000 ports). `auto`: one address per 20 000 connections,
    /// only for a hub on 127.0.0.0/8; 0: bind nothing.
    #[arg(long, value_name = "N|auto", default_value = "auto", value_parser = SourceAddrs::parse)]
    pub source_addrs: SourceAddrs,
    /// The hub's process id: report its memory (VmRSS) and CPU time (from /proc) before
    /// connecting, with the connections idle, and at the end, per connection and per event.
    /// Several, comma-separated (a cluster's nodes): their sums.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    pub hub_pid: Vec<u32>,
    /// Hold the connections idle for this many seconds after connecting, before the load phase
    /// (the hub's RSS is read again at its end); with --rate 0, a memory run.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub hold: u64,
    /// Connections (the last K indices, so one per room for K <= --rooms) that stop reading
    /// after joining and send nothing, so their buffers fill; the report shows how the hub
    /// closed them and the other members' figures on their own.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub slow_readers: usize,
    /// Connection storm: open --storm-count more connections at this many per second (open
    /// loop, on a fixed schedule) during the load phase, each through the whole path (TCP,
    /// upgrade with its token, hello, join). The hub must be started with
    /// HUB_MAX_CONNS_PER_USER (default 50) and HUB_MAX_CONNS_PER_IP (default 1000) raised above
    /// what the run holds, and HUB_LIMIT_READ_PER_IP (default 100/s+1000, charged by every
    /// upgrade) above the storm's rate per source address; its refusals are reported as
    /// `HTTP 429` failures with the hub's code.
    #[arg(long, value_name = "RATE")]
    pub storm: Option<f64>,
    /// Connections the storm opens (needs --storm).
    #[arg(long, value_name = "N")]
    pub storm_count: Option<usize>,
    /// `--scenario chaos`: the pid of a node to kill (`SIGKILL`) during the run.
    #[arg(long, value_name = "PID")]
    pub chaos_pid: Option<u32>,
    /// `--scenario chaos`: seconds into the run to kill it (default: a third of --duration).
    #[arg(long, value_name = "SECS")]
    pub chaos_at: Option<f64>,
    /// `--scenario chaos`: a shell command that starts the killed node again (in the
    /// background), run --chaos-restart-after seconds after the kill.
    #[arg(long, value_name = "CMD")]
    pub chaos_restart: Option<String>,
    /// Seconds between the kill and --chaos-restart.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub chaos_restart_after: f64,
}

/// `--chaos-*`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    /// The node to kill.
    pub pid: u32,
    /// When, from the start of the writes.
    pub at: Duration,
    /// How to start it again.
    pub restart: Option<String>,
    /// When, after the kill.
    pub restart_after: Duration,
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
    /// What to load.
    pub scenario: Scenario,
    /// Questions per session (`--scenario votes`).
    pub questions: usize,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// JSON report instead of a table.
    pub json: bool,
    /// Source addresses, as asked (resolved against the hub's address when dialing).
    pub source_addrs: SourceAddrs,
    /// The hub's pids (its nodes'), for its memory and CPU figures.
    pub hub_pid: Vec<u32>,
    /// Every node's address (`target` is the first).
    pub nodes: Vec<Target>,
    /// Idle time between connecting and the load phase.
    pub hold: Duration,
    /// Connections that stop reading after joining: the last `slow_readers` indices.
    pub slow_readers: usize,
    /// The connection storm, if any.
    pub storm: Option<StormConfig>,
    /// The node to kill, for `--scenario chaos`.
    pub chaos: Option<ChaosConfig>,
}

/// `--scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Workspace rooms: members broadcast or update tasks (`--op`).
    Rooms,
    /// Conference sessions: guests ask questions and vote.
    Votes,
    /// Real WebRTC peers negotiate with a presenter peer through the hub.
    Webrtc,
    /// Durable writes through a cluster while a node is killed; every acknowledged write must
    /// be found afterwards.
    Chaos,
    /// Offline clients push batches of 100 queued operations over REST, back to back.
    Sync,
}

/// `--storm` and `--storm-count`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StormConfig {
    /// New connections per second.
    pub rate: f64,
    /// Connections opened by the storm.
    pub count: usize,
}

impl Args {
    /// Checks the arguments against each other.
    ///
    /// # Errors
    /// The first argument that is out of range, in words a user can act on.
    pub fn validate(self) -> anyhow::Result<Config> {
        let nodes = self
            .url
            .split(',')
            .map(|u| Target::parse(u.trim(), self.allow_remote))
            .collect::<Result<Vec<_>, _>>()
            .context("--url")?;
        let target = nodes[0].clone();
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
        if self.slow_readers > self.users - self.rooms {
            bail!(
                "--slow-readers must be at most --users minus --rooms ({}): every room keeps at \
                 least one member that reads and sends",
                self.users - self.rooms
            );
        }
        let senders = self.users - self.slow_readers;
        // Precision loss only matters beyond 2^53 users.
        #[allow(clippy::cast_precision_loss)]
        let per_connection = self.rate / senders as f64;
        if per_connection > MAX_RATE_PER_CONNECTION {
            bail!(
                "--rate {} over {senders} sending connections is {per_connection:.0}/s each; at \
                 most {MAX_RATE_PER_CONNECTION}/s per connection",
                self.rate,
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
        let hold = Duration::from_secs(self.hold);
        if hold > MAX_DURATION {
            bail!("--hold must be at most {} seconds", MAX_DURATION.as_secs());
        }
        if self.hub_pid.contains(&0) {
            bail!("--hub-pid must be a process id (the hub's, e.g. from `pgrep -x hub`)");
        }
        if let (SourceAddrs::Count(n @ 1..), Ok(ip)) =
            (self.source_addrs, target.host.parse::<std::net::IpAddr>())
            && !crate::addrs::is_loopback_v4(ip)
        {
            bail!(
                "--source-addrs {n} binds 127.0.0.x source addresses, which reach only a hub on \
                 127.0.0.0/8, not {ip}"
            );
        }
        let storm = storm_config(self.storm, self.storm_count)?;
        let chaos = match self.chaos_pid {
            None => None,
            Some(0) => bail!("--chaos-pid must be a process id"),
            Some(pid) => {
                let at = self.chaos_at.unwrap_or(self.duration as f64 / 3.0);
                if !at.is_finite() || at <= 0.0 || at >= self.duration as f64 {
                    bail!("--chaos-at must be within the run (0 < SECS < --duration)");
                }
                if !self.chaos_restart_after.is_finite() || self.chaos_restart_after < 0.0 {
                    bail!("--chaos-restart-after must be 0 or more seconds");
                }
                Some(ChaosConfig {
                    pid,
                    at: Duration::from_secs_f64(at),
                    restart: self.chaos_restart.clone(),
                    restart_after: Duration::from_secs_f64(self.chaos_restart_after),
                })
            }
        };
        if chaos.is_some() && self.scenario != Scenario::Chaos {
            bail!("--chaos-pid needs --scenario chaos");
        }
        if self.scenario == Scenario::Votes {
            votes_questions(self.questions, self.users / self.rooms)?;
        }
        Ok(Config {
            target,
            users: self.users,
            rooms: self.rooms,
            accounts,
            rate: self.rate,
            duration,
            op: self.op,
            scenario: self.scenario,
            questions: self.questions,
            connect_concurrency: self.connect_concurrency,
            json: self.json,
            source_addrs: self.source_addrs,
            hub_pid: self.hub_pid,
            nodes,
            hold,
            slow_readers: self.slow_readers,
            storm,
            chaos,
        })
    }
}

/// `--storm` and `--storm-count` go together.
fn storm_config(rate: Option<f64>, count: Option<usize>) -> anyhow::Result<Option<StormConfig>> {
    match (rate, count) {
        (None, None) => Ok(None),
        (None, Some(_)) => bail!("--storm-count needs --storm RATE"),
        (Some(_), None) => bail!("--storm needs --storm-count N (how many connections to open)"),
        (Some(rate), Some(count)) => {
            if !rate.is_finite() || rate <= 0.0 || rate > MAX_STORM_RATE {
                bail!(
                    "--storm must be a rate of new connections per second, above 0 and at most {MAX_STORM_RATE}"
                );
            }
            if count == 0 {
                bail!("--storm-count must be at least 1");
            }
            Ok(Some(StormConfig { rate, count }))
        }
    }
}

/// `--questions` against the hub's Q&A rules: each question is asked by one of its session's
/// voters (the smallest session has `voters` of them), and an attendee may ask at most
/// [`MAX_QUESTIONS_PER_ASKER`] per minute; a session holds at most [`MAX_QUESTIONS`].
fn votes_questions(questions: usize, voters: usize) -> anyhow::Result<()> {
    let most = MAX_QUESTIONS.min(voters * MAX_QUESTIONS_PER_ASKER);
    if questions == 0 || questions > most {
        bail!(
            "--questions must be between 1 and {most}: each session's voters ({voters} in the \
             smallest) ask them, at most {MAX_QUESTIONS_PER_ASKER} each, and a session holds at \
             most {MAX_QUESTIONS}"
        );
    }
    Ok(())
}

impl Config {
    /// Every node's WebSocket URL, comma-separated (for the report).
    pub fn urls_display(&self) -> String {
        self.nodes
            .iter()
            .map(Target::ws_display)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connections that send and read during the load phase: all but the slow readers.
    pub fn senders(&self) -> usize {
        self.users - self.slow_readers
    }

    /// Whether connection `idx` is a slow reader (the last `slow_readers` indices: consecutive
    /// indices join consecutive rooms, so they spread over the rooms).
    pub fn is_slow(&self, idx: usize) -> bool {
        idx >= self.senders()
    }

    /// Every connection the run opens: `--users` and the storm's.
    pub fn total_connections(&self) -> usize {
        self.users + self.storm.map_or(0, |s| s.count)
    }

    /// Messages per second each sending connection sends.
    pub fn rate_per_connection(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let senders = self.senders() as f64;
        self.rate / senders
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
    fn a_cluster_run_takes_several_nodes_and_pids_and_a_node_to_kill() {
        let c = parse(&[
            "--url",
            "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
            "--hub-pid",
            "10,11,12",
            "--scenario",
            "chaos",
            "--duration",
            "30",
            "--chaos-pid",
            "11",
        ])
        .unwrap();
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[1].port, 2);
        assert_eq!(c.hub_pid, vec![10, 11, 12]);
        let chaos = c.chaos.expect("chaos");
        assert_eq!((chaos.pid, chaos.at), (11, Duration::from_secs(10)));
        let err = parse(&["--chaos-pid", "11"]).unwrap_err().to_string();
        assert!(err.contains("--scenario chaos"), "{err}");
        let err = parse(&[
            "--scenario",
            "chaos",
            "--chaos-pid",
            "11",
            "--chaos-at",
            "40",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--chaos-at"), "{err}");
        let err = parse(&["--url", "http://127.0.0.1:1,http://example.com:2"]).unwrap_err();
        assert!(format!("{err:#}").contains("loopback"), "{err:#}");
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
    fn slow_readers_are_the_last_indices_and_leave_a_reader_per_room() {
        let c = parse(&["--users", "10", "--rooms", "4", "--slow-readers", "3"]).unwrap();
        assert_eq!(c.senders(), 7);
        assert!(!c.is_slow(6));
        assert!(c.is_slow(7) && c.is_slow(9));
        // Rooms 7 % 4, 8 % 4, 9 % 4: three different rooms.
        assert!((c.rate_per_connection() - 100.0 / 7.0).abs() < 1e-9);
        assert!(parse(&["--users", "10", "--rooms", "4", "--slow-readers", "6"]).is_ok());
        assert!(parse(&["--users", "10", "--rooms", "4", "--slow-readers", "7"]).is_err());
        assert!(parse(&["--users", "4", "--rooms", "4", "--slow-readers", "1"]).is_err());
    }

    #[test]
    fn a_storm_needs_a_rate_and_a_count() {
        let c = parse(&["--storm", "2000", "--storm-count", "4000"]).unwrap();
        assert_eq!(
            c.storm,
            Some(StormConfig {
                rate: 2000.0,
                count: 4000
            })
        );
        assert_eq!(c.total_connections(), 4100);
        assert!(parse(&["--storm", "2000"]).is_err());
        assert!(parse(&["--storm-count", "10"]).is_err());
        assert!(parse(&["--storm", "0", "--storm-count", "10"]).is_err());
        assert!(parse(&["--storm", "inf", "--storm-count", "10"]).is_err());
        assert!(parse(&["--storm", "10", "--storm-count", "0"]).is_err());
        assert_eq!(parse(&[]).unwrap().storm, None);
    }

    #[test]
    fn hold_pid_and_source_addresses_are_checked() {
        let c = parse(&["--hold", "5", "--hub-pid", "1234"]).unwrap();
        assert_eq!((c.hold, c.hub_pid), (Duration::from_secs(5), vec![1234]));
        assert!(parse(&["--hub-pid", "0"]).is_err());
        assert!(parse(&["--hold", "100000"]).is_err());
        assert_eq!(parse(&[]).unwrap().source_addrs, SourceAddrs::Auto);
        assert_eq!(
            parse(&["--source-addrs", "4"]).unwrap().source_addrs,
            SourceAddrs::Count(4)
        );
        assert!(parse(&["--source-addrs", "x"]).is_err());
        let remote = ["--url", "http://192.0.2.1:8080", "--allow-remote"];
        assert!(parse(&[&remote[..], &["--source-addrs", "2"]].concat()).is_err());
        assert!(parse(&[&remote[..], &["--source-addrs", "0"]].concat()).is_ok());
    }

    #[test]
    fn questions_are_bounded_by_the_askers_of_the_smallest_session() {
        let votes = ["--scenario", "votes", "--users", "13", "--rooms", "3"];
        assert_eq!(parse(&votes).unwrap().questions, 10);
        // 4 voters in the smallest session (5, 4, 4) ask at most 3 each.
        assert!(parse(&[&votes[..], &["--questions", "12"]].concat()).is_ok());
        assert!(parse(&[&votes[..], &["--questions", "13"]].concat()).is_err());
        assert!(parse(&[&votes[..], &["--questions", "0"]].concat()).is_err());
        let one = ["--scenario", "votes", "--users", "2", "--rooms", "2"];
        assert!(parse(&[&one[..], &["--questions", "4"]].concat()).is_err());
        // Other scenarios do not look at it.
        assert!(parse(&["--questions", "0"]).is_ok());
    }

    #[test]
    fn remote_urls_are_refused_without_the_flag() {
        let err = parse(&["--url", "http://192.0.2.1:8080"]).unwrap_err();
        assert!(format!("{err:#}").contains("--allow-remote"), "{err:#}");
        assert!(parse(&["--url", "http://192.0.2.1:8080", "--allow-remote"]).is_ok());
    }
}
