//! One voter: a guest's connection to its session, opened by [`open`] (the upgrade with its
//! guest token, `hello`, `join_session`) and then run by [`run`] as a reader and a writer over
//! the split socket (fastwebsockets' `read_frame` is not cancel-safe, as in `client.rs`), which
//! share the voter's [`Book`]:
//!
//! - the **writer** sends nothing until [`Phase::Load`], then on its staggered ticker one
//!   `question_vote` per tick: a question drawn at random and the next vote on it (`plan.rs`),
//!   entered in the book just before it is written. A tick is skipped when the local copy of the
//!   hub's frame limit is empty ([`Bucket`]) or [`MAX_IN_FLIGHT`] votes await their answers (the
//!   room's mailbox is unbounded, so an open loop into a saturated room would only grow it).
//! - the **reader** files every `ack` and `error` in the book, keeps the latest `question` frame
//!   of each question ([`Seen`]), and hands the pongs it owes to the writer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, WebSocketWrite,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use signaling::SessionId;
use signaling::client::ClientMsg;
use signaling::conference::{JoinSession, QuestionVote};
use signaling::server::Limits;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Interval;
use uuid::Uuid;

use super::book::{Book, Choice, Filed, Seen, Totals};
use super::plan::{Bucket, Rng, next_vote};
use super::wire::FrameIn;
use crate::client::Phase;
use crate::frames;
use crate::sender::{next_tick, staggered};
use crate::stats::{Counters, bump};
use crate::ws::{self, Dialer, OpenError, SETUP_TIMEOUT, Socket};

type WsRead = FragmentCollectorRead<ReadHalf<TokioIo<Upgraded>>>;
type WsWrite = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// Votes one voter may have unanswered; a tick beyond it is skipped. Small on purpose: a room
/// past its capacity answers far fewer votes than are offered, and what the voters keep
/// unanswered is the queue every ack waits behind (1 000 voters × 2 = 2 000 votes).
pub const MAX_IN_FLIGHT: usize = 2;
/// `ref` of `join_session`; votes are numbered after it.
const JOIN_REF: u64 = 1;
/// Control frames (pongs, the close echo) the reader can have waiting for the writer.
const CONTROL_CAPACITY: usize = 16;
/// How long a finished reader waits for its writer to finish writing.
const WRITER_GRACE: Duration = Duration::from_millis(200);

/// Counts of the votes scenario beside the shared [`Counters`] (which count the connections,
/// the votes written, `acks` of votes and `error` frames by code).
#[derive(Debug, Default)]
pub struct Live {
    /// Acks with an offset: the vote was journaled.
    pub changed: AtomicU64,
    /// Acks with `"offset": null`: the vote was already that.
    pub unchanged: AtomicU64,
    /// Errors answering a vote.
    pub refused: AtomicU64,
    /// Answers whose `ref` is no vote in flight.
    pub unknown_answers: AtomicU64,
    /// Ticks skipped because the local frame bucket was empty.
    pub throttled: AtomicU64,
    /// Ticks skipped because [`MAX_IN_FLIGHT`] votes were unanswered.
    pub capped: AtomicU64,
    /// `session_resync` frames (the room restarted).
    pub resyncs: AtomicU64,
    /// Votes still unanswered when their connection was lost.
    pub abandoned: AtomicU64,
}

/// What every voter shares, read-only.
#[derive(Debug)]
pub struct VoterCtx {
    /// Connection and message counts.
    pub counters: Arc<Counters>,
    /// The scenario's own counts.
    pub live: Live,
    /// Time between two votes of one voter; `None` at rate 0.
    pub period: Option<Duration>,
    /// Voters in the run, for staggering.
    pub voters: usize,
    /// The run's seed for the voters' draws.
    pub seed: u64,
}

/// One voter's session and its questions.
#[derive(Debug, Clone)]
pub struct Voter {
    /// Its index, 0..N.
    pub idx: usize,
    /// Its session.
    pub session_id: SessionId,
    /// The session's questions, by index.
    pub questions: Arc<Vec<Uuid>>,
    /// Their indices, by id.
    pub index: Arc<HashMap<Uuid, usize>>,
}

/// A joined connection and the limits its `hello` announced.
pub struct Joined {
    ws: Socket,
    /// The connection's frame limits.
    pub limits: Option<Limits>,
}

