//! One run from start to end, in phases every connection watches ([`Phase`]):
//!
//! 1. **Setup**: the hub's address and the source addresses (`addrs.rs`), the preflight
//!    warnings, then accounts and rooms over REST (`rest.rs`); a REST failure ends the run.
//! 2. **Connecting** (`connect.rs`): N connections opened `--connect-concurrency` at a time.
//! 3. **Hold** (`--hold`): every connection open and idle; the hub's RSS is read at its end.
//! 4. **Load** for `--duration` (or until Ctrl-C): every member's writer sends on its ticker.
//!    With `--storm`, a quarter of the way in the storm (`storm.rs`) starts opening its
//!    connections; the load phase lasts until the storm has settled if that is later.
//! 5. **Drain**: writers stop; we wait up to [`DRAIN_MAX`] for the last deliveries, ending early
//!    once every command is answered and nothing has arrived for [`DRAIN_QUIET`]. Then the slow
//!    readers (`slow.rs`) are read for what became of them.
//! 6. **Close**: writers send close frames; readers end on the hub's answer, or are stopped after
//!    [`CLOSE_GRACE`]; the storm's connections close too. Samples are merged into the
//!    [`Report`].
//!
//! With `--hub-pid`, the hub's RSS and CPU time are read at each boundary (`hubproc.rs`).
//! A progress line goes to stderr once a second throughout (`progress.rs`); Ctrl-C ends the
//! phase under way and goes on to closing.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::args::Config;
use crate::client::{Phase, RunCtx};
use crate::connect::{self, Connected};
use crate::fdlimit::FileLimit;
use crate::hubmetrics::{self, HubCounted};
use crate::hubproc::{Divisors, HarnessCpu, HubProbe, HubReadings, HubReport, HubSample};
use crate::preflight;
use crate::progress::{self, Watched};
use crate::report::{Measured, Report};
use crate::rest::{self, Fixture};
use crate::sender::micros_since;
use crate::slow::{self, SlowReport};
use crate::stats::{Counters, Samples, read};
use crate::storm::{Storm, StormConn, StormReport};
use crate::ws::Dialer;

