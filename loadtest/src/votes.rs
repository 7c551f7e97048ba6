//! `--scenario votes`: a vote storm in conference sessions, and a check that the totals the hub
//! reports are exactly what the acknowledged votes make them.
//!
//! ```text
//! loadtest --scenario votes --users 1000 --rooms 1 --questions 10 --rate 2000 --duration 20 \
//!     [--hub-pid PID] [--json]
//! ```
//!
//! `--users` guests (one connection each) are spread over `--rooms` sessions, voter i in session
//! i % S; together they send `--rate` votes per second for `--duration` seconds, each vote a
//! question drawn at random and an action on it (up, down or clear; mostly a change, so totals
//! move by differences, sometimes the same vote again). How a run flows, one file per step:
//!
//! 1. **Setup** over REST ([`setup`]): a presenter creates and starts the sessions, the guests
//!    are admitted, and each session's `--questions` are asked by its own voters.
//! 2. **Connecting** ([`voter::open`]): `--connect-concurrency` at a time, each joined voter run
//!    at once ([`voter::run`]) so that it reads (the frames it reads: [`wire`]) while the others
//!    open.
//! 3. **Load**: each voter votes on its staggered ticker, within the hub's per-connection frame
//!    limit ([`plan`]) and with at most [`voter::MAX_IN_FLIGHT`] votes unanswered.
//! 4. **Drain**: no more votes; wait up to [`DRAIN_MAX`] until every vote is answered.
//! 5. **Close**, then the **check** ([`check`]): each voter's book ([`book`]) gives its vote on
//!    each question after its acked votes; their sum (plus the totals when asked) is held
//!    against `GET /api/v1/sessions/{id}/questions` as the presenter sees it, and against the
//!    latest `question` frame any voter saw. The **report** ([`report`]) says what it found,
//!    with the hub's journal commits from its `/metrics` ([`metrics`]).
//!
//! Exits 0 when the check passes, 1 when it fails or is inconclusive, when the setup failed, or
//! when no voter connected.

mod book;
mod check;
mod metrics;
mod plan;
mod report;
mod setup;
mod voter;
mod wire;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use self::book::{Book, Ledger};
use self::check::Outcome;
use self::report::{Measured, VotesReport};
use self::setup::Fixture;
use self::voter::{Live, Voter, VoterCtx};
use crate::args::Config;
use crate::client::Phase;
use crate::hubproc::{Divisors, HarnessCpu, HubProbe, HubReadings, HubReport};
use crate::report::Printed;
use crate::rest::{self, Api};
use crate::stats::{Counters, read};
use crate::ws::Dialer;

/// Longest wait after the load phase for the last answers.
pub const DRAIN_MAX: Duration = Duration::from_secs(60);
/// How often the drain looks at the counters.
const DRAIN_POLL: Duration = Duration::from_millis(25);
/// Longest wait for the hub to answer our close frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Longest wait for the voters' tasks to end once told to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the voters keep reading after the last answer, before they close: the hub fans
/// vote totals out coalesced, up to 100 ms after the vote's ack (docs/protocol.md, § 8.3), and
/// the check holds the last `question` frame each voter saw against the acked votes.
const FRAME_SETTLE: Duration = Duration::from_millis(500);

/// Runs the scenario, prints its report and says how the process should exit.
pub async fn main(config: &Config) -> ExitCode {
    let report = match run(config).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    report.print(config.json);
    if report.connections.established == 0 {
        eprintln!("loadtest: no voter connected");
        return ExitCode::FAILURE;
    }
    match report.check.result {
        Outcome::Pass => ExitCode::SUCCESS,
        Outcome::Inconclusive => {
            eprintln!("loadtest: check inconclusive: some votes were never answered");
            ExitCode::FAILURE
        }
        Outcome::Fail => {
            eprintln!("loadtest: check FAILED: the hub contradicts the acknowledged votes");
            ExitCode::FAILURE
        }
    }
}

/// A joined voter as the run keeps it: its session and its book.
struct Kept {
    idx: usize,
    session: usize,
    book: Arc<Mutex<Book>>,
}