/// How a reader ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The run stopped it.
    Stopped,
    /// The hub sent a close frame with this code.
    Closed(u16),
    /// The connection broke without a close frame.
    Lost(String),
}

/// Opens voter `idx`'s connection with its guest `token` and joins its session.
///
/// # Errors
/// An [`OpenError`] naming the step that failed.
pub async fn open(
    dialer: &Dialer,
    token: &str,
    session_id: SessionId,
    idx: usize,
) -> Result<Joined, OpenError> {
    let join = ClientMsg::JoinSession(JoinSession {
        session_id,
        last_offset: None,
    });
    let opening = async {
        let mut ws = dialer.upgrade(token, idx).await?;
        let limits = ws::read_hello(&mut ws).await?;
        ws::request(&mut ws, JOIN_REF, &join, "join_session").await?;
        Ok(Joined { ws, limits })
    };
    tokio::time::timeout(SETUP_TIMEOUT, opening)
        .await
        .map_err(|_| OpenError {
            step: "timeout",
            detail: format!("not joined within {SETUP_TIMEOUT:?}"),
        })?
}

/// Runs a joined voter until the run stops it, keeping its votes in `book` (which the run
/// holds, so that no vote is lost with a task that had to be aborted).
pub async fn run(
    joined: Joined,
    voter: Voter,
    book: Arc<Mutex<Book>>,
    ctx: Arc<VoterCtx>,
    (phase, mut stop): (watch::Receiver<Phase>, watch::Receiver<bool>),
) {
    let questions = voter.questions.len();
    let (rx, tx) = joined.ws.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let (control, control_rx) = mpsc::channel(CONTROL_CAPACITY);
    let writer = Writer {
        rng: Rng::new(ctx.seed, voter.idx),
        limits: joined.limits,
        intended: vec![None; questions],
        next_ref: JOIN_REF + 1,
        book: Arc::clone(&book),
        voter: voter.clone(),
    };
    let writing = tokio::spawn(write_loop(
        tx,
        control_rx,
        phase.clone(),
        writer,
        Arc::clone(&ctx),
    ));
    let mut reader = Reader {
        ctx: &ctx,
        voter: &voter,
        book: &book,
    };
    let end = reader.read_loop(&mut rx, &mut stop, control).await;
    let closing = *phase.borrow() == Phase::Close;
    let counters = &ctx.counters;
    let lost_early = match end {
        End::Stopped => false,
        _ if closing => false,
        End::Closed(code) => {
            counters.closed_by_hub(code);
            true
        }
        End::Lost(reason) => {
            counters.dropped(reason);
            true
        }
    };
    if lost_early {
        // What it still awaits will never be answered, and the drain must not wait for it.
        let orphans = lock(&book).in_flight() as u64;
        ctx.live
            .abandoned
            .fetch_add(orphans, std::sync::atomic::Ordering::Relaxed);
    }
    let abort = writing.abort_handle();
    if tokio::time::timeout(WRITER_GRACE, writing).await.is_err() {
        abort.abort();
    }
}

/// The book, even if a panic poisoned its lock.
pub fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    // A panic in the other half must not hide the votes booked so far.
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reading side of a voter.
struct Reader<'a> {
    ctx: &'a VoterCtx,
    voter: &'a Voter,
    book: &'a Mutex<Book>,
}