/// Longest wait after the load phase for deliveries still in flight.
pub const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Quiet time after which the drain ends early.
pub const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// How often the drain looks at the counters.
const DRAIN_POLL: Duration = Duration::from_millis(25);
/// Longest wait for the hub to answer our close frames.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Runs the whole test; `files` is the open-file limit `main` set.
///
/// # Errors
/// When the REST setup fails or the hub's address does not resolve. Connection failures are
/// counted in the report, not returned.
pub async fn run(config: &Config, files: Option<FileLimit>) -> anyhow::Result<Report> {
    let dialer = Arc::new(
        Dialer::resolve(
            &config.nodes,
            config.source_addrs,
            config.total_connections(),
        )
        .await?,
    );
    if dialer.sources() > 0 {
        eprintln!(
            "source addresses: {} (127.0.0.2 and up, connection i from address i % {})",
            dialer.sources(),
            dialer.sources()
        );
    }
    for w in preflight::before_run(config, files, dialer.sources()) {
        eprintln!("warning: {w}");
    }
    let probe = HubProbe::of(&config.hub_pid).map(Arc::new);
    // A wrong pid is said now, before minutes of setup, not at the first phase boundary.
    if let Some(p) = &probe {
        let _ = p.sample();
    }
    if let Some(w) = probe
        .as_ref()
        .and_then(|p| p.open_files_limit())
        .and_then(|limit| preflight::hub_open_files(config, limit))
    {
        eprintln!("warning: {w}");
    }
    let run_id = rest::run_id();
    let fixture = setup(config, &run_id).await?;

    #[allow(clippy::cast_precision_loss)]
    let period = (config.rate > 0.0)
        .then(|| Duration::try_from_secs_f64(config.senders() as f64 / config.rate).ok())
        .flatten();
    let ctx = Arc::new(RunCtx {
        counters: Arc::new(Counters::default()),
        epoch: Instant::now(),
        period,
        users: config.senders(),
        room_acks: (0..config.rooms).map(|_| AtomicU64::new(0)).collect(),
        storm: crate::stats::StormWindow::default(),
    });
    let mut storm = Storm::default();
    let mut phases = Phases::start(config, &ctx, probe.clone(), &storm);

    let probes = Probes {
        hub: probe.clone(),
        own: HubProbe::new(std::process::id()),
    };
    let mut marks = Marks::default();
    probes.mark(&mut marks, |r| &mut r.before);
    let counted_before = hubmetrics::scrape_all(&config.nodes).await;
    let watch = (phases.phase_rx.clone(), phases.stop_rx.clone());
    let connecting = connect::open_all(config, &fixture, &dialer, &ctx, &watch);
    let mut conns = phases.interruptible(connecting).await.unwrap_or_else(|| {
        eprintln!("interrupted while connecting");
        Connected {
            members: JoinSet::new(),
            members_per_room: vec![0; config.rooms],
            slow: Vec::new(),
        }
    });
    probes.mark(&mut marks, |r| &mut r.after_connect);
    let counters = &ctx.counters;
    eprintln!(
        "connected: {} of {} connections in {:.1}s",
        read(&counters.established),
        config.users,
        ctx.epoch.elapsed().as_secs_f64()
    );
    let held_idle = read(&counters.held) + conns.slow.len() as u64;
    print_idle(
        marks.hub.before,
        marks.hub.after_connect,
        held_idle,
        "after connecting",
    );

    if !config.hold.is_zero() && !conns.members.is_empty() {
        phases.phase_tx.send_replace(Phase::Hold);
        phases.interruptible(tokio::time::sleep(config.hold)).await;
        probes.mark(&mut marks, |r| &mut r.after_hold);
        print_idle(
            marks.hub.before,
            marks.hub.after_hold,
            held_idle,
            "after the hold",
        );
    }

    let mut load_seconds = 0.0;
    if !conns.members.is_empty() && !phases.interrupted() {
        let start = Instant::now();
        probes.mark(&mut marks, |r| &mut r.load_start);
        phases.phase_tx.send_replace(Phase::Load { start });
        let storm_conns = storm_conns(config, &fixture);
        let load = load_phase(
            config,
            &ctx,
            &dialer,
            (&mut storm, storm_conns),
            &probes,
            &mut marks,
        );
        if phases.interruptible(load).await.is_none() {
            eprintln!("interrupted: ending the load phase early");
            ctx.storm.finish(micros_since(ctx.epoch, Instant::now()));
        }
        phases.phase_tx.send_replace(Phase::Drain);
        load_seconds = start.elapsed().as_secs_f64();
        drain(counters).await;
        probes.mark(&mut marks, |r| &mut r.load_end);
    }
    // Tasks dropped by an interrupt while connecting hold nothing, whatever the counter says.
    let held_at_end = if conns.members.is_empty() {
        0
    } else {
        read(&counters.held)
    };
    let slow_outcomes = read_slow(std::mem::take(&mut conns.slow)).await;
    phases.phase_tx.send_replace(Phase::Close);

    let samples = close_members(&mut conns.members, &phases.stop_tx).await;
    let storm_connect = storm.close(CLOSE_GRACE).await;
    phases.progress.abort();
    let hub_counted = match (counted_before, hubmetrics::scrape_all(&config.nodes).await) {
        (Some(before), Some(after)) => Some(HubCounted::between(before, after)),
        _ => None,
    };

    let expected = expected_deliveries(&ctx, &conns.members_per_room);
    let hub = probe.as_ref().map(|p| {
        let d = Divisors {
            held_idle,
            delivered: read(&counters.delivered),
            load_seconds,
        };
        HubReport::new(p.pid(), &marks.hub, d)
    });
    let harness = HarnessCpu::new(&marks.own, load_seconds, storm.seconds());
    let mut during = samples.during_storm.clone();
    let mut outside = samples.outside_storm.clone();
    let storm_report = config.storm.map(|plan| {
        StormReport::new(
            plan,
            &storm.counters,
            storm_connect,
            (&mut during, &mut outside),
        )
    });
    Ok(Report::new(
        config,
        Measured {
            run_id,
            counters,
            held_at_end,
            load_seconds,
            samples: samples.all(),
            expected_deliveries: expected,
            source_addrs: dialer.sources(),
            open_files: files,
            hub,
            slow: (config.slow_readers > 0)
                .then(|| SlowReport::new(config.slow_readers, &slow_outcomes)),
            storm: storm_report,
            harness,
            hub_counted,
        },
    ))
}

