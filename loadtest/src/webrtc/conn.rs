//! One WebSocket connection to the hub in a conference session, shared by the pairs that use it
//! (the presenter's connection serves every attendee's negotiation).
//!
//! As in `client.rs`, a reader task and a writer task own the two halves of the socket
//! (fastwebsockets' `read_frame` is not cancel-safe). Commands are request/reply:
//! [`HubConn::request`] numbers a command, hands it to the writer and waits for the `ack` or
//! `error` the reader matches to its `ref`. Frames about a peer (`signal` from it, `peer_joined`
//! of it) go to the route registered for that peer id ([`HubConn::route`]).
//!
//! **Pacing.** The hub limits the commands of each connection (`hello`'s `limits`: a rate and a
//! burst), and the presenter's one connection carries an offer and several candidates for every
//! attendee. Like a well-behaved client, a connection paces its own commands to just under that
//! limit ([`Pacer`]), so that they queue here rather than being refused; a `rate_limited`
//! refusal that happens anyway is retried after the wait the hub names, and counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use signaling::AttendeeId;
use signaling::client::{ClientMsg, Ref};
use signaling::conference::SignalBody;
use signaling::server::Limits;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::frames;
use crate::ws::Socket;

type WsRead = FragmentCollectorRead<ReadHalf<TokioIo<Upgraded>>>;
type WsWrite = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// Longest wait for the answer to one command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Most attempts of a command the hub keeps refusing as `rate_limited`.
const MAX_ATTEMPTS: u32 = 50;
/// Longest `retry_after_ms` honoured at once.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// Frames that may wait for the writer.
const OUTBOX: usize = 256;
/// The share of the hub's announced rate a connection uses: the hub's bucket and ours do not
/// start at the same instant.
const RATE_MARGIN: f64 = 0.95;

/// Spaces commands so that they never exceed the hub's per-connection limit: a token bucket
/// (the hub's own burst less one, refilled at [`RATE_MARGIN`] of its rate) in its GCRA form,
/// where each command reserves the next free slot under a lock and then waits for it.
#[derive(Debug)]
struct Pacer {
    /// Time between two commands at the sustained rate.
    interval: Duration,
    /// How far ahead of its slot a command may go: the burst, in intervals.
    window: Duration,
    /// The theoretical arrival time of the next command.
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for the announced limits; `None` when the hub announced none or no rate.
    fn new(limits: Option<Limits>) -> Option<Pacer> {
        let limits = limits?;
        if limits.messages_per_second == 0 {
            return None;
        }
        // Nearly everything paced here is a `signal`, which may also draw on the signal budget.
        let rate = limits
            .messages_per_second
            .saturating_add(limits.signals_per_second);
        let burst = limits.burst.saturating_add(limits.signal_burst);
        let interval = Duration::from_secs_f64(1.0 / (f64::from(rate) * RATE_MARGIN));
        Some(Pacer {
            interval,
            window: interval * burst.saturating_sub(2),
            next: tokio::sync::Mutex::new(None),
        })
    }

    /// When a command asked for at `now` may go, given the slot reserved before it; the slot
    /// after it.
    fn slot(&self, reserved: Option<Instant>, now: Instant) -> (Instant, Instant) {
        let tat = reserved.map_or(now, |t| t.max(now));
        let at = tat.checked_sub(self.window).map_or(now, |t| t.max(now));
        (at, tat + self.interval)
    }

    /// Waits for this command's slot.
    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let (at, after) = self.slot(*next, Instant::now());
            *next = Some(after);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// What the hub said about a peer this connection routes.
#[derive(Debug)]
pub enum FromHub {
    /// `peer_joined`: the peer is in the session.
    Joined,
    /// `signal` from the peer.
    Signal {
        /// Its number in the (sender, this peer) pair.
        seq: u64,
        /// The signal.
        body: SignalBody,
    },
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The hub refused it with this code.
    Refused(String),
    /// No answer in time, or the connection is gone.
    Lost(&'static str),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Refused(code) => f.write_str(code),
            CommandError::Lost(why) => f.write_str(why),
        }
    }
}

/// The answer to one command.
#[derive(Debug)]
enum Reply {
    Ack(serde_json::Value),
    Error {
        code: String,
        retry_after: Option<Duration>,
    },
}

/// The fields of a hub frame this scenario reads.
#[derive(Debug, Deserialize)]
struct Inbound {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "ref", default)]
    reference: Option<Ref>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    from: Option<AttendeeId>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    signal: Option<SignalBody>,
    #[serde(default)]
    peer_id: Option<AttendeeId>,
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Reply>>>;
type Routes = Mutex<HashMap<AttendeeId, mpsc::UnboundedSender<FromHub>>>;

