//! `loadtest`: many real WebSocket clients against a hub, and a latency/throughput report.
//!
//! ```text
//! cargo run --release -p loadtest -- --url http://127.0.0.1:8080 --users 200 --rooms 20 \
//!     --rate 400 --duration 30 [--op broadcast|task_update] [--accounts K] [--json]
//! ```
//!
//! How a run flows, one file per step:
//!
//! - [`args`]: the command line and its validation into a `Config`; [`target`]: the hub's URL
//!   and the loopback-only guard; [`preflight`]: warnings before spending minutes on a run.
//! - [`rest`]: accounts, workspaces and memberships over the REST API.
//! - [`ws`]: opening one connection (handshake, `hello`, join, own task).
//! - [`client`]: one connection's reader and writer during the load phase; [`frames`]: what they
//!   write and read.
//! - [`run`]: the phases (connect, load, drain, close) and the progress line.
//! - [`stats`]: counters and percentiles; [`report`]: the table or JSON at the end.
//!
//! Exits 0 after a completed run, 1 if the setup failed or no connection was held at the end,
//! 2 for a bad command line.

mod addrs;
mod args;
mod client;
mod connect;
mod fdlimit;
mod frames;
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
mod table;
mod target;
mod ws;

use std::process::ExitCode;

use clap::Parser;

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
    let report = match run::run(&config, files).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if config.json {
        match report.to_json() {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("loadtest: writing the report: {e}"),
        }
    } else {
        print!("{}", report.table());
    }
    if report.connections.held_at_end == 0 {
        eprintln!("loadtest: no connection was held to the end");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
