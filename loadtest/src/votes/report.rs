//! The report of a votes run: the settings, the connections, the votes (sent, acked, refused by
//! code), the ack latency, the throughput, the hub's cost and the check, built once at the end
//! and printed as a table or as one JSON object (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use signaling::server::Limits;

use super::book::{Ledger, Totals};
use super::check::Check;
use super::metrics::HubJournal;
use super::voter::VoterCtx;
use crate::args::Config;
use crate::hubproc::{HarnessCpu, HubReport};
use crate::report::Connections;
use crate::stats::{LatencySummary, read};
use crate::table::close_labels;

/// Everything measured, with the settings that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct VotesReport {
    /// Always `votes`.
    pub scenario: &'static str,
    /// This run's id (in the presenter's email and the questions).
    pub run_id: String,
    /// The WebSocket endpoint.
    pub url: String,
    /// Voters (guests, one connection each).
    pub voters: usize,
    /// Sessions they are spread over.
    pub sessions: usize,
    /// Questions per session.
    pub questions_per_session: usize,
    /// Votes per second asked for, in total.
    pub rate_per_sec: f64,
    /// Load phase asked for, in seconds.
    pub duration_s: u64,
    /// The seed of the voters' draws.
    pub seed: u64,
    /// What the hub announced in `hello`.
    pub hub_limits: Option<Limits>,
    /// Connection counts.
    pub connections: Connections,
    /// Vote counts.
    pub votes: Votes,
    /// Rates.
    pub throughput: Throughput,
    /// From writing a vote to its `ack`; `null` when none was acked.
    pub ack_latency_ms: Option<LatencySummary>,
    /// The hub's totals against the acknowledged votes.
    pub check: Check,
    /// The hub's memory and CPU (`--hub-pid`); its per-event figure is per acked vote.
    pub hub: Option<HubReport>,
    /// What the hub's `/metrics` counted over the load phase and drain.
    pub hub_counted: Option<HubJournal>,
    /// This process's own CPU use.
    pub harness: HarnessCpu,
}

/// Vote counts.
#[derive(Debug, Clone, Serialize)]
pub struct Votes {
    /// `question_vote` commands written.
    pub sent: u64,
    /// Acked.
    pub acked: u64,
    /// Acked with an offset: journaled.
    pub changed: u64,
    /// Acked with `"offset": null`: the vote was already that.
    pub unchanged: u64,
    /// Answered with an `error`.
    pub refused: u64,
    /// Every `error` frame by code (those answering votes and any other).
    pub errors_by_code: BTreeMap<String, u64>,
    /// Never answered (still awaited at the end, or on a connection lost meanwhile).
    pub unanswered: u64,
    /// Answers whose `ref` was no vote in flight.
    pub unknown_answers: u64,
    /// Ticks skipped because the local copy of the hub's frame limit was empty.
    pub throttled_ticks: u64,
    /// Ticks skipped because the voter had its most votes unanswered.
    pub capped_ticks: u64,
    /// `session_resync` frames received.
    pub resyncs: u64,
    /// Text frames that were not readable as hub frames.
    pub unparsed_frames: u64,
}

/// Rates.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// The load phase as it lasted, in seconds.
    pub load_s: f64,
    /// The wait for the last answers after it, in seconds.
    pub drain_s: f64,
    /// Votes written per second of the load phase.
    pub sent_per_s: f64,
    /// Votes acked per second of load and drain.
    pub acked_per_s: f64,
    /// Votes journaled per second of load and drain.
    pub changed_per_s: f64,
}

/// What the run measured beside the counters and books.
pub struct Measured {
    /// The load phase as it lasted, in seconds.
    pub load_s: f64,
    /// The drain, in seconds.
    pub drain_s: f64,
    /// Voters still connected after the drain.
    pub held_at_end: u64,
    /// The hub's CPU and memory (`--hub-pid`).
    pub hub: Option<HubReport>,
    /// This process's CPU.
    pub harness: HarnessCpu,
    /// The hub's journal commits.
    pub hub_counted: Option<HubJournal>,
}

impl VotesReport {
    /// The report from the counters, the voters' ledgers (voter index, session index, ledger),
    /// the check and the rest of what was measured.
    pub fn new(
        config: &Config,
        run_id: String,
        ctx: &VoterCtx,
        ledgers: &[(usize, usize, Ledger)],
        (check, m): (Check, Measured),
    ) -> VotesReport {
        let (c, l) = (&ctx.counters, &ctx.live);
        let mut t = c.tallies_snapshot();
        let mut samples: Vec<u32> = ledgers
            .iter()
            .flat_map(|(_, _, l)| l.samples.iter().copied())
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let per = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let active = m.load_s + m.drain_s;
        VotesReport {
            scenario: "votes",
            run_id,
            url: config.urls_display(),
            voters: config.users,
            sessions: config.rooms,
            questions_per_session: config.questions,
            rate_per_sec: config.rate,
            duration_s: config.duration.as_secs(),
            seed: ctx.seed,
            hub_limits: c.limits(),
            connections: Connections::from_counters(c, m.held_at_end, &mut t),
            votes: Votes {
                sent: read(&c.sent),
                acked: read(&c.acks),
                changed: read(&l.changed),
                unchanged: read(&l.unchanged),
                refused: read(&l.refused),
                errors_by_code: t.error_codes,
                unanswered: ledgers.iter().map(|(_, _, l)| l.unanswered).sum(),
                unknown_answers: read(&l.unknown_answers),
                throttled_ticks: read(&l.throttled),
                capped_ticks: read(&l.capped),
                resyncs: read(&l.resyncs),
                unparsed_frames: read(&c.unparsed),
            },
            throughput: Throughput {
                load_s: m.load_s,
                drain_s: m.drain_s,
                sent_per_s: per(read(&c.sent), m.load_s),
                acked_per_s: per(read(&c.acks), active),
                changed_per_s: per(read(&l.changed), active),
            },
            ack_latency_ms: LatencySummary::from_micros(&mut samples),
            check,
            hub: m.hub,
            hub_counted: m.hub_counted,
            harness: m.harness,
        }
    }
}

