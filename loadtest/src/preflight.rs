//! Warnings worth printing before a run spends minutes producing misleading numbers: a rate the
//! hub will refuse, more sockets than the process (or the hub) may open, more connections per
//! account or per address than the hub's caps allow, tokens that expire mid-run. Pure functions
//! over the config and what the hub announced, so they can be tested.

use std::time::Duration;

use crate::args::Config;
use crate::fdlimit::FileLimit;

/// The hub's default sustained rate per connection (`HUB_RATE_PER_SEC`).
pub const HUB_DEFAULT_RATE: f64 = 10.0;
/// The hub's default burst per connection (`HUB_RATE_BURST`).
pub const HUB_DEFAULT_BURST: u32 = 20;
/// The hub's default cap on one user's connections (`HUB_MAX_CONNS_PER_USER`).
pub const HUB_DEFAULT_CONNS_PER_USER: usize = 50;
/// The hub's default cap on one address's connections (`HUB_MAX_CONNS_PER_IP`).
pub const HUB_DEFAULT_CONNS_PER_IP: usize = 1000;
/// The burst of the hub's default per-address request throttle (`HUB_LIMIT_READ_PER_IP`,
/// `100/s+1000`), which every WebSocket upgrade is charged to.
pub const HUB_DEFAULT_READ_BURST_PER_IP: usize = 1000;
/// File descriptors the process needs besides its connections (REST pool, stdio, runtime).
const SPARE_FDS: u64 = 64;

/// Warnings from the command line, the open-file limit and the number of source addresses.
pub fn before_run(config: &Config, files: Option<FileLimit>, source_addrs: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    let per_conn = config.rate_per_connection();
    if per_conn > HUB_DEFAULT_RATE {
        warnings.push(format!(
            "--rate {} over {} connections is {per_conn:.1} msg/s per connection, above the hub's \
             default limit of {HUB_DEFAULT_RATE}/s (burst {HUB_DEFAULT_BURST}): expect \
             `rate_limited` errors; add connections or lower the rate",
            config.rate, config.users
        ));
    }
    warnings.extend(open_files(config, files));
    warnings.extend(hub_caps(config, source_addrs));
    warnings
}

/// More connections than file descriptors: say which limit, and whether it can be raised.
fn open_files(config: &Config, files: Option<FileLimit>) -> Option<String> {
    let total = config.total_connections();
    let needed = total as u64 + SPARE_FDS;
    let files = files.filter(|f| f.soft < needed)?;
    let fit = files.soft.saturating_sub(SPARE_FDS);
    Some(if files.hard < needed {
        format!(
            "the open-file limit is {} and the hard limit {} cannot be raised without root, but \
             {total} connections need about {needed}: only about {fit} can open, the rest will \
             fail with `Too many open files` (counted under open failures); run fewer \
             connections or raise the hard limit as root (limits.conf, systemd LimitNOFILE)",
            files.soft, files.hard
        )
    } else {
        format!(
            "the open-file limit is {} but {total} connections need about {needed}; raise it \
             with `ulimit -n {needed}` or connections will fail with `Too many open files`",
            files.soft
        )
    })
}

/// Connections per account and per source address against the hub's default caps.
fn hub_caps(config: &Config, source_addrs: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    let total = config.total_connections();
    let per_account = total.div_ceil(config.accounts);
    if per_account > HUB_DEFAULT_CONNS_PER_USER {
        warnings.push(format!(
            "each account holds up to {per_account} connections, above the hub's default cap of \
             {HUB_DEFAULT_CONNS_PER_USER}: start the hub with HUB_MAX_CONNS_PER_USER={per_account} \
             or more, or expect `HTTP 429 too_many_connections`"
        ));
    }
    let per_addr = total.div_ceil(source_addrs.max(1));
    if per_addr > HUB_DEFAULT_CONNS_PER_IP {
        warnings.push(format!(
            "each source address opens up to {per_addr} connections, above the hub's defaults \
             (HUB_MAX_CONNS_PER_IP {HUB_DEFAULT_CONNS_PER_IP}, and HUB_LIMIT_READ_PER_IP \
             100/s+{HUB_DEFAULT_READ_BURST_PER_IP}, charged by every upgrade): start the hub with \
             both raised, or spread with --source-addrs, or expect `HTTP 429` refusals"
        ));
    }
    warnings
}

/// A warning when the hub itself may not open as many sockets as the run will hold.
pub fn hub_open_files(config: &Config, hub_limit: u64) -> Option<String> {
    let total = config.total_connections() as u64;
    (total + SPARE_FDS > hub_limit).then(|| {
        format!(
            "the hub's own open-file limit is {hub_limit} but the run opens {total} connections: \
             the hub will refuse (or fail to accept) the ones beyond its limit"
        )
    })
}

