//! The final report: built once from the counters and samples at the end of the run, printed as
//! a table for people (`table.rs`) or as one JSON object (`--json`) for scripts and
//! `BENCHMARKS.md`. The optional sections (`hub`, `slow`, `storm`) are `null` when their option
//! was not given.
//!
//! "Members" are the initial connections that read and send: all of `--users` but the slow
//! readers. Latency and delivery figures are theirs only.

use std::collections::BTreeMap;

use serde::Serialize;
use signaling::server::Limits;

use crate::args::{Config, Op};
use crate::fdlimit::FileLimit;
use crate::hubmetrics::HubCounted;
use crate::hubproc::{HarnessCpu, HubReport};
use crate::slow::SlowReport;
use crate::stats::{Counters, LatencySummary, Tallies, read};
use crate::storm::StormReport;

/// The close code the hub uses for a connection that reads too slowly.
pub const SLOW_CONSUMER: u16 = 4008;

/// Everything measured, with the settings that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// This run's id (in the accounts' emails).
    pub run_id: String,
    /// The WebSocket endpoint.
    pub url: String,
    /// What was sent.
    pub op: Op,
    /// Connections (N).
    pub users: usize,
    /// Rooms (R).
    pub rooms: usize,
    /// Accounts (K).
    pub accounts: usize,
    /// Messages per second asked for, in total.
    pub rate_per_sec: f64,
    /// Load phase asked for, in seconds.
    pub duration_s: u64,
    /// Idle hold before the load phase, in seconds.
    pub hold_s: u64,
    /// Slow readers among the users (K).
    pub slow_readers: usize,
    /// Loopback source addresses the sockets were spread over (0: the kernel's choice).
    pub source_addrs: usize,
    /// This process's open-file limit after raising it, if it could be read.
    pub open_files: Option<OpenFiles>,
    /// What the hub announced in `hello`.
    pub hub_limits: Option<Limits>,
    /// Connection counts.
    pub connections: Connections,
    /// Command counts.
    pub messages: Messages,
    /// Measured events received.
    pub delivery: Delivery,
    /// End-to-end latency of the members; `null` when nothing was delivered.
    pub latency_ms: Option<LatencySummary>,
    /// The hub's memory and CPU (`--hub-pid`).
    pub hub: Option<HubReport>,
    /// What became of the slow readers (`--slow-readers`).
    pub slow: Option<SlowReport>,
    /// The connection storm (`--storm`).
    pub storm: Option<StormReport>,
    /// This process's own CPU use.
    pub harness: HarnessCpu,
    /// What the hub's `/metrics` counted during the run; `null` if it could not be read.
    pub hub_counted: Option<HubCounted>,
}

/// The open-file limit.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OpenFiles {
    /// The soft limit the run had.
    pub soft: u64,
    /// The hard limit (only root raises it).
    pub hard: u64,
}

/// Connection counts.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Opens started.
    pub attempted: u64,
    /// Opened and joined (slow readers included).
    pub established: u64,
    /// Members still open when the load phase and drain were over.
    pub held_at_end: u64,
    /// Opens that failed.
    pub open_failures: u64,
    /// Why, by step and reason.
    pub open_failure_reasons: BTreeMap<String, u64>,
    /// Closed by the hub during the run.
    pub closed_by_hub: u64,
    /// By close code (4008 = slow consumer).
    pub close_codes: BTreeMap<String, u64>,
    /// Lost without a close frame.
    pub dropped: u64,
    /// Why.
    pub drop_reasons: BTreeMap<String, u64>,
}

impl Connections {
    /// The counts from the run's counters; takes the connection tallies out of `t`.
    pub fn from_counters(c: &Counters, held_at_end: u64, t: &mut Tallies) -> Connections {
        Connections {
            attempted: read(&c.attempted),
            established: read(&c.established),
            held_at_end,
            open_failures: read(&c.open_failures),
            open_failure_reasons: std::mem::take(&mut t.open_failures),
            closed_by_hub: read(&c.closed_by_hub),
            close_codes: std::mem::take(&mut t.close_codes)
                .into_iter()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
            dropped: read(&c.dropped),
            drop_reasons: std::mem::take(&mut t.drops),
        }
    }
}

