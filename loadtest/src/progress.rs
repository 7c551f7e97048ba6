//! The progress line: once a second on stderr, what phase the run is in, commands sent,
//! deliveries in the last second, errors, members held; with a storm, its accepted and failed
//! connections so far; with `--hub-pid`, the hub's RSS and CPU use over the last second; and
//! this process's own CPU use (a harness at 100% of its core measures its own delays).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::{Phase, RunCtx};
use crate::hubproc::{HubProbe, HubSample};
use crate::stats::read;
use crate::storm::StormCounters;

/// Interval of the progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the progress line watches besides the members' counters.
pub struct Watched {
    /// The initial connections asked for.
    pub users: usize,
    /// The storm's counters and its size, with a storm.
    pub storm: Option<(Arc<StormCounters>, usize)>,
    /// The hub's process, with `--hub-pid`.
    pub probe: Option<Arc<HubProbe>>,
    /// This process.
    pub own: HubProbe,
}

/// Prints the progress line until aborted.
pub async fn run(ctx: Arc<RunCtx>, phase: watch::Receiver<Phase>, watched: Watched) {
    let c = &ctx.counters;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut last_delivered = 0;
    let mut last_hub: Option<(Instant, HubSample)> = None;
    let mut last_own: Option<(Instant, HubSample)> = None;
    loop {
        tick.tick().await;
        let delivered = read(&c.delivered);
        let label = match *phase.borrow() {
            Phase::Connecting => "connecting",
            Phase::Hold => "hold",
            Phase::Load { .. } => "load",
            Phase::Drain => "drain",
            Phase::Close => "closing",
        };
        let mut line = format!(
            "[{:>5.0}s] {label:<10} sent {:>9}  delivered/s {:>8}  errors {:>6}  held {}/{}",
            ctx.epoch.elapsed().as_secs_f64(),
            read(&c.sent),
            delivered.saturating_sub(last_delivered),
            c.errors(),
            read(&c.held),
            watched.users,
        );
        if let Some((storm, count)) = &watched.storm {
            let _ = write!(
                line,
                "  storm ok {}/{count} failed {}",
                read(&storm.accepted),
                read(&storm.failed)
            );
        }
        if let Some(probe) = &watched.probe
            && let Some(now) = probe.sample()
        {
            let at = Instant::now();
            let _ = write!(line, "  hub rss {:.1} MiB", kib_to_mib(now.rss_kib));
            if let Some((then, before)) = last_hub {
                let _ = write!(
                    line,
                    " cpu {:.0}%",
                    cpu_percent(before.cpu_s, now.cpu_s, at - then)
                );
            }
            last_hub = Some((at, now));
        }
        if let Some(now) = watched.own.sample() {
            let at = Instant::now();
            if let Some((then, before)) = last_own {
                let _ = write!(
                    line,
                    "  self cpu {:.0}%",
                    cpu_percent(before.cpu_s, now.cpu_s, at - then)
                );
            }
            last_own = Some((at, now));
        }
        eprintln!("{line}");
        last_delivered = delivered;
    }
}

/// KiB as MiB.
#[allow(clippy::cast_precision_loss)]
pub fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds used over wall time `elapsed`, in percent of one core.
fn cpu_percent(before_s: f64, now_s: f64, elapsed: Duration) -> f64 {
    let wall = elapsed.as_secs_f64();
    if wall > 0.0 {
        (now_s - before_s).max(0.0) * 100.0 / wall
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_use_is_a_share_of_one_core() {
        assert!((cpu_percent(1.0, 1.5, Duration::from_secs(1)) - 50.0).abs() < 1e-9);
        assert!((cpu_percent(1.0, 3.0, Duration::from_secs(1)) - 200.0).abs() < 1e-9);
        assert_eq!(cpu_percent(1.0, 2.0, Duration::ZERO), 0.0);
        assert_eq!(cpu_percent(2.0, 1.0, Duration::from_secs(1)), 0.0);
        assert!((kib_to_mib(2048) - 2.0).abs() < 1e-9);
    }
}
