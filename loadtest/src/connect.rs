//! The connecting phase: the N initial connections opened `--connect-concurrency` at a time.
//! Each member is handed to its own task (`client.rs`) as soon as it has joined, so that it
//! reads (and answers pings) while the others open; a slow reader (`slow.rs`) is only kept,
//! never read. A connection that fails to open is counted by reason, never fatal.

use std::sync::Arc;

use futures_util::{StreamExt, stream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::args::{Config, Op};
use crate::client::{self, ConnSpec, Phase, RunCtx};
use crate::preflight;
use crate::rest::Fixture;
use crate::stats::{Samples, bump, read};
use crate::ws::{Dialer, Socket};

/// What the connecting phase opened.
pub struct Connected {
    /// One task per member that joined, yielding its latency samples at the end.
    pub members: JoinSet<Samples>,
    /// Members that joined, by room index: each event in a room should reach that many.
    pub members_per_room: Vec<u64>,
    /// The slow readers that joined, unread since.
    pub slow: Vec<Socket>,
}

/// Opens every initial connection and starts each member's task.
pub async fn open_all(
    config: &Config,
    fixture: &Fixture,
    dialer: &Dialer,
    ctx: &Arc<RunCtx>,
    (phase, stop): &(watch::Receiver<Phase>, watch::Receiver<bool>),
) -> Connected {
    let counters = &ctx.counters;
    let accounts = &fixture.accounts;
    let rooms = &fixture.workspaces;
    let mut opened = stream::iter(0..config.users)
        .map(|idx| {
            let account = &accounts[idx % accounts.len()];
            let room = idx % rooms.len();
            let workspace = rooms[room];
            // A slow reader does nothing after joining, not even create a task to update.
            let op = if config.is_slow(idx) {
                Op::Broadcast
            } else {
                config.op
            };
            bump(&counters.attempted);
            async move {
                let session = dialer.open(&account.access_token, workspace, op, idx).await;
                let spec = ConnSpec {
                    idx,
                    room,
                    workspace,
                };
                (spec, session)
            }
        })
        .buffer_unordered(config.connect_concurrency);

    let mut out = Connected {
        members: JoinSet::new(),
        members_per_room: vec![0; rooms.len()],
        slow: Vec::new(),
    };
    while let Some((spec, session)) = opened.next().await {
        let session = match session {
            Ok(session) => session,
            Err(e) => {
                if read(&counters.open_failures) == 0 {
                    eprintln!("loadtest: connection {} failed to open: {e}", spec.idx);
                }
                counters.open_failed(e.to_string());
                continue;
            }
        };
        if let Some(limits) = session.limits
            && counters.record_limits(limits)
            && let Some(w) = preflight::rate_against_hello(config, limits.messages_per_second)
        {
            eprintln!("warning: {w}");
        }
        bump(&counters.established);
        if config.is_slow(spec.idx) {
            out.slow.push(session.ws);
            continue;
        }
        bump(&counters.held);
        if let Some(n) = out.members_per_room.get_mut(spec.room) {
            *n += 1;
        }
        out.members.spawn(client::run(
            session,
            spec,
            Arc::clone(ctx),
            phase.clone(),
            stop.clone(),
        ));
    }
    out
}
