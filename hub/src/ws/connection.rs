//! One WebSocket connection: the read loop, its checks, and the end of the connection.
//!
//! Per message, in order: reassemble fragments under the size budget (a message reaching the
//! hard cap closes the connection with 1009 before more of it is buffered); count it; take a
//! rate-limit token (`rate_limited` if none); refuse binary (`binary_not_supported`) and oversized
//! (`frame_too_large`) messages; decode (`bad_json`, `nesting_too_deep`, `bad_envelope`,
//! `unknown_type`, `invalid_payload`); refuse commands for rooms not joined (`not_joined`)
//! without bothering the room; otherwise hand the command to its room with a [`ReplyTo`] that
//! guarantees exactly one answer.
//!
//! The end is bounded ([`Teardown`]): once the connection is closing, the writer has
//! [`CLOSE_GRACE`] to send the close frame, and the peer the rest of it to close its side; a
//! peer that does not (it stopped reading, or never answers) has its socket reset. The
//! connection is counted (gauge, caps) until the socket is gone, and all of this also happens if
//! the connection's task panics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actors::conn::Class;
use actors::workspace::{ReplyTo, RoomError};
use actors::{CloseReason, ConnHandle, WireFrame};
use bytes::Bytes;
use bytes::BytesMut;
use signaling::client::{self, ClientMsg, Ref};
use signaling::frame::{self, Frame, FrameError, OpCode};
use signaling::server::{Limits, ServerMsg};
use signaling::{AttendeeId, ErrorCode, RoomKey, SessionId, UserId};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::assemble::{AssembleError, Assembler};
use super::registry::Admission;
use super::socket;
use super::writer::{self, WriterEnd};
use crate::http::WriteDeadline;
use crate::limits::TokenBucket;
use crate::state::AppState;

/// The hard limit is this many times the configured frame size: messages in between are read and
/// answered with `frame_too_large`; larger ones close the connection (1009).
const HARD_LIMIT_FACTOR: usize = 16;
/// Rooms one connection may be joined to at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 64;
/// How long a closing connection has to send the close frame and see the peer close its side.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long before its access token expires a connection is told (`token_expiring`), at most
/// half the token's life.
pub const EXPIRY_NOTICE: Duration = Duration::from_secs(60);

/// Who a connection is, as its upgrade established.
pub struct Opened {
    /// The user (for a guest, the attendee id as a user id).
    pub user: UserId,
    /// A guest's session.
    pub guest: Option<SessionId>,
    /// When the user's access token expires (seconds since the epoch; guests: `None`).
    pub expires: Option<i64>,
}

/// Serves one upgraded connection until it closes and its socket is gone.
#[tracing::instrument(skip_all, fields(user = %opened.user))]
pub async fn run(
    state: AppState,
    opened: Opened,
    mut admission: Admission,
    tcp: TcpStream,
    early: Bytes,
) {
    let Opened {
        user,
        guest,
        expires,
    } = opened;
    let cfg = &state.config.ws;
    let (sock, write) = socket::split(tcp);
    let write = WriteDeadline::new(write, Duration::from_secs(cfg.write_timeout_secs.max(1)));
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (conn, outbox) = match guest {
        Some(session) => ConnHandle::guest(
            id,
            session,
            AttendeeId::from_uuid(user.as_uuid()),
            cfg.outbox_frames,
        ),
        None => ConnHandle::new(id, user, cfg.outbox_frames),
    };
    if !admission.attach(&conn) {
        // The account was closed between the upgrade and now.
        conn.close(CloseReason::ACCESS_REVOKED);
    }
    state.metrics.connections_open.increment(1.0);
    let writer = tokio::spawn(writer::run(
        write,
        outbox,
        Duration::from_secs(cfg.ping_secs.max(1)),
        state.metrics.clone(),
    ));

    let teardown = Teardown {
        state: state.clone(),
        conn: conn.clone(),
        writer: Some(writer),
        sock: Some(sock.clone()),
        admission: Some(admission),
        left_rooms: false,
    };

    let hello = ServerMsg::Hello {
        user_id: user,
        connection_id: id,
        limits: Limits {
            max_frame_bytes: cfg.max_frame_bytes,
            messages_per_second: cfg.rate_per_sec,
            burst: cfg.rate_burst,
            signals_per_second: cfg.signal_rate_per_sec,
            signal_burst: cfg.signal_burst,
        },
    };
    conn.push(WireFrame::text(hello.to_json()), Class::MustDeliver);
    tracing::debug!(conn = id, "connected");

    let mut reader = Reader {
        state: &state,
        conn: conn.clone(),
        bucket: TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst, Instant::now()),
        signals: TokenBucket::new(cfg.signal_rate_per_sec, cfg.signal_burst, Instant::now()),
        token: expires.map(TokenClock::new),
    };
    let hard_cap = cfg.max_frame_bytes.saturating_mul(HARD_LIMIT_FACTOR);
    reader.read_loop(&sock, early, hard_cap).await;
    // Boxed: its state is large and needed only at the end, not by every idle connection.
    Box::pin(teardown.finish()).await;
}

