//! The webrtc scenario's report: how many pairs got their data-channel message, how long the
//! setup took, and what the signaling path counted on the way; as a table or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use signaling::server::Limits;

use super::pair::{PairDone, PairError};
use crate::stats::{LatencySummary, sample_micros};

/// Everything the scenario measured, with the settings that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct WebrtcReport {
    /// Always `webrtc`.
    pub scenario: &'static str,
    /// This run's id (in the presenter's email).
    pub run_id: String,
    /// The hub.
    pub url: String,
    /// Presenter ↔ attendee pairs asked for (`--users`).
    pub pairs: usize,
    /// Pairs negotiating at once.
    pub pairs_at_once: usize,
    /// The run's time limit (`--duration`), in seconds.
    pub duration_s: u64,
    /// How long the run took, setup included, in seconds.
    pub elapsed_s: f64,
    /// Whether the time limit cut the run short (unfinished pairs count as failed).
    pub timed_out: bool,
    /// What the hub announced in the presenter's `hello`.
    pub hub_limits: Option<Limits>,
    /// Pairs whose attendee received the presenter's data-channel message.
    pub succeeded: usize,
    /// The others, finished or not.
    pub failed: usize,
    /// `succeeded / pairs`.
    pub success_ratio: f64,
    /// From the attendee's `join_session` ack to the data-channel message it received, ms.
    pub setup_ms: Option<LatencySummary>,
    /// From the presenter starting its offer to the same message, ms.
    pub offer_to_message_ms: Option<LatencySummary>,
    /// From the presenter starting its offer to the guest's answer arriving (two relays through
    /// the hub and the guest's work on the offer), ms.
    pub offer_to_answer_ms: Option<LatencySummary>,
    /// Signals the successful pairs received (both directions).
    pub signals_received: u64,
    /// Gaps in the `seq` numbers those signals carried (0 when the hub numbers them right).
    pub seq_gaps: u64,
    /// `rate_limited` refusals of signaling commands, retried after the hub's `retry_after_ms`.
    pub rate_limited_retries: u64,
    /// Why pairs failed, by step and reason.
    pub failures: BTreeMap<String, u64>,
}

/// What the run gathered, before summarising.
pub struct Gathered<'a> {
    /// Every finished pair, in finishing order.
    pub outcomes: &'a [Result<PairDone, PairError>],
    /// The presenter connection's `rate_limited` refusals.
    pub presenter_rate_limited: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Whether the time limit cut it short.
    pub timed_out: bool,
    /// The presenter's `hello` limits.
    pub hub_limits: Option<Limits>,
}

/// The settings a report repeats.
pub struct Settings {
    /// This run's id.
    pub run_id: String,
    /// The hub's URL.
    pub url: String,
    /// Pairs asked for.
    pub pairs: usize,
    /// Pairs at once.
    pub pairs_at_once: usize,
    /// The time limit.
    pub duration_s: u64,
}