/// A warning when the hub's announced rate is below what each connection will send (unless it
/// is the default, which [`before_run`] already warned about).
pub fn rate_against_hello(config: &Config, messages_per_second: u32) -> Option<String> {
    let per_conn = config.rate_per_connection();
    let limit = f64::from(messages_per_second);
    let already_told = per_conn > HUB_DEFAULT_RATE && limit == HUB_DEFAULT_RATE;
    (per_conn > limit && !already_told).then(|| {
        format!(
            "the hub allows {messages_per_second} msg/s per connection; each connection will send \
             {per_conn:.1}/s"
        )
    })
}

/// A warning when the access tokens expire before the run ends.
pub fn token_ttl(config: &Config, ttl: Duration) -> Option<String> {
    (config.duration >= ttl).then(|| {
        format!(
            "access tokens expire after {} s, before the {} s load phase ends; the hub may close \
             connections then",
            ttl.as_secs(),
            config.duration.as_secs()
        )
    })
}

/// The soft limit on the `Max open files` line of a `/proc/<pid>/limits` text.
pub fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Args;
    use clap::Parser;

    fn config(argv: &[&str]) -> Config {
        let mut all = vec!["loadtest"];
        all.extend_from_slice(argv);
        Args::parse_from(all).validate().unwrap()
    }

    fn limit(soft: u64, hard: u64) -> Option<FileLimit> {
        Some(FileLimit {
            was: soft,
            soft,
            hard,
        })
    }

    #[test]
    fn a_rate_above_the_hub_limit_is_flagged() {
        let hot = config(&["--users", "10", "--rooms", "1", "--rate", "200"]);
        assert_eq!(before_run(&hot, None, 0).len(), 1);
        assert!(
            rate_against_hello(&hot, 10).is_none(),
            "already said before the run"
        );
        assert!(rate_against_hello(&hot, 5).is_some());
        assert!(rate_against_hello(&hot, 50).is_none());
        let calm = config(&["--users", "10", "--rooms", "1", "--rate", "100"]);
        assert!(before_run(&calm, None, 0).is_empty());
        assert!(rate_against_hello(&calm, 5).is_some());
    }

    #[test]
    fn too_few_file_descriptors_are_flagged() {
        let c = config(&["--users", "2000", "--rooms", "10", "--rate", "100"]);
        let w = before_run(&c, limit(1024, 1 << 20), 2);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("ulimit -n 2064"), "{}", w[0]);
        assert!(before_run(&c, limit(1 << 20, 1 << 20), 2).is_empty());
        // From one address, 2000 connections are over the per-address defaults.
        assert_eq!(before_run(&c, limit(1 << 20, 1 << 20), 0).len(), 1);
    }

    #[test]
    fn a_hard_limit_below_the_run_is_named_as_such() {
        let c = config(&[
            "--users",
            "15000",
            "--accounts",
            "500",
            "--storm",
            "1000",
            "--storm-count",
            "10000",
        ]);
        let w = before_run(&c, limit(20_000, 20_000), 25);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("hard limit 20000 cannot be raised"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("about 19936 can open"), "{}", w[0]);
    }

    #[test]
    fn the_hubs_connection_caps_are_flagged() {
        // 100 + 4000 connections over 50 accounts: 82 each; over one address: 4100.
        let c = config(&["--storm", "2000", "--storm-count", "4000"]);
        let w = before_run(&c, None, 0);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("HUB_MAX_CONNS_PER_USER=82"), "{}", w[0]);
        assert!(w[1].contains("HUB_MAX_CONNS_PER_IP"), "{}", w[1]);
        // Five addresses carry 820 each: under the per-address defaults.
        assert_eq!(before_run(&c, None, 5).len(), 1);
        let hub = hub_open_files(&c, 4096).unwrap();
        assert!(hub.contains("4100 connections"), "{hub}");
        assert!(hub_open_files(&c, 20_000).is_none());
    }

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 1048576              files     \n";
        assert_eq!(parse_open_files(text), Some(1024));
        assert_eq!(parse_open_files("nothing here"), None);
    }

    #[test]
    fn short_lived_tokens_are_flagged() {
        let c = config(&["--duration", "1000"]);
        assert!(token_ttl(&c, Duration::from_secs(900)).is_some());
        assert!(token_ttl(&c, Duration::from_secs(3600)).is_none());
    }
}
