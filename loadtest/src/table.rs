//! The report as a table for people: one block per concern (connections, messages, delivery
//! and latency, then the hub, the slow readers and the storm when they were asked for), and the
//! labelled tallies (error codes, close codes, failure reasons) under them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::hubproc::HubReport;
use crate::progress::kib_to_mib;
use crate::report::{Report, SLOW_CONSUMER};
use crate::slow::SlowReport;
use crate::stats::LatencySummary;
use crate::storm::StormReport;

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let c = &self.connections;
        let m = &self.messages;
        let d = &self.delivery;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "loadtest {}: {} connections in {} rooms ({} accounts), {} msg/s for {} s against {}",
            self.op.as_str(),
            self.users,
            self.rooms,
            self.accounts,
            self.rate_per_sec,
            self.duration_s,
            self.url
        );
        let mut setup = Vec::new();
        if self.hold_s > 0 {
            setup.push(format!("hold {} s", self.hold_s));
        }
        if self.slow_readers > 0 {
            setup.push(format!(
                "{} slow readers (members: the other {})",
                self.slow_readers,
                self.users - self.slow_readers
            ));
        }
        if self.source_addrs > 0 {
            setup.push(format!("{} source addresses", self.source_addrs));
        }
        if let Some(f) = self.open_files {
            setup.push(format!("open files {} (hard {})", f.soft, f.hard));
        }
        if !setup.is_empty() {
            let _ = writeln!(out, "  setup        {}", setup.join(", "));
        }
        let _ = writeln!(
            out,
            "  connections  attempted {}  established {}  held at end {}",
            c.attempted, c.established, c.held_at_end
        );
        let _ = writeln!(
            out,
            "               open failures {}  closed by hub {}  dropped {}",
            c.open_failures, c.closed_by_hub, c.dropped
        );
        let _ = writeln!(
            out,
            "  messages     sent {}  acks {}  error frames {}  skipped ticks {}",
            m.sent, m.acks, m.error_frames, m.skipped_ticks
        );
        let ratio = d
            .ratio
            .map(|r| format!(" ({:.2}% of {} expected)", r * 100.0, d.expected))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  delivered    {} events{ratio}, {:.1}/s over {:.1} s",
            d.events, d.per_second, d.load_seconds
        );
        latency_row(&mut out, "latency ms", self.latency_ms.as_ref());
        if let Some(hub) = &self.hub {
            hub_rows(&mut out, hub);
        }
        if let Some(slow) = &self.slow {
            slow_rows(&mut out, slow);
        }
        if let Some(storm) = &self.storm {
            storm_rows(&mut out, storm);
        }
        if let Some(counted) = self.hub_counted {
            let n = |v: u64| v.to_string();
            let _ = writeln!(
                out,
                "  hub counted  slow consumers closed {}  refused by limits and caps {}  (its /metrics, over the run)",
                or_dash(counted.slow_consumers, n),
                or_dash(counted.rate_limited, n),
            );
        }
        let h = &self.harness;
        let secs = |s: f64| format!("{s:.2}");
        let pct = |p: f64| format!("{p:.0}");
        let storm = h
            .cpu_storm_s
            .map(|cpu| {
                format!(
                    "  storm {} s ({}%)",
                    secs(cpu),
                    or_dash(h.cpu_storm_percent, pct)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  harness cpu  load {} s ({}% of a core){storm}",
            or_dash(h.cpu_load_s, secs),
            or_dash(h.cpu_load_percent, pct),
        );
        list(&mut out, "error frames by code", &m.errors_by_code);
        list(&mut out, "closes by code", &close_labels(&c.close_codes));
        list(&mut out, "open failures", &c.open_failure_reasons);
        list(&mut out, "dropped", &c.drop_reasons);
        if m.unparsed_frames > 0 {
            let _ = writeln!(out, "  unparsed frames: {}", m.unparsed_frames);
        }
        out
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

fn latency_row(out: &mut String, title: &str, latency: Option<&LatencySummary>) {
    match latency {
        Some(l) => {
            let _ = writeln!(
                out,
                "  {title:<12} p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}  ({} samples)",
                l.p50, l.p95, l.p99, l.max, l.mean, l.samples
            );
        }
        None => {
            let _ = writeln!(out, "  {title:<12} no events delivered");
        }
    }
}

/// A figure or `-` when it is missing.
fn or_dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

fn hub_rows(out: &mut String, h: &HubReport) {
    let mib = |kib: u64| format!("{:.1}", kib_to_mib(kib));
    let _ = writeln!(
        out,
        "  hub rss MiB  before {}  after connect {}  after hold {}  end {}  ({} KiB per connection)",
        or_dash(h.rss_before_kib, mib),
        or_dash(h.rss_after_connect_kib, mib),
        or_dash(h.rss_after_hold_kib, mib),
        or_dash(h.rss_end_kib, mib),
        or_dash(h.rss_per_conn_kib, |k| format!("{k:.1}")),
    );
    let secs = |s: f64| format!("{s:.2}");
    let _ = writeln!(
        out,
        "  hub cpu s    connect {}  load {} ({}% of a core, {} µs per delivered event){}  (pid {})",
        or_dash(h.cpu_connect_s, secs),
        or_dash(h.cpu_load_s, secs),
        or_dash(h.cpu_load_percent, |p| format!("{p:.0}")),
        or_dash(h.cpu_us_per_event, |u| format!("{u:.2}")),
        h.cpu_storm_s
            .map(|s| format!("  storm {}", secs(s)))
            .unwrap_or_default(),
        h.pid,
    );
}

fn slow_rows(out: &mut String, s: &SlowReport) {
    let _ = writeln!(
        out,
        "  slow readers {} of {} joined: closed by hub {}  still open {}  (eof {}, backlog read at end {} frames, {:.1} KiB)",
        s.established,
        s.asked,
        s.closed_by_hub,
        s.still_open,
        s.eof,
        s.backlog_frames,
        kib(s.backlog_bytes),
    );
    list(
        out,
        "slow readers' close codes",
        &close_labels(&s.close_codes),
    );
    list(out, "slow readers lost without a close frame", &s.lost);
}

/// Bytes in KiB, for display.
#[allow(clippy::cast_precision_loss)]
fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

fn storm_rows(out: &mut String, s: &StormReport) {
    let _ = writeln!(
        out,
        "  storm        {} at {}/s: attempted {}  accepted {}  failed {}  achieved {:.1}/s over {:.2} s  (launch lag max {:.1} ms)",
        s.count,
        s.rate_asked,
        s.attempted,
        s.accepted,
        s.failed,
        s.achieved_rate,
        s.window_seconds,
        s.launch_lag_max_ms,
    );
    latency_row(out, "connect ms", s.connect_latency_ms.as_ref());
    latency_row(
        out,
        "members ms, during storm",
        s.members_latency_during_ms.as_ref(),
    );
    latency_row(
        out,
        "members ms, outside storm",
        s.members_latency_outside_ms.as_ref(),
    );
    if s.closed_by_hub + s.dropped > 0 {
        let _ = writeln!(
            out,
            "  storm connections ended early: closed by hub {}  dropped {}",
            s.closed_by_hub, s.dropped
        );
    }
    list(out, "storm failures", &s.failure_reasons);
    list(out, "storm connections' early ends", &s.early_ends);
}

/// Close codes labelled for people: 4008 says what it means.
pub fn close_labels(codes: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    codes
        .iter()
        .map(|(code, n)| {
            let label = if code.parse() == Ok(SLOW_CONSUMER) {
                format!("{code} (slow consumer)")
            } else {
                code.clone()
            };
            (label, *n)
        })
        .collect()
}