impl Reader<'_> {
    async fn read_loop(
        &mut self,
        rx: &mut WsRead,
        stop: &mut watch::Receiver<bool>,
        control: mpsc::Sender<Frame<'static>>,
    ) -> End {
        let mut send_fn = move |frame: Frame<'static>| {
            let control = control.clone();
            async move {
                // If the writer is gone the connection is ending anyway.
                let _ = control.send(frame).await;
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
                Ok(f) if f.opcode == OpCode::Text => self.on_text(&f.payload),
                Ok(f) if f.opcode == OpCode::Close => {
                    return End::Closed(frames::close_code(&f.payload));
                }
                Ok(_) => {}
                Err(e) => return End::Lost(describe(&e)),
            }
        }
    }

    fn on_text(&mut self, text: &[u8]) {
        let (counters, live) = (&self.ctx.counters, &self.ctx.live);
        let Ok(f) = serde_json::from_slice::<FrameIn<'_>>(text) else {
            bump(&counters.unparsed);
            return;
        };
        match &*f.kind {
            "ack" => {
                let Some(r) = f.ref_num() else {
                    bump(&live.unknown_answers);
                    return;
                };
                let offset = f.result.and_then(|res| res.offset);
                match lock(self.book).acked(r, offset, Instant::now()) {
                    Filed::Acked { changed, .. } => {
                        bump(&counters.acks);
                        bump(if changed {
                            &live.changed
                        } else {
                            &live.unchanged
                        });
                    }
                    Filed::Refused | Filed::Unknown => bump(&live.unknown_answers),
                }
            }
            "error" => {
                counters.error_frame(f.code.as_deref().unwrap_or("(no code)"));
                let filed = f
                    .ref_num()
                    .map_or(Filed::Unknown, |r| lock(self.book).refused(r));
                bump(if filed == Filed::Refused {
                    &live.refused
                } else {
                    &live.unknown_answers
                });
            }
            "question" => {
                let (Some(q), Some(offset)) = (f.question, f.offset) else {
                    return;
                };
                if let Some(&i) = self.voter.index.get(&q.id) {
                    let totals = Totals {
                        up: q.up,
                        down: q.down,
                    };
                    lock(self.book).saw(i, Seen { offset, totals });
                }
            }
            "session_resync" => bump(&live.resyncs),
            _ => {}
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

/// The writing side's state.
struct Writer {
    voter: Voter,
    book: Arc<Mutex<Book>>,
    rng: Rng,
    limits: Option<Limits>,
    /// The last vote sent on each question, which the next one changes (mostly).
    intended: Vec<Choice>,
    next_ref: u64,
}

/// What a tick produced.
enum Tick {
    /// A vote to write.
    Send(Vec<u8>),
    /// The local frame bucket is empty.
    Throttled,
    /// Too many votes unanswered.
    Capped,
}

impl Writer {
    fn tick(&mut self, bucket: &mut Bucket, now: Instant) -> serde_json::Result<Tick> {
        let mut book = lock(&self.book);
        if book.in_flight() >= MAX_IN_FLIGHT {
            return Ok(Tick::Capped);
        }
        if !bucket.take(now) {
            return Ok(Tick::Throttled);
        }
        let q = self.rng.below(self.voter.questions.len());
        let (Some(&question_id), Some(current)) =
            (self.voter.questions.get(q), self.intended.get_mut(q))
        else {
            return Ok(Tick::Capped);
        };
        let vote = next_vote(&mut self.rng, *current);
        *current = vote;
        let reference = self.next_ref;
        self.next_ref += 1;
        let msg = ClientMsg::QuestionVote(QuestionVote {
            session_id: self.voter.session_id,
            question_id,
            vote,
        });
        let bytes = frames::command(reference, &msg)?;
        book.sent(reference, q, vote, Instant::now());
        Ok(Tick::Send(bytes))
    }
}

/// Sends votes on the ticker, relays control frames, closes at the end.
async fn write_loop(
    mut tx: WsWrite,
    mut control: mpsc::Receiver<Frame<'static>>,
    mut phase: watch::Receiver<Phase>,
    mut w: Writer,
    ctx: Arc<VoterCtx>,
) {
    let counters = &ctx.counters;
    let live = &ctx.live;
    let mut ticker: Option<Interval> = None;
    let mut bucket: Option<Bucket> = None;
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Connecting | Phase::Hold => {}
            Phase::Load { start } => {
                if bucket.is_none() {
                    bucket = Some(Bucket::new(w.limits, Instant::now()));
                    ticker = ctx
                        .period
                        .map(|p| staggered(start, p, w.voter.idx, ctx.voters));
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
            frame = control.recv() => match frame {
                None => return,
                Some(frame) => {
                    if tx.write_frame(frame).await.is_err() {
                        return;
                    }
                }
            },
            () = next_tick(&mut ticker) => {
                let Some(bucket) = bucket.as_mut() else { continue };
                match w.tick(bucket, Instant::now()) {
                    Ok(Tick::Send(bytes)) => {
                        // Counted before the write: the book has it, answered or not.
                        bump(&counters.sent);
                        if tx.write_frame(Frame::text(Payload::Owned(bytes))).await.is_err() {
                            return;
                        }
                    }
                    Ok(Tick::Throttled) => bump(&live.throttled),
                    Ok(Tick::Capped) => bump(&live.capped),
                    Err(e) => eprintln!("loadtest: voter {}: encoding failed: {e}", w.voter.idx),
                }
            }
        }
    }
}
