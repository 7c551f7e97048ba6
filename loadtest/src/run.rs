//! One run from start to end, in phases every connection watches ([`Phase`]):
//!
//! 1. **Setup** over REST (`rest.rs`); a failure here ends the run with an error.
//! 2. **Connecting**: N connections opened `--connect-concurrency` at a time, each handed to its
//!    own task (`client.rs`) as soon as it has joined, so it reads (and answers pings) while the
//!    others open.
//! 3. **Load** for `--duration` (or until Ctrl-C): every writer sends on its ticker.
//! 4. **Drain**: writers stop; we wait up to [`DRAIN_MAX`] for the last deliveries, ending early
//!    once every command is answered and nothing has arrived for [`DRAIN_QUIET`].
//! 5. **Close**: writers send close frames; readers end on the hub's answer, or are stopped after
//!    [`CLOSE_GRACE`]. Their samples are merged into the [`Report`].
//!
//! A progress line goes to stderr once a second throughout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::args::Config;
use crate::client::{self, ConnSpec, Phase, RunCtx};
use crate::preflight;
use crate::report::{Measured, Report};
use crate::rest::{self, Fixture};
use crate::stats::{Counters, bump, read};
use crate::ws::Dialer;

/// Longest wait after the load phase for deliveries still in flight.
pub const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Quiet time after which the drain ends early.
pub const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// How often the drain looks at the counters.
const DRAIN_POLL: Duration = Duration::from_millis(25);
/// Longest wait for the hub to answer our close frames.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Interval of the progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Runs the whole test.
///
/// # Errors
/// When the REST setup fails or the hub's address does not resolve. Connection failures are
/// counted in the report, not returned.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    for w in preflight::before_run(config, preflight::open_files_limit()) {
        eprintln!("warning: {w}");
    }
    let run_id = rest::run_id();
    eprintln!(
        "setup: run {run_id} against {} ({} accounts, {} workspaces)",
        config.target.http_uri(""),
        config.accounts,
        config.rooms
    );
    let fixture = match rest::setup(config, &run_id).await {
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
    let dialer = Dialer::resolve(&config.target).await?;

    #[allow(clippy::cast_precision_loss)]
    let period = (config.rate > 0.0)
        .then(|| Duration::try_from_secs_f64(config.users as f64 / config.rate).ok())
        .flatten();
    let ctx = Arc::new(RunCtx {
        counters: Arc::new(Counters::default()),
        epoch: Instant::now(),
        period,
        users: config.users,
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress = tokio::spawn(progress_loop(
        Arc::clone(&ctx),
        phase_rx.clone(),
        config.users,
    ));
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());

    let watch = (phase_rx, stop_rx);
    let mut conns = tokio::select! {
        conns = open_all(config, &fixture, &dialer, &ctx, &watch) => conns,
        _ = &mut interrupt => {
            eprintln!("interrupted while connecting");
            JoinSet::new()
        }
    };
    let counters = &ctx.counters;
    eprintln!(
        "connected: {} of {} connections in {:.1}s",
        read(&counters.established),
        config.users,
        ctx.epoch.elapsed().as_secs_f64()
    );

    let mut load_seconds = 0.0;
    if !conns.is_empty() {
        let start = Instant::now();
        phase_tx.send_replace(Phase::Load { start });
        tokio::select! {
            () = tokio::time::sleep(config.duration) => {}
            _ = &mut interrupt => eprintln!("interrupted: ending the load phase early"),
        }
        phase_tx.send_replace(Phase::Drain);
        load_seconds = start.elapsed().as_secs_f64();
        drain(counters).await;
    }
    // Tasks dropped by an interrupt while connecting hold nothing, whatever the counter says.
    let held_at_end = if conns.is_empty() {
        0
    } else {
        read(&counters.held)
    };
    phase_tx.send_replace(Phase::Close);

    let mut samples = Vec::new();
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, conns.join_next()).await {
        collect(joined, &mut samples);
    }
    stop_tx.send_replace(true);
    while let Some(joined) = conns.join_next().await {
        collect(joined, &mut samples);
    }
    progress.abort();

    Ok(Report::new(
        config,
        Measured {
            run_id,
            counters,
            held_at_end,
            load_seconds,
            samples,
        },
    ))
}

fn collect(joined: Result<Vec<u32>, tokio::task::JoinError>, samples: &mut Vec<u32>) {
    match joined {
        Ok(s) => samples.extend_from_slice(&s),
        Err(e) => eprintln!("loadtest: a connection task failed: {e}"),
    }
}

/// Opens every connection and starts its task; returns the tasks.
async fn open_all(
    config: &Config,
    fixture: &Fixture,
    dialer: &Dialer,
    ctx: &Arc<RunCtx>,
    (phase, stop): &(watch::Receiver<Phase>, watch::Receiver<bool>),
) -> JoinSet<Vec<u32>> {
    let counters = &ctx.counters;
    let accounts = &fixture.accounts;
    let rooms = &fixture.workspaces;
    let mut opened = stream::iter(0..config.users)
        .map(|idx| {
            let account = &accounts[idx % accounts.len()];
            let workspace = rooms[idx % rooms.len()];
            bump(&counters.attempted);
            async move {
                let session = dialer
                    .open(&account.access_token, workspace, config.op, idx)
                    .await;
                (ConnSpec { idx, workspace }, session)
            }
        })
        .buffer_unordered(config.connect_concurrency);

    let mut conns = JoinSet::new();
    while let Some((spec, session)) = opened.next().await {
        match session {
            Ok(session) => {
                if let Some(limits) = session.limits
                    && counters.record_limits(limits)
                    && let Some(w) =
                        preflight::rate_against_hello(config, limits.messages_per_second)
                {
                    eprintln!("warning: {w}");
                }
                bump(&counters.established);
                bump(&counters.held);
                conns.spawn(client::run(
                    session,
                    spec,
                    Arc::clone(ctx),
                    phase.clone(),
                    stop.clone(),
                ));
            }
            Err(e) => {
                if read(&counters.open_failures) == 0 {
                    eprintln!("loadtest: connection {} failed to open: {e}", spec.idx);
                }
                counters.open_failed(e.to_string());
            }
        }
    }
    conns
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

/// Prints one line a second on stderr: what phase, sent, delivered in the last second, errors,
/// connections held.
async fn progress_loop(ctx: Arc<RunCtx>, phase: watch::Receiver<Phase>, users: usize) {
    let c = &ctx.counters;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut last_delivered = 0;
    loop {
        tick.tick().await;
        let delivered = read(&c.delivered);
        let label = match *phase.borrow() {
            Phase::Connecting => "connecting",
            Phase::Load { .. } => "load",
            Phase::Drain => "drain",
            Phase::Close => "closing",
        };
        eprintln!(
            "[{:>5.0}s] {label:<10} sent {:>9}  delivered/s {:>8}  errors {:>6}  held {}/{users}",
            ctx.epoch.elapsed().as_secs_f64(),
            read(&c.sent),
            delivered.saturating_sub(last_delivered),
            c.errors(),
            read(&c.held),
        );
        last_delivered = delivered;
    }
}