/// Ends a connection: closes it, tells its rooms, lets the writer send the close frame, waits
/// for the peer to close its side, resets the socket if it does not, and stops counting it.
/// Dropped without [`Teardown::finish`] (the task panicked), it still aborts the writer, tells
/// the rooms and gives back the connection's place.
struct Teardown {
    state: AppState,
    conn: ConnHandle,
    writer: Option<JoinHandle<WriterEnd>>,
    sock: Option<Arc<TcpStream>>,
    admission: Option<Admission>,
    left_rooms: bool,
}

impl Teardown {
    async fn finish(mut self) {
        let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
        // Closed first, so that no room can add it back after it is told the connection left.
        self.conn.close(CloseReason {
            code: 1000,
            reason: "",
        });
        self.leave_rooms();
        let end = match self.writer.take() {
            Some(mut writer) => match tokio::time::timeout_at(deadline, &mut writer).await {
                Ok(Ok(end)) => end,
                Ok(Err(_)) => WriterEnd::Failed,
                Err(_) => {
                    writer.abort();
                    let _ = writer.await;
                    WriterEnd::Stuck
                }
            },
            None => WriterEnd::Failed,
        };
        let Some(sock) = self.sock.as_ref() else {
            return;
        };
        let clean = end == WriterEnd::Closed && socket::close_gracefully(sock, deadline).await;
        if !clean && end != WriterEnd::Failed {
            // The peer is not reading, or not closing: reset instead of leaving the kernel to
            // hold its unread bytes for as long as it likes.
            socket::abort_on_close(sock);
        }
        tracing::debug!(conn = self.conn.id(), ?end, clean, "disconnected");
    }

    fn leave_rooms(&mut self) {
        if std::mem::replace(&mut self.left_rooms, true) {
            return;
        }
        for room in self.conn.joined_rooms() {
            self.state.router.disconnected(room, self.conn.id());
        }
        self.state.router.gone(self.conn.id());
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort();
            self.conn.close(CloseReason {
                code: 1011,
                reason: "internal error",
            });
        }
        self.leave_rooms();
        // The socket first (the writer's handle goes when its aborted task is dropped), then
        // the count and the place.
        drop(self.sock.take());
        self.state.metrics.connections_open.decrement(1.0);
        drop(self.admission.take());
    }
}

/// What reading a frame leads to.
enum Flow {
    /// Carry on.
    Go,
    /// Carry on; the client was heard from (a data frame or a pong), which resets the idle
    /// timeout.
    Heard,
    /// The connection is over.
    Stop,
}

/// How much the read buffer grows by when the socket has something to read.
const READ_CHUNK: usize = 4096;

struct Reader<'a> {
    state: &'a AppState,
    conn: ConnHandle,
    bucket: TokenBucket,
    /// `signal` commands over the message rate draw from here.
    signals: TokenBucket,
    /// When the user's access token expires (guests: `None`).
    token: Option<TokenClock>,
}