/// Command counts.
#[derive(Debug, Clone, Serialize)]
pub struct Messages {
    /// Commands written during the load phase.
    pub sent: u64,
    /// `ack` frames.
    pub acks: u64,
    /// `error` frames.
    pub error_frames: u64,
    /// `error` frames by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// `task_update` ticks skipped because the previous update was unanswered.
    pub skipped_ticks: u64,
    /// Text frames that were not readable as hub frames.
    pub unparsed_frames: u64,
}

/// Measured events received.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Every copy received, by every member (sender included).
    pub events: u64,
    /// Copies the members should have received: for each room, its acknowledged commands
    /// times the members that joined it.
    pub expected: u64,
    /// `events / expected`; `null` when nothing was expected.
    pub ratio: Option<f64>,
    /// `events` over the load phase's length.
    pub per_second: f64,
    /// The load phase as it actually lasted, in seconds.
    pub load_seconds: f64,
}

/// What the run hands over for the report.
pub struct Measured<'a> {
    /// The run id.
    pub run_id: String,
    /// The counters.
    pub counters: &'a Counters,
    /// Connections held when the run began closing.
    pub held_at_end: u64,
    /// The load phase's real length.
    pub load_seconds: f64,
    /// Every member latency sample, in microseconds.
    pub samples: Vec<u32>,
    /// See [`Delivery::expected`].
    pub expected_deliveries: u64,
    /// Source addresses used.
    pub source_addrs: usize,
    /// The open-file limit.
    pub open_files: Option<FileLimit>,
    /// The hub's figures.
    pub hub: Option<HubReport>,
    /// The slow readers' outcome.
    pub slow: Option<SlowReport>,
    /// The storm's figures.
    pub storm: Option<StormReport>,
    /// This process's CPU.
    pub harness: HarnessCpu,
    /// The hub's counters' increase.
    pub hub_counted: Option<HubCounted>,
}

impl Report {
    /// Builds the report.
    pub fn new(config: &Config, m: Measured<'_>) -> Report {
        let c = m.counters;
        let mut t = c.tallies_snapshot();
        let mut samples = m.samples;
        let events = read(&c.delivered);
        #[allow(clippy::cast_precision_loss)]
        let per_second = if m.load_seconds > 0.0 {
            events as f64 / m.load_seconds
        } else {
            0.0
        };
        Report {
            run_id: m.run_id,
            url: config.urls_display(),
            op: config.op,
            users: config.users,
            rooms: config.rooms,
            accounts: config.accounts,
            rate_per_sec: config.rate,
            duration_s: config.duration.as_secs(),
            hold_s: config.hold.as_secs(),
            slow_readers: config.slow_readers,
            source_addrs: m.source_addrs,
            open_files: m.open_files.map(|f| OpenFiles {
                soft: f.soft,
                hard: f.hard,
            }),
            hub_limits: c.limits(),
            connections: Connections::from_counters(c, m.held_at_end, &mut t),
            messages: Messages {
                sent: read(&c.sent),
                acks: read(&c.acks),
                error_frames: read(&c.error_frames),
                errors_by_code: t.error_codes,
                skipped_ticks: read(&c.skipped_ticks),
                unparsed_frames: read(&c.unparsed),
            },
            delivery: Delivery {
                events,
                expected: m.expected_deliveries,
                #[allow(clippy::cast_precision_loss)]
                ratio: (m.expected_deliveries > 0)
                    .then(|| events as f64 / m.expected_deliveries as f64),
                per_second,
                load_seconds: m.load_seconds,
            },
            latency_ms: LatencySummary::from_micros(&mut samples),
            hub: m.hub,
            slow: m.slow,
            storm: m.storm,
            harness: m.harness,
            hub_counted: m.hub_counted,
        }
    }
}

/// A scenario's final report: one line of JSON with `--json`, else a table.
pub trait Printed: Serialize {
    /// The human-readable table.
    fn render(&self) -> String;

    /// One line of JSON.
    ///
    /// # Errors
    /// Only if serde_json fails, which these types cannot make it do.
    fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// Prints it to stdout.
    fn print(&self, json: bool) {
        if json {
            match self.to_json() {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("loadtest: writing the report: {e}"),
            }
        } else {
            print!("{}", self.render());
        }
    }
}