/// A session connection's shared state.
struct Shared {
    pending: Pending,
    routes: Routes,
    /// `rate_limited` refusals met (and retried).
    rate_limited: AtomicU64,
}

/// A joined (or joining) session connection.
pub struct HubConn {
    outbox: mpsc::Sender<Frame<'static>>,
    pacer: Option<Pacer>,
    shared: Arc<Shared>,
    next_ref: AtomicU64,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicked task must not take the others down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HubConn {
    /// Takes over a socket that has read its `hello`, with the limits it announced.
    pub fn start(ws: Socket, limits: Option<Limits>) -> HubConn {
        let (rx, tx) = ws.split(tokio::io::split);
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            rate_limited: AtomicU64::new(0),
        });
        let reader = tokio::spawn(read_loop(
            FragmentCollectorRead::new(rx),
            Arc::clone(&shared),
            outbox.clone(),
        ));
        let writer = tokio::spawn(write_loop(tx, outbox_rx));
        HubConn {
            outbox,
            pacer: Pacer::new(limits),
            shared,
            next_ref: AtomicU64::new(1),
            reader,
            writer,
        }
    }

    /// Sends frames about `peer` (its signals, its arrival) to the returned receiver from now on.
    pub fn route(&self, peer: AttendeeId) -> mpsc::UnboundedReceiver<FromHub> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.routes).insert(peer, tx);
        rx
    }

    /// Stops routing frames about `peer`.
    pub fn unroute(&self, peer: AttendeeId) {
        lock(&self.shared.routes).remove(&peer);
    }

    /// `rate_limited` refusals this connection met and retried.
    pub fn rate_limited(&self) -> u64 {
        self.shared.rate_limited.load(Ordering::Relaxed)
    }

    /// Sends a command and waits for its `ack`; returns the ack's `result`. Retries while the hub
    /// refuses it as `rate_limited`.
    ///
    /// # Errors
    /// The hub's code when it refused the command; [`CommandError::Lost`] without an answer.
    pub async fn request(&self, msg: &ClientMsg) -> Result<serde_json::Value, CommandError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.once(msg).await? {
                Reply::Ack(result) => return Ok(result),
                Reply::Error { code, retry_after } if code == "rate_limited" => {
                    self.shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_after
                        .unwrap_or(Duration::from_millis(100))
                        .min(MAX_RETRY_WAIT);
                    tokio::time::sleep(wait).await;
                }
                Reply::Error { code, .. } => return Err(CommandError::Refused(code)),
            }
        }
        Err(CommandError::Refused("rate_limited".into()))
    }

    async fn once(&self, msg: &ClientMsg) -> Result<Reply, CommandError> {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        let reference = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let bytes = frames::command(reference, msg).map_err(|_| CommandError::Lost("encoding"))?;
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(reference, tx);
        let frame = Frame::text(Payload::Owned(bytes));
        if self.outbox.send(frame).await.is_err() {
            lock(&self.shared.pending).remove(&reference);
            return Err(CommandError::Lost("connection closed"));
        }
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(CommandError::Lost("connection closed")),
            Err(_) => {
                lock(&self.shared.pending).remove(&reference);
                Err(CommandError::Lost("no answer in time"))
            }
        }
    }

    /// Sends a close frame, lets the writer send it, and stops both tasks.
    pub async fn close(mut self) {
        let _ = self.outbox.send(Frame::close(1000, b"")).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), &mut self.writer).await;
    }
}