impl VotesReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let (c, v, t) = (&self.connections, &self.votes, &self.throughput);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "loadtest votes: {} voters in {} sessions, {} questions each, {} votes/s for {} s against {} (seed {})",
            self.voters,
            self.sessions,
            self.questions_per_session,
            self.rate_per_sec,
            self.duration_s,
            self.url,
            self.seed
        );
        let _ = writeln!(
            out,
            "  connections  attempted {}  established {}  held at end {}  open failures {}  closed by hub {}  dropped {}",
            c.attempted, c.established, c.held_at_end, c.open_failures, c.closed_by_hub, c.dropped
        );
        let _ = writeln!(
            out,
            "  votes        sent {}  acked {} (changed {}, already so {})  refused {}  unanswered {}",
            v.sent, v.acked, v.changed, v.unchanged, v.refused, v.unanswered
        );
        let _ = writeln!(
            out,
            "               skipped ticks: throttled {}  in-flight cap {}   unknown answers {}  resyncs {}",
            v.throttled_ticks, v.capped_ticks, v.unknown_answers, v.resyncs
        );
        let _ = writeln!(
            out,
            "  throughput   sent {:.1}/s over {:.1} s; acked {:.1}/s, journaled {:.1}/s over load + drain ({:.1} s drain)",
            t.sent_per_s, t.load_s, t.acked_per_s, t.changed_per_s, t.drain_s
        );
        match &self.ack_latency_ms {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  ack ms       p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}  ({} acks)",
                    l.p50, l.p95, l.p99, l.max, l.mean, l.samples
                );
            }
            None => {
                let _ = writeln!(out, "  ack ms       no vote acked");
            }
        }
        self.cost_rows(&mut out);
        self.check_rows(&mut out);
        list(&mut out, "errors by code", &v.errors_by_code);
        list(&mut out, "closes by code", &close_labels(&c.close_codes));
        list(&mut out, "open failures", &c.open_failure_reasons);
        list(&mut out, "dropped", &c.drop_reasons);
        out
    }

    fn cost_rows(&self, out: &mut String) {
        let dash =
            |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |x| format!("{x:.digits$}"));
        if let Some(h) = &self.hub {
            let _ = writeln!(
                out,
                "  hub          cpu {} s over load + drain ({}% of a core, {} µs per acked vote)  rss end {} MiB  (pid {})",
                dash(h.cpu_load_s, 2),
                dash(h.cpu_load_percent, 0),
                dash(h.cpu_us_per_event, 1),
                dash(h.rss_end_kib.map(crate::progress::kib_to_mib), 1),
                h.pid
            );
        }
        if let Some(j) = &self.hub_counted {
            #[allow(clippy::cast_precision_loss)]
            let n = |v: Option<u64>| dash(v.map(|x| x as f64), 0);
            let _ = writeln!(
                out,
                "  hub counted  journal commits {} (mean {} ms)  slow consumers closed {}  refused by limits {}",
                n(j.journal_commits),
                dash(j.journal_commit_mean_ms, 3),
                n(j.slow_consumers),
                n(j.rate_limited)
            );
        }
        let _ = writeln!(
            out,
            "  harness cpu  {} s over load + drain ({}% of a core)",
            dash(self.harness.cpu_load_s, 2),
            dash(self.harness.cpu_load_percent, 0)
        );
    }

    fn check_rows(&self, out: &mut String) {
        let k = &self.check;
        let counts = |m: &BTreeMap<&'static str, usize>| {
            m.iter()
                .map(|(label, n)| format!("{label} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "  check        {:?}: {} questions; REST totals: {}; last question frames: {}{}; ack offsets contradicting the votes: {}",
            k.result,
            k.questions,
            counts(&k.rest),
            counts(&k.frames),
            if k.frames_binding {
                ""
            } else {
                " (advisory: voters were lost)"
            },
            k.ack_disagreements
        );
        for e in &k.unread_sessions {
            let _ = writeln!(out, "    totals not read: {e}");
        }
        for q in &k.problems {
            let t = |v: Option<Totals>| {
                v.map_or("-".to_owned(), |t| format!("up {} down {}", t.up, t.down))
            };
            let _ = writeln!(
                out,
                "    session {} question {} ({}): expected up {} down {} (+{} unanswered); REST {} ({:?}); last frame {} ({:?})",
                q.session,
                q.question,
                q.id,
                q.expected.totals.up,
                q.expected.totals.down,
                q.expected.uncertain,
                t(q.rest),
                q.rest_verdict,
                t(q.frame),
                q.frame_verdict
            );
        }
        for (voter, d) in &k.ack_disagreement_examples {
            let _ = writeln!(
                out,
                "    voter {voter} ref {}: question {} was {:?}, voted {:?}, ack offset {:?}",
                d.reference, d.question, d.before, d.vote, d.offset
            );
        }
    }
}

fn list(out: &mut String, title: &str, items: &BTreeMap<String, u64>) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for (label, n) in items {
        let _ = writeln!(out, "    {n:>8}  {label}");
    }
}

impl crate::report::Printed for VotesReport {
    fn render(&self) -> String {
        self.table()
    }
}
