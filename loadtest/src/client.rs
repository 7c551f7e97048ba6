//! The load loop of one joined connection: one reader task and one writer task over the split
//! socket.
//!
//! - The **reader** (the connection's own task, [`run`]) reads every frame, turns measured events
//!   into latency samples, counts acks and errors, and passes the writer what it must know: control
//!   frames the protocol obliges us to send (pongs, the close echo) and, for `task_update`, the
//!   outcome of the update in flight.
//! - The **writer** owns the write half and the [`Sender`] state (`sender.rs`). It sends nothing
//!   until the run enters [`Phase::Load`], then one command per tick of its own ticker, staggered
//!   so that the connections together send evenly through each second; it stops at
//!   [`Phase::Drain`] and sends a close frame (1000) at [`Phase::Close`].
//!
//! The split exists because fastwebsockets' `read_frame` is not cancel-safe: a reader that also
//! waited on a ticker in a `select!` could lose half a frame.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, WebSocketWrite,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use signaling::{TaskId, WorkspaceId};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Interval;

use crate::frames::{self, Incoming};
use crate::sender::{OwnTask, Sender, Tick, micros_since, next_tick, staggered};
use crate::stats::{Counters, Samples, StormWindow, bump};
use crate::ws::Session;

type WsRead = FragmentCollectorRead<ReadHalf<TokioIo<Upgraded>>>;
type WsWrite = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// Notes the reader can have waiting for the writer.
const NOTE_CAPACITY: usize = 64;
/// How long a finished reader waits for its writer to finish writing.
const WRITER_GRACE: Duration = Duration::from_millis(200);

/// Where the run stands; every connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connections are still being opened: read, answer pings, send nothing.
    Connecting,
    /// Every connection is open; holding them idle (`--hold`): read, answer pings, send nothing.
    Hold,
    /// Send on the ticker; the ticker's schedule starts at `start`.
    Load {
        /// When the load phase began.
        start: Instant,
    },
    /// Stop sending; keep reading the deliveries still in flight.
    Drain,
    /// Send a close frame and wait for the hub's answer.
    Close,
}

/// What every connection shares, read-only.
#[derive(Debug)]
pub struct RunCtx {
    /// Where the counts go.
    pub counters: Arc<Counters>,
    /// The instant send times are measured from.
    pub epoch: Instant,
    /// Time between two sends of one connection; `None` when the rate is zero.
    pub period: Option<Duration>,
    /// Number of sending connections (all but the slow readers), for staggering.
    pub users: usize,
    /// `ack`s received, by room index: with the members per room, what should be delivered.
    pub room_acks: Vec<AtomicU64>,
    /// When the connection storm ran, to file samples under it.
    pub storm: StormWindow,
}

/// What one connection is.
#[derive(Debug, Clone, Copy)]
pub struct ConnSpec {
    /// Its index, 0..N.
    pub idx: usize,
    /// The index of the room it joined (`idx % R`).
    pub room: usize,
    /// The room it joined.
    pub workspace: WorkspaceId,
}

/// What the reader tells the writer.
enum Note {
    /// A frame the protocol obliges us to send (pong, close echo).
    Control(Frame<'static>),
    /// The update in flight was answered; the task's version now, when the answer said.
    Settled { version: Option<u64> },
    /// The hub says our task is at this version (`conflict_detected`).
    Version(u64),
}

/// How a reader ended.
enum End {
    /// The run told it to stop.
    Stopped,
    /// The hub sent a close frame with this code.
    Closed(u16),
    /// The connection broke without a close frame.
    Lost(String),
}

/// Runs a joined connection until the run stops it; returns its latency samples (µs).
pub async fn run(
    session: Session,
    spec: ConnSpec,
    ctx: Arc<RunCtx>,
    phase: watch::Receiver<Phase>,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let own_task = session.task.map(|(id, version)| OwnTask {
        id,
        version,
        in_flight: false,
    });
    let (rx, tx) = session.ws.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let (notes, notes_rx) = mpsc::channel(NOTE_CAPACITY);
    let sender = Sender::new(spec, ctx.epoch, own_task);
    let writer = tokio::spawn(write_loop(
        tx,
        notes_rx,
        phase.clone(),
        sender,
        Arc::clone(&ctx),
    ));

    let mut reader = Reader {
        ctx: &ctx,
        room: spec.room,
        own_task: own_task.map(|t| t.id),
        notes,
        samples: Samples::default(),
    };
    let end = reader.read_loop(&mut rx, &mut stop).await;
    let closing = *phase.borrow() == Phase::Close;
    let counters = &ctx.counters;
    match end {
        End::Stopped => {}
        _ if closing => {}
        End::Closed(code) => counters.closed_by_hub(code),
        End::Lost(reason) => counters.dropped(reason),
    }
    let Reader { notes, samples, .. } = reader;
    // Without the reader the writer has nothing to wait for; let it finish its last write.
    drop(notes);
    let abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_GRACE, writer).await.is_err() {
        abort.abort();
    }
    samples
}