/// The REST setup, with a hint when the hub's abuse limits refused it.
async fn setup(config: &Config, run_id: &str) -> anyhow::Result<Fixture> {
    eprintln!(
        "setup: run {run_id} against {} ({} accounts, {} workspaces)",
        config.target.http_uri(""),
        config.accounts,
        config.rooms
    );
    let fixture = match rest::setup(config, run_id).await {
        Ok(fixture) => fixture,
        Err(e) => {
            let text = format!("{e:#}");
            if text.contains("rate_limited") || text.contains("quota_exceeded") {
                eprintln!(
                    "hint: the hub's abuse limits refused the setup (many accounts, workspaces and \
                     memberships from one address); start the hub with the load-test settings \
                     from BENCHMARKS.md (HUB_LIMIT_* and HUB_QUOTA_* raised)"
                );
            }
            return Err(e.context("setup over REST failed"));
        }
    };
    if let Some(w) = preflight::token_ttl(config, fixture.token_ttl) {
        eprintln!("warning: {w}");
    }
    Ok(fixture)
}

/// The phase channels, the interrupt and the progress line.
struct Phases {
    phase_tx: watch::Sender<Phase>,
    phase_rx: watch::Receiver<Phase>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    interrupt: watch::Receiver<bool>,
    progress: tokio::task::JoinHandle<()>,
}

impl Phases {
    fn start(
        config: &Config,
        ctx: &Arc<RunCtx>,
        probe: Option<Arc<HubProbe>>,
        storm: &Storm,
    ) -> Phases {
        let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (interrupt_tx, interrupt) = watch::channel(false);
        // A flag rather than the signal's future, so that every phase can wait on it, even
        // after it fired.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt_tx.send_replace(true);
            }
        });
        let progress = tokio::spawn(progress::run(
            Arc::clone(ctx),
            phase_rx.clone(),
            Watched {
                users: config.users,
                storm: config
                    .storm
                    .map(|plan| (Arc::clone(&storm.counters), plan.count)),
                probe,
                own: HubProbe::new(std::process::id()),
            },
        ));
        Phases {
            phase_tx,
            phase_rx,
            stop_tx,
            stop_rx,
            interrupt,
            progress,
        }
    }

    fn interrupted(&self) -> bool {
        *self.interrupt.borrow()
    }

    /// Runs `fut` unless Ctrl-C comes first (or came already): `None` then.
    async fn interruptible<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        if self.interrupted() {
            return None;
        }
        tokio::select! {
            out = fut => Some(out),
            _ = self.interrupt.wait_for(|&i| i) => None,
        }
    }
}

/// The storm's connections: indices N.. with their accounts and rooms.
fn storm_conns(config: &Config, fixture: &Fixture) -> Vec<StormConn> {
    let Some(plan) = config.storm else {
        return Vec::new();
    };
    let (accounts, rooms) = (&fixture.accounts, &fixture.workspaces);
    (config.users..config.users + plan.count)
        .map(|idx| StormConn {
            idx,
            token: accounts[idx % accounts.len()].access_token.clone(),
            workspace: rooms[idx % rooms.len()],
        })
        .collect()
}

/// The load phase: `--duration`, and the storm a quarter of the way in, until both are over.
async fn load_phase(
    config: &Config,
    ctx: &RunCtx,
    dialer: &Arc<Dialer>,
    (storm, conns): (&mut Storm, Vec<StormConn>),
    probes: &Probes,
    marks: &mut Marks,
) {
    let storm_part = async {
        let Some(plan) = config.storm else { return };
        tokio::time::sleep(config.duration / 4).await;
        ctx.storm.begin(micros_since(ctx.epoch, Instant::now()));
        probes.mark(marks, |r| &mut r.storm_start);
        eprintln!(
            "storm: opening {} connections at {}/s",
            plan.count, plan.rate
        );
        storm.run(plan, dialer, conns).await;
        ctx.storm.finish(micros_since(ctx.epoch, Instant::now()));
        probes.mark(marks, |r| &mut r.storm_end);
    };
    tokio::join!(storm_part, tokio::time::sleep(config.duration));
}