async fn run(config: &Config) -> anyhow::Result<VotesReport> {
    let dialer = Dialer::resolve(&config.nodes, config.source_addrs, config.users).await?;
    let api = Api::new(config.target.clone());
    let run_id = rest::run_id();
    eprintln!(
        "setup: run {run_id} against {} ({} guests in {} sessions, {} questions each)",
        config.target.http_uri(""),
        config.users,
        config.rooms,
        config.questions
    );
    let fixture = setup::setup(&api, config, &run_id).await.map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("rate_limited") || text.contains("quota_exceeded") {
            eprintln!(
                "hint: start the hub with HUB_LIMIT_GUEST_JOINS_PER_IP, HUB_LIMIT_WRITE_PER_IP and \
                 HUB_QUOTA_SESSIONS_PER_HOUR raised (BENCHMARKS.md, the vote storm)"
            );
        }
        e.context("setup over REST failed")
    })?;
    let ctx = Arc::new(VoterCtx {
        counters: Arc::new(Counters::default()),
        live: Live::default(),
        #[allow(clippy::cast_precision_loss)]
        period: (config.rate > 0.0)
            .then(|| Duration::try_from_secs_f64(config.users as f64 / config.rate).ok())
            .flatten(),
        voters: config.users,
        seed: seed(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (stop_tx, stop_rx) = watch::channel(false);
    let watch = (phase_rx, stop_rx);
    let started = Instant::now();
    let (mut tasks, kept) = connect_all(config, &fixture, &dialer, &ctx, &watch).await;
    let counters = &ctx.counters;
    eprintln!(
        "connected: {} of {} voters in {:.1}s",
        read(&counters.established),
        config.users,
        started.elapsed().as_secs_f64()
    );
    warn_about_limits(config, counters);

    let probe = HubProbe::of(&config.hub_pid);
    let own = HubProbe::new(std::process::id());
    let (mut hub_marks, mut own_marks) = (HubReadings::default(), HubReadings::default());
    let journal_before = metrics::read(&config.target).await;
    hub_marks.load_start = probe.as_ref().and_then(HubProbe::sample);
    own_marks.load_start = own.sample();
    let start = Instant::now();
    phase_tx.send_replace(Phase::Load { start });
    let progress = tokio::spawn(progress(Arc::clone(&ctx), start));
    tokio::select! {
        () = tokio::time::sleep(config.duration) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: ending the load phase early"),
    }
    let load_s = start.elapsed().as_secs_f64();
    phase_tx.send_replace(Phase::Drain);
    let drain_s = drain(&ctx).await;
    hub_marks.load_end = probe.as_ref().and_then(HubProbe::sample);
    own_marks.load_end = own.sample();
    let journal_after = metrics::read(&config.target).await;
    progress.abort();
    let held_at_end = read(&counters.held);
    tokio::time::sleep(FRAME_SETTLE).await;

    close_all(&mut tasks, &phase_tx, &stop_tx).await;
    let ledgers: Vec<(usize, usize, Ledger)> = kept
        .into_iter()
        .map(|k| {
            let book = std::mem::replace(&mut *voter::lock(&k.book), Book::new(0));
            (k.idx, k.session, book.finish())
        })
        .collect();
    let voters_lost = read(&counters.closed_by_hub) + read(&counters.dropped) > 0;
    let check = check::run(&api, &fixture, &ledgers, voters_lost).await;
    let acked = read(&counters.acks);
    let measured = Measured {
        load_s,
        drain_s,
        held_at_end,
        hub: probe.map(|p| {
            let d = Divisors {
                held_idle: 0,
                delivered: acked,
                load_seconds: load_s + drain_s,
            };
            HubReport::new(p.pid(), &hub_marks, d)
        }),
        harness: HarnessCpu::new(&own_marks, load_s + drain_s, None),
        hub_counted: journal_before.zip(journal_after).map(|(b, a)| b.until(&a)),
    };
    Ok(VotesReport::new(
        config,
        run_id,
        &ctx,
        &ledgers,
        (check, measured),
    ))
}

/// Close frames from every voter, then a stop for those the hub did not answer in time; the
/// voters' books stay with the run whatever becomes of their tasks.
async fn close_all(
    tasks: &mut JoinSet<()>,
    phase: &watch::Sender<Phase>,
    stop: &watch::Sender<bool>,
) {
    phase.send_replace(Phase::Close);
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    stop.send_replace(true);
    let stopped = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        eprintln!("loadtest: {} voters did not stop; aborted", tasks.len());
        tasks.shutdown().await;
    }
}

/// A session's questions by index, and their indices by id, shared by its voters.
type SessionQuestions = (Arc<Vec<Uuid>>, Arc<HashMap<Uuid, usize>>);

/// Opens every voter, `--connect-concurrency` at a time, and starts each as it joins.
async fn connect_all(
    config: &Config,
    fixture: &Fixture,
    dialer: &Dialer,
    ctx: &Arc<VoterCtx>,
    (phase, stop): &(watch::Receiver<Phase>, watch::Receiver<bool>),
) -> (JoinSet<()>, Vec<Kept>) {
    let shared: Vec<SessionQuestions> = fixture
        .sessions
        .iter()
        .map(|s| {
            let index = s.questions.iter().enumerate().map(|(i, q)| (*q, i));
            (Arc::new(s.questions.clone()), Arc::new(index.collect()))
        })
        .collect();
    let counters = &ctx.counters;
    let mut opened = stream::iter(fixture.guests.iter().enumerate())
        .map(|(idx, guest)| {
            crate::stats::bump(&counters.attempted);
            let session_id = fixture.sessions.get(guest.session).map(|s| s.id);
            async move {
                let joined = match session_id {
                    Some(id) => voter::open(dialer, &guest.token, id, idx).await,
                    None => Err(crate::ws::OpenError {
                        step: "setup",
                        detail: "no such session".into(),
                    }),
                };
                (idx, guest.session, session_id, joined)
            }
        })
        .buffer_unordered(config.connect_concurrency);
    let mut tasks = JoinSet::new();
    let mut kept = Vec::new();
    while let Some((idx, session, session_id, joined)) = opened.next().await {
        let (joined, Some(session_id), Some((questions, index))) =
            (joined, session_id, shared.get(session))
        else {
            continue;
        };
        let joined = match joined {
            Ok(joined) => joined,
            Err(e) => {
                if read(&counters.open_failures) == 0 {
                    eprintln!("loadtest: voter {idx} failed to open: {e}");
                }
                counters.open_failed(e.to_string());
                continue;
            }
        };
        if let Some(limits) = joined.limits {
            counters.record_limits(limits);
        }
        crate::stats::bump(&counters.established);
        crate::stats::bump(&counters.held);
        let book = Arc::new(Mutex::new(Book::new(questions.len())));
        let v = Voter {
            idx,
            session_id,
            questions: Arc::clone(questions),
            index: Arc::clone(index),
        };
        tasks.spawn(voter::run(
            joined,
            v,
            Arc::clone(&book),
            Arc::clone(ctx),
            (phase.clone(), stop.clone()),
        ));
        kept.push(Kept { idx, session, book });
    }
    (tasks, kept)
}

/// Says when the asked rate is above what the hub lets one connection send.
fn warn_about_limits(config: &Config, counters: &Counters) {
    let (Some(limits), voters) = (counters.limits(), read(&counters.established)) else {
        return;
    };
    let bucket = plan::Bucket::new(Some(limits), Instant::now());
    #[allow(clippy::cast_precision_loss)]
    let each = config.rate / voters.max(1) as f64;
    if each > bucket.per_sec() {
        eprintln!(
            "warning: {each:.1} votes/s per voter is above the {:.1}/s kept under the hub's \
             limit ({}/s per connection): ticks beyond it are skipped, not sent",
            bucket.per_sec(),
            limits.messages_per_second
        );
    }
}

/// Votes written and not answered, leaving out those of connections lost meanwhile.
fn outstanding(ctx: &VoterCtx) -> u64 {
    let (c, l) = (&ctx.counters, &ctx.live);
    read(&c.sent).saturating_sub(read(&c.acks) + read(&l.refused) + read(&l.abandoned))
}

/// Waits until every vote is answered (or [`DRAIN_MAX`]); its length in seconds.
async fn drain(ctx: &VoterCtx) -> f64 {
    let start = Instant::now();
    while outstanding(ctx) > 0 && read(&ctx.counters.held) > 0 && start.elapsed() < DRAIN_MAX {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let left = outstanding(ctx);
    if left > 0 {
        eprintln!(
            "drain: {left} votes still unanswered after {:.1}s",
            start.elapsed().as_secs_f64()
        );
    }
    start.elapsed().as_secs_f64()
}

/// One line a second on stderr while the votes go.
async fn progress(ctx: Arc<VoterCtx>, start: Instant) {
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let (c, l) = (&ctx.counters, &ctx.live);
    let mut last_acked = 0;
    loop {
        tick.tick().await;
        let acked = read(&c.acks);
        eprintln!(
            "votes {:>4.0}s  sent {}  acked {} (+{}/s)  refused {}  awaiting {}  held {}",
            start.elapsed().as_secs_f64(),
            read(&c.sent),
            acked,
            acked - last_acked,
            read(&l.refused),
            outstanding(&ctx),
            read(&c.held)
        );
        last_acked = acked;
    }
}

/// The seed of the voters' draws: the clock, so runs differ (it is in the report).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // The low 64 bits are the ones that vary.
    #[allow(clippy::cast_possible_truncation)]
    let low = nanos as u64;
    low
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_between_runs() {
        let a = seed();
        std::thread::sleep(Duration::from_micros(5));
        assert_ne!(a, seed());
    }
}