impl Printed for Report {
    fn render(&self) -> String {
        self.table()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Args;
    use clap::Parser;

    fn report(samples: Vec<u32>) -> Report {
        let config = Args::parse_from(["loadtest", "--users", "4", "--rooms", "2"])
            .validate()
            .unwrap();
        let counters = Counters::default();
        counters
            .delivered
            .store(4, std::sync::atomic::Ordering::Relaxed);
        counters.held.store(1, std::sync::atomic::Ordering::Relaxed);
        counters.closed_by_hub(4008);
        Report::new(
            &config,
            Measured {
                run_id: "abc".into(),
                counters: &counters,
                held_at_end: 3,
                load_seconds: 2.0,
                samples,
                expected_deliveries: 8,
                source_addrs: 0,
                open_files: None,
                hub: None,
                slow: None,
                storm: None,
                harness: HarnessCpu::new(&crate::hubproc::HubReadings::default(), 2.0, None),
                hub_counted: None,
            },
        )
    }

    #[test]
    fn the_report_has_rates_percentiles_and_close_codes() {
        let r = report(vec![1000, 2000, 3000, 4000]);
        assert!((r.delivery.per_second - 2.0).abs() < 1e-9);
        let json: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(json["connections"]["close_codes"]["4008"], 1);
        assert_eq!(json["latency_ms"]["p50"], 2.0);
        assert_eq!(json["op"], "broadcast");
        let table = r.table();
        assert!(table.contains("4008 (slow consumer)"), "{table}");
        assert!(table.contains("held at end 3"), "{table}");
    }

    #[test]
    fn no_samples_means_no_latency() {
        let r = report(Vec::new());
        assert!(r.latency_ms.is_none());
        assert!(r.table().contains("no events delivered"));
    }

    #[test]
    fn the_optional_sections_reach_the_json_and_the_table() {
        use crate::hubproc::{Divisors, HubReadings, HubSample};
        use crate::slow::{SlowEnd, SlowOutcome};
        use crate::storm::StormCounters;

        let mut r = report(vec![1000]);
        assert!(r.hub.is_none() && r.slow.is_none() && r.storm.is_none());
        let at = |rss_kib, cpu_s| Some(HubSample { rss_kib, cpu_s });
        let readings = HubReadings {
            before: at(10_000, 1.0),
            after_connect: at(10_400, 1.5),
            load_start: at(10_400, 1.5),
            load_end: at(10_500, 2.5),
            ..HubReadings::default()
        };
        let d = Divisors {
            held_idle: 4,
            delivered: 4,
            load_seconds: 2.0,
        };
        r.hub = Some(HubReport::new(42, &readings, d));
        let closed = SlowOutcome {
            end: SlowEnd::Closed(4008),
            frames: 3,
            bytes: 300,
        };
        r.slow = Some(SlowReport::new(2, &[closed.clone(), closed]));
        let counters = StormCounters::default();
        let plan = crate::args::StormConfig {
            rate: 100.0,
            count: 10,
        };
        r.storm = Some(StormReport::new(
            plan,
            &counters,
            vec![5_000],
            (&mut [2_000], &mut [1_000]),
        ));

        let json: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(json["hub"]["rss_per_conn_kib"], 100.0);
        assert_eq!(json["hub"]["cpu_us_per_event"], 250_000.0);
        assert_eq!(json["slow"]["close_codes"]["4008"], 2);
        assert_eq!(json["storm"]["connect_latency_ms"]["p99"], 5.0);
        assert_eq!(json["storm"]["members_latency_during_ms"]["max"], 2.0);
        assert_eq!(json["delivery"]["expected"], 8);
        assert_eq!(json["delivery"]["ratio"], 0.5);

        let table = r.table();
        for expected in [
            "(100.0 KiB per connection)",
            "250000.00 µs per delivered event",
            "slow readers 2 of 2 joined: closed by hub 2",
            "4008 (slow consumer)",
            "storm        10 at 100/s",
            "members ms, during storm p50 2.00",
            "(50.00% of 8 expected)",
        ] {
            assert!(table.contains(expected), "{expected:?} not in\n{table}");
        }
    }
}