/// The hub's probe (with `--hub-pid`) and this process's own, read together.
struct Probes {
    hub: Option<Arc<HubProbe>>,
    own: HubProbe,
}

/// The readings of both processes at the phase boundaries.
#[derive(Default)]
struct Marks {
    hub: HubReadings,
    own: HubReadings,
}

impl Probes {
    /// Reads both processes into the boundary `at` picks.
    fn mark(&self, marks: &mut Marks, at: fn(&mut HubReadings) -> &mut Option<HubSample>) {
        *at(&mut marks.hub) = self.hub.as_ref().and_then(|p| p.sample());
        *at(&mut marks.own) = self.own.sample();
    }
}

/// Prints the hub's RSS growth per held connection, when both readings exist.
fn print_idle(before: Option<HubSample>, now: Option<HubSample>, held: u64, when: &str) {
    if let (Some(b), Some(n)) = (before, now)
        && held > 0
    {
        #[allow(clippy::cast_precision_loss)]
        let per_conn = (n.rss_kib as f64 - b.rss_kib as f64) / held as f64;
        eprintln!(
            "hub: rss {:.1} MiB {when} ({:+.1} MiB, {per_conn:.1} KiB per connection over {held})",
            progress::kib_to_mib(n.rss_kib),
            (n.rss_kib as f64 - b.rss_kib as f64) / 1024.0,
        );
    }
}

/// Every event acked in a room should reach every member that joined it.
fn expected_deliveries(ctx: &RunCtx, members_per_room: &[u64]) -> u64 {
    ctx.room_acks
        .iter()
        .zip(members_per_room)
        .map(|(acks, members)| read(acks) * members)
        .sum()
}

/// The slow readers' final reads, all at once.
async fn read_slow(slow: Vec<crate::ws::Socket>) -> Vec<slow::SlowOutcome> {
    if slow.is_empty() {
        return Vec::new();
    }
    eprintln!(
        "slow readers: reading what {} of them have buffered",
        slow.len()
    );
    let mut reads = JoinSet::new();
    for ws in slow {
        reads.spawn(slow::final_read(ws));
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = reads.join_next().await {
        match joined {
            Ok(o) => outcomes.push(o),
            Err(e) => eprintln!("loadtest: a slow reader's final read failed: {e}"),
        }
    }
    outcomes
}

/// Lets the members close, then stops the rest; merges their samples.
async fn close_members(members: &mut JoinSet<Samples>, stop: &watch::Sender<bool>) -> Samples {
    let mut samples = Samples::default();
    let mut collect = |joined: Result<Samples, tokio::task::JoinError>| match joined {
        Ok(s) => samples.extend(&s),
        Err(e) => eprintln!("loadtest: a connection task failed: {e}"),
    };
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, members.join_next()).await {
        collect(joined);
    }
    stop.send_replace(true);
    while let Some(joined) = members.join_next().await {
        collect(joined);
    }
    samples
}

/// Waits for the deliveries still in flight after the load phase.
async fn drain(counters: &Counters) {
    let started = Instant::now();
    let mut last = read(&counters.delivered);
    let mut quiet_since = started;
    let mut poll = tokio::time::interval(DRAIN_POLL);
    loop {
        poll.tick().await;
        let now = Instant::now();
        let delivered = read(&counters.delivered);
        if delivered != last {
            last = delivered;
            quiet_since = now;
        }
        let answered = read(&counters.acks) + read(&counters.error_frames) >= read(&counters.sent);
        let nobody_left = read(&counters.held) == 0;
        if nobody_left
            || now - started >= DRAIN_MAX
            || (answered && now - quiet_since >= DRAIN_QUIET)
        {
            return;
        }
    }
}
