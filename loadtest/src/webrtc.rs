//! `--scenario webrtc`: real WebRTC peers (the `webrtc` crate, on loopback) negotiating through
//! a conference session's signaling, and how long it takes until data flows.
//!
//! ```text
//! loadtest --scenario webrtc --url http://127.0.0.1:8080 --users 100 --duration 60 [--json]
//! ```
//!
//! The setup registers one presenter, who creates a session (capacity `--users`) and starts it,
//! then connects over WebSocket and joins it. Then `--users` attendees, [`PAIRS_AT_ONCE`] at a
//! time, each run the whole path of one presenter ↔ attendee pair (`pair.rs`): a guest REST join,
//! the guest's own WebSocket and `join_session`, the presenter's `peer_joined`, a new presenter
//! peer connection for that attendee offering a data channel, the answer, candidates trickled
//! both ways through `signal` (the presenter's all over its one connection), and the presenter's
//! first data-channel message arriving at the attendee.
//!
//! **What is measured:** the setup time of each pair, from the attendee's `join_session` ack to
//! the presenter's data-channel message received by the attendee (and, on rows of their own,
//! from the presenter's offer to the same message, and to the guest's answer coming back through
//! the hub: the signaling's share), as p50/p95/p99/max; the share of pairs that got their
//! message; the signals relayed, gaps in their `seq` numbers (which must be none) and the
//! `rate_limited` refusals retried. The hub's per-connection rate limit (`HUB_RATE_PER_SEC`,
//! default 10/s, burst 20) applies to the presenter's one connection, which carries an offer, its
//! candidates and their end for every attendee (three commands per attendee on loopback): each
//! connection paces its commands to the limit `hello` announced (`conn.rs`), so at the default
//! the presenter's signaling, about three attendees a second, is what limits how fast attendees
//! connect. Raise `HUB_RATE_PER_SEC` and `HUB_RATE_BURST` to measure the relay itself.
//!
//! `--duration` bounds the whole run (setup included); pairs unfinished then count as failed.
//! Every pair keeps its peer connections and its guest connection open until all are done, as
//! in a real session. The rooms scenario's other options do not apply (`--rooms` is still
//! checked against `--users`: pass `--rooms 1` below 10 users).

mod conn;
mod pair;
mod peer;
mod report;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use signaling::client::ClientMsg;
use signaling::conference::JoinSession;
use signaling::{AttendeeId, SessionId};

use crate::args::Config;
use crate::report::Printed;
use crate::rest::{self, Api};
use crate::ws::Dialer;
use conn::HubConn;
use pair::{PairCtx, PairDone, PairError};
use report::{Gathered, Settings, WebrtcReport};

/// Pairs negotiating at once. Each negotiation is two peer connections' DTLS and SCTP
/// handshakes in this process: more at once measures this harness's CPU more than the hub.
pub const PAIRS_AT_ONCE: usize = 10;
/// Largest session the hub accepts.
const MAX_CAPACITY: usize = 100_000;

#[derive(Serialize)]
struct CreateSession<'a> {
    title: &'a str,
    capacity: usize,
}

#[derive(Deserialize)]
struct Created {
    id: SessionId,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Deserialize)]
struct JoinedAck {
    peer_id: AttendeeId,
}

/// Runs the scenario and prints its report; the process's exit code.
pub async fn main(config: &Config) -> ExitCode {
    let report = match run(config).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    report.print(config.json);
    if report.succeeded == 0 {
        eprintln!("loadtest: no pair got its data-channel message");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The setup, then every pair, within `--duration`.
///
/// # Errors
/// When the setup fails or does not finish in time.
async fn run(config: &Config) -> anyhow::Result<WebrtcReport> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.duration;
    let run_id = rest::run_id();
    let (ctx, hub_limits) = tokio::time::timeout_at(deadline, setup(config, &run_id))
        .await
        .context("the setup did not finish within --duration")??;
    eprintln!(
        "setup: session {} live, presenter joined in {:.1}s; negotiating {} pairs, {PAIRS_AT_ONCE} at once",
        ctx.session,
        started.elapsed().as_secs_f64(),
        config.users
    );

    let mut outcomes: Vec<Result<PairDone, PairError>> = Vec::with_capacity(config.users);
    let pairs = async {
        let mut running = stream::iter(1..=config.users)
            .map(|i| pair::run(&ctx, i))
            .buffer_unordered(PAIRS_AT_ONCE);
        while let Some(outcome) = running.next().await {
            outcomes.push(outcome);
            let n = outcomes.len();
            if n.is_multiple_of(10) || n == config.users {
                eprintln!("pairs: {n}/{} finished", config.users);
            }
        }
    };
    let timed_out = tokio::time::timeout_at(deadline, pairs).await.is_err();
    let elapsed = started.elapsed();
    let report = WebrtcReport::new(
        Settings {
            run_id,
            url: config.target.ws_display(),
            pairs: config.users,
            pairs_at_once: PAIRS_AT_ONCE,
            duration_s: config.duration.as_secs(),
        },
        &Gathered {
            outcomes: &outcomes,
            presenter_rate_limited: ctx.presenter.rate_limited(),
            elapsed,
            timed_out,
            hub_limits,
        },
    );
    for done in outcomes.into_iter().filter_map(Result::ok) {
        done.kept.close().await;
    }
    ctx.presenter.close().await;
    Ok(report)
}

/// Registers the presenter, creates and starts the session, and joins the presenter to it.
async fn setup(
    config: &Config,
    run_id: &str,
) -> anyhow::Result<(PairCtx, Option<signaling::server::Limits>)> {
    let api = Api::new(config.target.clone());
    let password = format!("lt-password-{run_id}");
    let (presenter, _) = rest::register(&api, run_id, &password, 0).await?;
    let title = format!("lt webrtc {run_id}");
    let created: Created = api
        .post(
            "/api/v1/sessions",
            Some(&presenter.access_token),
            &CreateSession {
                title: &title,
                capacity: config.users.clamp(1, MAX_CAPACITY),
            },
        )
        .await
        .context("creating the session (POST /api/v1/sessions)")?;
    let start = format!("/api/v1/sessions/{}/start", created.id);
    let _: serde_json::Value = api
        .post(&start, Some(&presenter.access_token), &Empty {})
        .await
        .with_context(|| format!("starting the session (POST {start})"))?;

    let dialer = Dialer::resolve(&config.nodes, config.source_addrs, config.users + 1).await?;
    let (socket, hub_limits) = dialer
        .open_bare(&presenter.access_token, 0)
        .await
        .map_err(|e| anyhow::anyhow!("the presenter's connection: {e}"))?;
    let conn = HubConn::start(socket, hub_limits);
    let join = ClientMsg::JoinSession(JoinSession {
        session_id: created.id,
        last_offset: None,
    });
    let ack = conn
        .request(&join)
        .await
        .map_err(|e| anyhow::anyhow!("the presenter's join_session: {e}"))?;
    let joined: JoinedAck =
        serde_json::from_value(ack).context("the presenter's join_session ack has no peer_id")?;
    let ctx = PairCtx {
        api,
        dialer,
        session: created.id,
        presenter: conn,
        presenter_peer: joined.peer_id,
    };
    Ok((ctx, hub_limits))
}