/// The reading side of a connection.
struct Reader<'a> {
    ctx: &'a RunCtx,
    room: usize,
    own_task: Option<TaskId>,
    notes: mpsc::Sender<Note>,
    samples: Samples,
}

impl Reader<'_> {
    async fn read_loop(&mut self, rx: &mut WsRead, stop: &mut watch::Receiver<bool>) -> End {
        let control = self.notes.clone();
        let mut send_fn = move |frame: Frame<'static>| {
            let control = control.clone();
            async move {
                // If the writer is gone the connection is ending anyway.
                let _ = control.send(Note::Control(frame)).await;
                Ok::<(), Infallible>(())
            }
        };
        loop {
            let frame = tokio::select! {
                biased;
                _ = stop.wait_for(|&s| s) => return End::Stopped,
                r = rx.read_frame(&mut send_fn) => r,
            };
            match frame {
                Ok(f) if f.opcode == OpCode::Text => self.on_text(&f.payload).await,
                Ok(f) if f.opcode == OpCode::Close => {
                    return End::Closed(frames::close_code(&f.payload));
                }
                Ok(_) => {}
                Err(e) => return End::Lost(describe(&e)),
            }
        }
    }

    async fn on_text(&mut self, text: &[u8]) {
        let counters = &self.ctx.counters;
        let Ok(f) = Incoming::parse(text) else {
            bump(&counters.unparsed);
            return;
        };
        if let Some(t) = f.sent_at_micros() {
            let now = micros_since(self.ctx.epoch, Instant::now());
            self.samples.push(&self.ctx.storm, t, now.saturating_sub(t));
            bump(&counters.delivered);
            return;
        }
        let note = match &*f.kind {
            "ack" => {
                bump(&counters.acks);
                if let Some(acks) = self.ctx.room_acks.get(self.room) {
                    bump(acks);
                }
                self.own_task.map(|_| Note::Settled {
                    version: f.acked_task().map(|t| t.version),
                })
            }
            "error" => {
                counters.error_frame(f.code.as_deref().unwrap_or("(no code)"));
                // The update in flight is the only command this connection has outstanding, so
                // any error answers it, even one without a `ref`: the hub refuses a frame for
                // the rate limit (or its size) before decoding it, and then has no `ref` to echo.
                self.own_task.map(|_| Note::Settled { version: None })
            }
            "conflict_detected" => f
                .current
                .filter(|cur| Some(cur.id) == self.own_task)
                .map(|cur| Note::Version(cur.version)),
            _ => None,
        };
        if let Some(note) = note {
            // Fails only once the writer has stopped, when no update matters any more.
            let _ = self.notes.send(note).await;
        }
    }
}

/// A short, low-cardinality reason for a lost connection.
fn describe(e: &WebSocketError) -> String {
    match e {
        WebSocketError::IoError(io) => format!("io: {}", io.kind()),
        other => other.to_string(),
    }
}

/// The writing side: sends on the ticker, relays control frames, closes at the end.
async fn write_loop(
    mut tx: WsWrite,
    mut notes: mpsc::Receiver<Note>,
    mut phase: watch::Receiver<Phase>,
    mut sender: Sender,
    ctx: Arc<RunCtx>,
) {
    let counters = &ctx.counters;
    let mut ticker: Option<Interval> = None;
    let mut ticking = false;
    loop {
        // Copied out so the watch's lock is not held across the awaits below.
        let current = *phase.borrow_and_update();
        match current {
            Phase::Connecting | Phase::Hold => {}
            Phase::Load { start } => {
                if !ticking {
                    ticking = true;
                    ticker = ctx
                        .period
                        .map(|p| staggered(start, p, sender.spec.idx, ctx.users));
                }
            }
            Phase::Drain => ticker = None,
            Phase::Close => {
                let _ = tx.write_frame(Frame::close(1000, b"")).await;
                return;
            }
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            note = notes.recv() => match note {
                None => return,
                Some(Note::Control(frame)) => {
                    if tx.write_frame(frame).await.is_err() {
                        return;
                    }
                }
                Some(Note::Settled { version }) => sender.settled(version),
                Some(Note::Version(version)) => sender.version_seen(version),
            },
            () = next_tick(&mut ticker) => match sender.tick(Instant::now()) {
                Ok(Tick::Send(bytes)) => {
                    if tx.write_frame(Frame::text(Payload::Owned(bytes))).await.is_err() {
                        return;
                    }
                    bump(&counters.sent);
                }
                Ok(Tick::Busy) => bump(&counters.skipped_ticks),
                Err(e) => {
                    eprintln!("loadtest: connection {}: encoding failed: {e}", sender.spec.idx);
                }
            },
        }
    }
}