/// An open socket's access token: warned about once before it expires, closed at expiry,
/// renewed by an `auth` message. It has no timer of its own: the read loop's one timer is set
/// to whichever comes first, the idle deadline or [`TokenClock::due`].
struct TokenClock {
    /// Expiry, seconds since the epoch.
    expires: i64,
    /// `token_expiring` was sent for this expiry.
    warned: bool,
    /// When to look next: the notice, then the expiry.
    due: tokio::time::Instant,
}

impl TokenClock {
    fn new(expires: i64) -> TokenClock {
        let mut clock = TokenClock {
            expires,
            warned: false,
            due: tokio::time::Instant::now(),
        };
        clock.due = clock.next_deadline();
        clock
    }

    /// What the timer waits for next: the notice, then the expiry.
    fn next_deadline(&self) -> tokio::time::Instant {
        let now_secs = chrono::Utc::now().timestamp();
        let left = Duration::from_secs(u64::try_from(self.expires - now_secs).unwrap_or(0));
        let until = if self.warned {
            left
        } else {
            left.saturating_sub(EXPIRY_NOTICE.min(left / 2))
        };
        tokio::time::Instant::now() + until
    }
}

impl Reader<'_> {
    /// Reads frames until the connection ends. The read buffer exists only while there is
    /// something in it: an idle connection holds none.
    async fn read_loop(&mut self, sock: &TcpStream, early: Bytes, hard_cap: usize) {
        let idle = Duration::from_secs(self.state.config.ws.idle_timeout_secs.max(1));
        let mut assembler = Assembler::new(hard_cap);
        let mut buf = BytesMut::new();
        if !early.is_empty() {
            buf.extend_from_slice(&early);
        }
        // `early` is a slice of the HTTP connection's read buffer: kept, it would pin that
        // whole buffer (8 KiB or more) for the life of the connection.
        drop(early);
        // Made once, not per frame: no timer or waiter is registered per frame read.
        let shutdown = self.state.shutdown.clone();
        let shutdown = shutdown.cancelled();
        tokio::pin!(shutdown);
        let conn = self.conn.clone();
        let closed = conn.closed();
        tokio::pin!(closed);
        let mut last_seen = tokio::time::Instant::now();
        // One timer for silence and the token: set to whichever is due first.
        let wake = |last_seen: tokio::time::Instant, token: Option<&TokenClock>| {
            let idle_at = last_seen + idle;
            token.map_or(idle_at, |c| idle_at.min(c.due))
        };
        let timer = tokio::time::sleep_until(wake(last_seen, self.token.as_ref()));
        tokio::pin!(timer);
        loop {
            // Every whole frame already read; a message reaching the hard cap is refused from
            // its header, before its payload is buffered.
            loop {
                let frame = match frame::parse(&mut buf, assembler.budget()) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(FrameError::TooLarge) => return self.conn.close(CloseReason::TOO_BIG),
                    Err(FrameError::Protocol(why)) => {
                        tracing::debug!(why, "websocket protocol error");
                        return self.conn.close(CloseReason::PROTOCOL_ERROR);
                    }
                };
                match self.on_frame(frame, &mut assembler).await {
                    Flow::Go => {}
                    Flow::Heard => last_seen = tokio::time::Instant::now(),
                    Flow::Stop => return,
                }
            }
            if buf.is_empty() && buf.capacity() > 0 {
                buf = BytesMut::new();
            }
            // A renewed token may be due sooner than the timer is set for.
            if let Some(due) = self.token.as_ref().map(|c| c.due)
                && due < timer.deadline()
            {
                timer.as_mut().reset(due);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    // A node of a cluster stops by draining: its clients go on elsewhere.
                    let reason = if self.state.cluster.is_some() {
                        CloseReason::NODE_DRAINING
                    } else {
                        CloseReason::GOING_AWAY
                    };
                    return self.conn.close(reason);
                }
                () = &mut closed => return,
                () = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if self.token.as_ref().is_some_and(|c| c.due <= now)
                        && !self.on_token_timer()
                    {
                        return self.conn.close(CloseReason::TOKEN_EXPIRED);
                    }
                    if now.duration_since(last_seen) >= idle {
                        return self.conn.close(CloseReason::IDLE);
                    }
                    timer.as_mut().reset(wake(last_seen, self.token.as_ref()));
                    continue;
                }
                ready = sock.readable() => {
                    if ready.is_err() {
                        return;
                    }
                }
            }
            buf.reserve(READ_CHUNK);
            match sock.try_read_buf(&mut buf) {
                Ok(0) => return, // The peer closed the socket.
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return tracing::debug!(error = %e, "websocket read ended"),
            }
        }
    }

    /// One frame from the client.
    async fn on_frame(&mut self, frame: Frame, assembler: &mut Assembler) -> Flow {
        match frame.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let refused = match assembler.push(frame.fin, frame.opcode, &frame.payload) {
                    Ok(Some(msg)) => {
                        self.on_data(msg.payload, msg.text).await;
                        None
                    }
                    Ok(None) => None,
                    Err(AssembleError::TooLarge) => Some(CloseReason::TOO_BIG),
                    Err(AssembleError::InvalidUtf8) => Some(CloseReason::INVALID_UTF8),
                    Err(AssembleError::Protocol) => Some(CloseReason::PROTOCOL_ERROR),
                };
                match refused {
                    Some(reason) => {
                        self.conn.close(reason);
                        Flow::Stop
                    }
                    None => Flow::Heard,
                }
            }
            OpCode::Ping => {
                // Answered, but it does not count as hearing from the client: its own pings do
                // not keep a connection alive. A pong is droppable: one that does not fit is
                // skipped, never a reason to close.
                let pong = WireFrame::with_opcode(OpCode::Pong, &frame.payload);
                self.conn.push(pong, Class::Droppable);
                Flow::Go
            }
            OpCode::Pong => Flow::Heard,
            OpCode::Close => {
                match frame::close_code(&frame.payload) {
                    // The echo is the close frame: it ends the queue and goes out next.
                    Ok(code) => self.conn.close(CloseReason::echo(code)),
                    Err(_) => self.conn.close(CloseReason::PROTOCOL_ERROR),
                }
                Flow::Stop
            }
        }
    }

    async fn on_data(&mut self, payload: &[u8], text: bool) {
        self.state.metrics.frames_in.increment(1);
        let now = Instant::now();
        // Over the message rate, a `signal` may still draw from its own budget (the envelope is
        // read only then: the accepted path costs nothing more).
        let over = self.bucket.take(now).err().filter(|_| {
            !(text && client::peek_type_is(payload, "signal") && self.signals.take(now).is_ok())
        });
        if let Some(wait) = over {
            self.state.metrics.rate_limited.increment(1);
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            // Parsing the envelope only when refusing keeps the `ref` without costing the
            // accepted path anything.
            let reference = if text {
                client::peek_ref(payload)
            } else {
                None
            };
            return self.error(
                reference.as_ref(),
                ErrorCode::RateLimited,
                "rate limit exceeded; slow down",
                Some(ms),
            );
        }
        if !text {
            return self.error(
                None,
                ErrorCode::BinaryNotSupported,
                "send JSON text frames",
                None,
            );
        }
        let max = self.state.config.ws.max_frame_bytes;
        if payload.len() > max {
            let message = format!(
                "frame of {} bytes exceeds the limit of {max}",
                payload.len()
            );
            let reference = client::peek_ref(payload);
            return self.error(reference.as_ref(), ErrorCode::FrameTooLarge, &message, None);
        }
        match client::decode(payload) {
            // `auth` is the gateway's own, not a room's: looked for only among the frames no
            // room command matches, so that the others pay nothing for it.
            Err(e) if e.code == ErrorCode::UnknownType && client::peek_type_is(payload, "auth") => {
                self.on_auth(payload).await;
            }
            Err(e) => self.error(e.reference.as_ref(), e.code, &e.message, None),
            Ok((reference, msg)) => self.dispatch(reference, msg, payload).await,
        }
    }

    /// The token is due: the notice (once), then its next look; `false` at expiry (close).
    fn on_token_timer(&mut self) -> bool {
        let Some(clock) = self.token.as_mut() else {
            return true;
        };
        let now = chrono::Utc::now().timestamp();
        if now >= clock.expires {
            return false;
        }
        if !clock.warned {
            clock.warned = true;
            let expires_at = chrono::DateTime::from_timestamp(clock.expires, 0).unwrap_or_default();
            let frame = ServerMsg::TokenExpiring {
                expires_at,
                in_ms: u64::try_from(clock.expires - now).unwrap_or(0) * 1000,
            };
            self.conn
                .push(WireFrame::text(frame.to_json()), Class::MustDeliver);
        }
        clock.due = clock.next_deadline();
        true
    }

    /// `auth`: a fresh access token for this connection's user; the connection now lasts until
    /// it expires. The socket stays open whatever the answer (it closes at the old expiry).
    async fn on_auth(&mut self, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct AuthMsg {
            #[serde(rename = "type")]
            _kind: String,
            #[serde(rename = "ref", default)]
            reference: Option<Ref>,
            token: String,
        }
        let msg: AuthMsg = match signaling::json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => {
                let reference = client::peek_ref(payload);
                return self.error(reference.as_ref(), e.code, &e.message, None);
            }
        };
        let reference = msg.reference.as_ref();
        if self.token.is_none() {
            let message = "a guest's token is not renewed on the socket";
            return self.error(reference, ErrorCode::Forbidden, message, None);
        }
        let claims = match self.state.auth.access_claims(&msg.token) {
            Ok(c) => c,
            Err(e) => return self.error(reference, ErrorCode::Unauthorized, &e.message, None),
        };
        if claims.sub != self.conn.user() {
            let message = "the token is for another user";
            return self.error(reference, ErrorCode::Forbidden, message, None);
        }
        if let Err(e) = crate::auth::Authenticated::active(self.state, claims.sub).await {
            return self.error(reference, e.code, &e.message, None);
        }
        if let Some(clock) = self.token.as_mut() {
            *clock = TokenClock::new(claims.exp);
        }
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
        let ack = ServerMsg::Ack {
            reference,
            result: Some(signaling::server::AckResult::Auth { expires_at }),
        };
        self.conn
            .push(WireFrame::text(ack.to_json()), Class::MustDeliver);
    }

    /// `raw` is the command as the client sent it (what goes to another node, unchanged).
    async fn dispatch(&mut self, reference: Option<Ref>, msg: ClientMsg, raw: &[u8]) {
        let key = msg.room();
        if let Some(session) = self.conn.guest_session()
            && key != RoomKey::Session(session)
        {
            let message = "a guest token is good for its own session only";
            return self.error(reference.as_ref(), ErrorCode::Forbidden, message, None);
        }
        let joined = self.conn.is_joined(key);
        if msg.is_join() {
            if !joined && self.conn.joined_count() >= MAX_ROOMS_PER_CONNECTION {
                let message =
                    format!("a connection may join at most {MAX_ROOMS_PER_CONNECTION} rooms");
                return self.error(reference.as_ref(), ErrorCode::Forbidden, &message, None);
            }
        } else if !joined {
            let message = match key {
                RoomKey::Workspace(_) => RoomError::NotJoined.to_string(),
                RoomKey::Session(_) => "join the session first".to_owned(),
            };
            return self.error(reference.as_ref(), ErrorCode::NotJoined, &message, None);
        }
        let reply = ReplyTo::new(self.conn.clone(), reference);
        self.state.router.client(reply, msg, raw).await;
    }

    fn error(
        &self,
        reference: Option<&Ref>,
        code: ErrorCode,
        message: &str,
        retry_after_ms: Option<u64>,
    ) {
        let frame = ServerMsg::Error {
            reference,
            code,
            message,
            retry_after_ms,
        };
        self.conn
            .push(WireFrame::text(frame.to_json()), Class::MustDeliver);
    }
}
