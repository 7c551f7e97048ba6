//! `loadtest`: many real WebSocket clients against a hub, and a latency/throughput report.
//!
//! ```text
//! cargo run --release -p loadtest -- --url http://127.0.0.1:8080 --users 200 --rooms 20 \
//!     --rate 400 --duration 30 [--op broadcast|task_update] [--accounts K] [--json] \
//!     [--source-addrs N|auto] [--hub-pid PID] [--hold SECS] [--slow-readers K] \
//!     [--storm RATE --storm-count N]
//! ```
//!
//! Other kinds of run besides the plain load test:
//!
//! - **Memory** (`--rate 0 --hold 10 --duration 1 --hub-pid $(pgrep -x hub)`): N idle
//!   connections; the hub's RSS before, after connecting and after the hold, and per connection.
//!   Many connections from one box: the soft open-file limit is raised to the hard limit at
//!   start (the hard limit only root can raise; the preflight says when it is the wall), and
//!   past 20 000 connections the sockets are spread over 127.0.0.2, 127.0.0.3, ...
//!   (`--source-addrs`).
//! - **Slow readers** (`--slow-readers K`): K connections stop reading after joining; the
//!   other members' latency and delivery ratio show whether they noticed, and the report says
//!   how the hub ended the slow ones.
//! - **Connection storm** (`--storm RATE --storm-count N`): N more connections during the load
//!   phase on an open-loop schedule; their connect latency from the due time, the failures by
//!   reason, and the members' latency during the storm on its own row. The hub must be started
//!   with `HUB_MAX_CONNS_PER_USER` (default 50) and `HUB_MAX_CONNS_PER_IP` (default 1000)
//!   raised, and `HUB_LIMIT_READ_PER_IP` (default `100/s+1000`, charged by every upgrade)
//!   above the storm's rate per source address; refusals are counted as `HTTP 429` with the
//!   hub's code.
//! - **WebRTC setup** (`--scenario webrtc --users M`, see [`webrtc`]): one presenter and M
//!   guests in a live conference session, each pair with real `webrtc` crate peer connections
//!   negotiating through the hub's `signal` relay; the setup time from the attendee's
//!   `join_session` ack to the presenter's first data-channel message (p50/p95/p99/max), the
//!   share of pairs that got it, and `seq` gaps. `--duration` bounds the whole run.
//!
//! How a run flows, one file per step:
//!
//! - [`args`]: the command line and its validation into a `Config`; [`target`]: the hub's URL
//!   and the loopback-only guard; [`preflight`]: warnings before spending minutes on a run;
//!   [`fdlimit`]: the open-file limit; [`addrs`]: the source addresses.
//! - [`rest`]: accounts, workspaces and memberships over the REST API.
//! - [`ws`]: opening one connection (TCP, upgrade, `hello`, join, own task).
//! - [`connect`]: the initial connections; [`client`]: one member's reader and writer during
//!   the load phase; [`sender`] and [`frames`]: what they write and read; [`slow`]: the slow
//!   readers; [`storm`]: the connection storm.
//! - [`run`]: the phases (connect, hold, load, drain, close); [`progress`]: the progress line;
//!   [`hubproc`]: the hub's RSS and CPU from `/proc`; [`hubmetrics`]: the hub's own counters.
//! - [`stats`]: counters and percentiles; [`report`]: the figures at the end, as JSON or as a
//!   [`table`].
//! - [`webrtc`]: the WebRTC scenario, with its own connection, peer, pair and report modules.
//!
//! `--scenario votes` ([`votes`]) is a vote storm in conference sessions instead: guests vote
//! on questions and the hub's totals are checked against the acknowledged votes.
//!
//! `--scenario chaos` ([`chaos`]) writes through a cluster (`--url` lists its nodes) while
//! `--chaos-pid` is killed and (`--chaos-restart`) started again; every acknowledged write must be
//! found afterwards, and the report gives the failover time.
//!
//! Exits 0 after a completed run, 1 if the setup failed or no member was held at the end,
//! 2 for a bad command line.

mod addrs;
mod args;
mod chaos;
mod client;
mod connect;
mod fdlimit;
mod frames;
mod hubmetrics;
mod hubproc;
mod preflight;
mod progress;
mod report;
mod rest;
mod run;
mod sender;
mod slow;
mod stats;
mod storm;
mod syncpush;
mod table;
mod target;
mod votes;
mod webrtc;
mod ws;

use std::process::ExitCode;

use clap::Parser;

use crate::report::Printed;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match args::Args::parse().validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            return ExitCode::from(2);
        }
    };
    let files = match fdlimit::raise_to_hard() {
        Ok(f) => {
            eprintln!(
                "open files: limit {} (was {}; hard limit {})",
                f.soft, f.was, f.hard
            );
            Some(f)
        }
        Err(e) => {
            eprintln!("warning: could not raise the open-file limit: {e}");
            None
        }
    };
    match config.scenario {
        args::Scenario::Rooms => {}
        args::Scenario::Webrtc => return webrtc::main(&config).await,
        // Each scenario of a conference session lives in its own module and prints its report.
        args::Scenario::Votes => return votes::main(&config).await,
        args::Scenario::Chaos => return chaos::main(&config).await,
        args::Scenario::Sync => return syncpush::main(&config).await,
    }
    let report = match run::run(&config, files).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    report.print(config.json);
    if report.connections.held_at_end == 0 {
        eprintln!("loadtest: no connection was held to the end");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