impl Drop for HubConn {
    /// The tasks own the socket's halves (and the reader a way to the writer): without this a
    /// connection dropped on a failed pair would stay open.
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Reads frames until the socket ends; answers commands and routes peer frames.
async fn read_loop(mut rx: WsRead, shared: Arc<Shared>, outbox: mpsc::Sender<Frame<'static>>) {
    let mut send_fn = move |frame: Frame<'static>| {
        let outbox = outbox.clone();
        async move {
            // If the writer is gone the connection is ending anyway.
            let _ = outbox.send(frame).await;
            Ok::<(), Infallible>(())
        }
    };
    loop {
        match rx.read_frame(&mut send_fn).await {
            Ok(f) if f.opcode == OpCode::Text => dispatch(&shared, &f.payload),
            Ok(f) if f.opcode == OpCode::Close => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // Dropping the reply senders fails every command still waiting.
    lock(&shared.pending).clear();
    lock(&shared.routes).clear();
}

/// Hands one text frame to whoever waits for it.
fn dispatch(shared: &Shared, text: &[u8]) {
    let Ok(f) = serde_json::from_slice::<Inbound>(text) else {
        return;
    };
    match f.kind.as_str() {
        "ack" | "error" => {
            let Some(Ref::Num(reference)) = f.reference else {
                return;
            };
            let reply = if f.kind == "ack" {
                Reply::Ack(f.result.unwrap_or_default())
            } else {
                Reply::Error {
                    code: f.code.unwrap_or_else(|| "(no code)".into()),
                    retry_after: f.retry_after_ms.map(Duration::from_millis),
                }
            };
            if let Some(tx) = lock(&shared.pending).remove(&reference) {
                let _ = tx.send(reply);
            }
        }
        "signal" => {
            if let (Some(from), Some(seq), Some(body)) = (f.from, f.seq, f.signal) {
                route(shared, from, FromHub::Signal { seq, body });
            }
        }
        "peer_joined" => {
            if let Some(peer) = f.peer_id {
                route(shared, peer, FromHub::Joined);
            }
        }
        _ => {}
    }
}

fn route(shared: &Shared, peer: AttendeeId, msg: FromHub) {
    if let Some(tx) = lock(&shared.routes).get(&peer) {
        let _ = tx.send(msg);
    }
}

/// Writes what the outbox holds until it closes or a close frame went out.
async fn write_loop(mut tx: WsWrite, mut outbox: mpsc::Receiver<Frame<'static>>) {
    while let Some(frame) = outbox.recv().await {
        let closing = frame.opcode == OpCode::Close;
        if tx.write_frame(frame).await.is_err() || closing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            pending: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            rate_limited: AtomicU64::new(0),
        }
    }

    #[test]
    fn the_pacer_lets_a_burst_through_then_spaces_commands_at_the_rate() {
        let limits = Limits {
            max_frame_bytes: 1 << 16,
            messages_per_second: 10,
            burst: 20,
            signals_per_second: 0,
            signal_burst: 0,
        };
        let pacer = Pacer::new(Some(limits)).unwrap();
        let interval = pacer.interval;
        assert!(interval > Duration::from_millis(100) && interval < Duration::from_millis(110));
        let now = Instant::now();
        let mut next = None;
        let mut slots = Vec::new();
        for _ in 0..25 {
            let (at, after) = pacer.slot(next, now);
            next = Some(after);
            slots.push(at.duration_since(now));
        }
        // burst - 1 at once, then one per interval.
        assert!(slots[..19].iter().all(|d| d.is_zero()), "{slots:?}");
        assert_eq!(slots[19], interval);
        assert_eq!(slots[24], interval * 6);
        // An idle connection gets its burst back.
        let later = now + interval * 100;
        assert_eq!(pacer.slot(next, later).0, later);
        let none = Limits {
            messages_per_second: 0,
            ..limits
        };
        assert!(Pacer::new(Some(none)).is_none());
        assert!(Pacer::new(None).is_none());
    }

    #[test]
    fn replies_reach_their_command_and_signals_their_route() {
        let s = shared();
        let (tx, mut rx) = oneshot::channel();
        lock(&s.pending).insert(7, tx);
        dispatch(
            &s,
            br#"{"type":"error","ref":7,"code":"rate_limited","message":"x","retry_after_ms":120}"#,
        );
        match rx.try_recv() {
            Ok(Reply::Error { code, retry_after }) => {
                assert_eq!(code, "rate_limited");
                assert_eq!(retry_after, Some(Duration::from_millis(120)));
            }
            other => panic!("{other:?}"),
        }

        let peer = AttendeeId::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&s.routes).insert(peer, tx);
        let frame = format!(
            r#"{{"type":"signal","session_id":"{}","from":"{peer}","seq":3,
                "signal":{{"kind":"candidate","candidate":""}}}}"#,
            uuid::Uuid::new_v4()
        );
        dispatch(&s, frame.as_bytes());
        let joined = format!(
            r#"{{"type":"peer_joined","session_id":"x","peer_id":"{peer}","name":"g","role":"attendee","polite":false}}"#
        );
        dispatch(&s, joined.as_bytes());
        match rx.try_recv() {
            Ok(FromHub::Signal { seq: 3, body }) => assert_eq!(
                body,
                SignalBody::Candidate {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_m_line_index: None
                }
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(rx.try_recv(), Ok(FromHub::Joined)));
        // Frames about peers nobody routes are dropped.
        dispatch(
            &s,
            frame
                .replace(&peer.to_string(), &AttendeeId::new().to_string())
                .as_bytes(),
        );
        assert!(rx.try_recv().is_err());
    }
}