impl WebrtcReport {
    /// Summarises what the pairs measured.
    pub fn new(settings: Settings, g: &Gathered<'_>) -> WebrtcReport {
        let done: Vec<&PairDone> = g.outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        let mut failures = BTreeMap::new();
        for e in g.outcomes.iter().filter_map(|o| o.as_ref().err()) {
            *failures.entry(e.to_string()).or_insert(0) += 1;
        }
        let unfinished = settings.pairs.saturating_sub(g.outcomes.len());
        if unfinished > 0 {
            failures.insert(
                "unfinished: the run's --duration ran out".into(),
                unfinished as u64,
            );
        }
        let micros = |d: Duration| sample_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut setup: Vec<u32> = done.iter().map(|d| micros(d.join_to_message)).collect();
        let mut offer: Vec<u32> = done.iter().map(|d| micros(d.offer_to_message)).collect();
        let mut answer: Vec<u32> = done.iter().map(|d| micros(d.offer_to_answer)).collect();
        let succeeded = done.len();
        #[allow(clippy::cast_precision_loss)]
        let success_ratio = if settings.pairs == 0 {
            0.0
        } else {
            succeeded as f64 / settings.pairs as f64
        };
        WebrtcReport {
            scenario: "webrtc",
            run_id: settings.run_id,
            url: settings.url,
            pairs: settings.pairs,
            pairs_at_once: settings.pairs_at_once,
            duration_s: settings.duration_s,
            elapsed_s: g.elapsed.as_secs_f64(),
            timed_out: g.timed_out,
            hub_limits: g.hub_limits,
            succeeded,
            failed: settings.pairs - succeeded.min(settings.pairs),
            success_ratio,
            setup_ms: LatencySummary::from_micros(&mut setup),
            offer_to_message_ms: LatencySummary::from_micros(&mut offer),
            offer_to_answer_ms: LatencySummary::from_micros(&mut answer),
            signals_received: done.iter().map(|d| d.signals).sum(),
            seq_gaps: done.iter().map(|d| d.seq_gaps).sum(),
            rate_limited_retries: g.presenter_rate_limited
                + done.iter().map(|d| d.rate_limited).sum::<u64>(),
            failures,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "loadtest webrtc: {} presenter-attendee pairs, {} at once, limit {} s, against {}",
            self.pairs, self.pairs_at_once, self.duration_s, self.url
        );
        if let Some(l) = self.hub_limits {
            let _ = writeln!(
                out,
                "  hub limits   {} msg/s per connection, burst {}",
                l.messages_per_second, l.burst
            );
        }
        let _ = writeln!(
            out,
            "  pairs        succeeded {} of {} ({:.1}%)  failed {}  run {:.1} s{}",
            self.succeeded,
            self.pairs,
            self.success_ratio * 100.0,
            self.failed,
            self.elapsed_s,
            if self.timed_out { " (timed out)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  signals      received {}  seq gaps {}  rate_limited retries {}",
            self.signals_received, self.seq_gaps, self.rate_limited_retries
        );
        row(&mut out, "setup ms", self.setup_ms.as_ref());
        row(&mut out, "offer ms", self.offer_to_message_ms.as_ref());
        row(&mut out, "answer ms", self.offer_to_answer_ms.as_ref());
        let _ = writeln!(
            out,
            "  (setup: attendee's join_session ack -> the presenter's data-channel message \
             received; offer: the presenter's offer -> the same message; answer: the \
             presenter's offer -> the guest's answer back through the hub)"
        );
        if !self.failures.is_empty() {
            let _ = writeln!(out, "  failures:");
            for (why, n) in &self.failures {
                let _ = writeln!(out, "    {n:>8}  {why}");
            }
        }
        out
    }
}

fn row(out: &mut String, title: &str, l: Option<&LatencySummary>) {
    match l {
        Some(l) => {
            let _ = writeln!(
                out,
                "  {title:<12} p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}  ({} pairs)",
                l.p50, l.p95, l.p99, l.max, l.mean, l.samples
            );
        }
        None => {
            let _ = writeln!(out, "  {title:<12} no pair got its message");
        }
    }
}

impl crate::report::Printed for WebrtcReport {
    fn render(&self) -> String {
        self.table()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Printed;

    fn settings(pairs: usize) -> Settings {
        Settings {
            run_id: "r".into(),
            url: "ws://127.0.0.1:1/ws".into(),
            pairs,
            pairs_at_once: 2,
            duration_s: 30,
        }
    }

    #[test]
    fn failures_and_unfinished_pairs_count_against_the_ratio() {
        let outcomes = vec![
            Err(PairError {
                step: "signal",
                detail: "invalid_candidate".into(),
            }),
            Err(PairError {
                step: "signal",
                detail: "invalid_candidate".into(),
            }),
        ];
        let g = Gathered {
            outcomes: &outcomes,
            presenter_rate_limited: 3,
            elapsed: Duration::from_secs(2),
            timed_out: true,
            hub_limits: None,
        };
        let r = WebrtcReport::new(settings(4), &g);
        assert_eq!((r.succeeded, r.failed), (0, 4));
        assert!(r.success_ratio.abs() < 1e-9);
        assert_eq!(r.failures.get("signal: invalid_candidate"), Some(&2));
        assert_eq!(
            r.failures.get("unfinished: the run's --duration ran out"),
            Some(&2)
        );
        assert_eq!(r.rate_limited_retries, 3);
        assert!(r.setup_ms.is_none());
        let table = r.table();
        assert!(table.contains("succeeded 0 of 4"), "{table}");
        assert!(table.contains("no pair got its message"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(json["scenario"], "webrtc");
        assert_eq!(json["failed"], 4);
    }
}
