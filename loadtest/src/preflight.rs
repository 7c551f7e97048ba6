//! Warnings worth printing before a run spends minutes producing misleading numbers: a rate the
//! hub will refuse, more sockets than the process may open, tokens that expire mid-run. Pure
//! functions over the config and what the hub announced, so they can be tested.

use std::time::Duration;

use crate::args::Config;

/// The hub's default sustained rate per connection (`HUB_RATE_PER_SEC`).
pub const HUB_DEFAULT_RATE: f64 = 10.0;
/// The hub's default burst per connection (`HUB_RATE_BURST`).
pub const HUB_DEFAULT_BURST: u32 = 20;
/// File descriptors the process needs besides its connections (REST pool, stdio, runtime).
const SPARE_FDS: u64 = 64;

/// Warnings from the command line alone.
pub fn before_run(config: &Config, open_files_limit: Option<u64>) -> Vec<String> {
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
    let needed = config.users as u64 + SPARE_FDS;
    if let Some(limit) = open_files_limit.filter(|&l| l < needed) {
        warnings.push(format!(
            "the open-file limit is {limit} but {} connections need about {needed}; raise it \
             with `ulimit -n {needed}` or connections will fail with `Too many open files`",
            config.users
        ));
    }
    warnings
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

/// The soft open-file limit, from `/proc/self/limits` (Linux); `None` elsewhere.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&text)
}

/// The soft limit on the `Max open files` line of a `/proc/<pid>/limits` text.
fn parse_open_files(limits: &str) -> Option<u64> {
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

    #[test]
    fn a_rate_above_the_hub_limit_is_flagged() {
        let hot = config(&["--users", "10", "--rooms", "1", "--rate", "200"]);
        assert_eq!(before_run(&hot, None).len(), 1);
        assert!(
            rate_against_hello(&hot, 10).is_none(),
            "already said before the run"
        );
        assert!(rate_against_hello(&hot, 5).is_some());
        assert!(rate_against_hello(&hot, 50).is_none());
        let calm = config(&["--users", "10", "--rooms", "1", "--rate", "100"]);
        assert!(before_run(&calm, None).is_empty());
        assert!(rate_against_hello(&calm, 5).is_some());
    }

    #[test]
    fn too_few_file_descriptors_are_flagged() {
        let c = config(&["--users", "2000", "--rooms", "10", "--rate", "100"]);
        let w = before_run(&c, Some(1024));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("ulimit -n 2064"), "{}", w[0]);
        assert!(before_run(&c, Some(1 << 20)).is_empty());
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
