//! One WebSocket connection: the read loop and its checks.
//!
//! Per frame, in order: count it; take a rate-limit token (`rate_limited` if none); refuse
//! binary (`binary_not_supported`) and oversized (`frame_too_large`) frames; decode
//! (`bad_json`, `bad_envelope`, `unknown_type`, `invalid_payload`); refuse commands for rooms not
//! joined (`not_joined`) without bothering the room; otherwise hand the command to its room with
//! a [`ReplyTo`] that guarantees exactly one answer.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actors::conn::Class;
use actors::workspace::{ReplyTo, RoomError, WorkspaceMsg};
use actors::{CloseReason, ConnHandle};
use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, WebSocket, WebSocketError};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use signaling::client::{self, ClientMsg, Ref};
use signaling::server::{Limits, ServerMsg};
use signaling::{ErrorCode, RoomKey, UserId};
use tokio::io::BufWriter;
use tokio::sync::mpsc;

use super::writer::{self, Control};
use crate::limits::TokenBucket;
use crate::state::AppState;

/// The hard limit is this many times the configured frame size: frames in between are read and
/// answered with `frame_too_large`; larger ones close the connection (1009).
const HARD_LIMIT_FACTOR: usize = 16;
/// Rooms one connection may be joined to at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 64;

/// Serves one upgraded connection until it closes.
#[tracing::instrument(skip_all, fields(user = %user))]
pub async fn run(state: AppState, user: UserId, mut socket: WebSocket<TokioIo<Upgraded>>) {
    let cfg = &state.config.ws;
    socket.set_max_message_size(cfg.max_frame_bytes.saturating_mul(HARD_LIMIT_FACTOR));
    socket.set_auto_close(true);
    socket.set_auto_pong(true);
    socket.set_writev(false);
    let (read, mut write) = socket.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, BufWriter::with_capacity(32 * 1024, w))
    });
    write.set_writev(false);
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (conn, outbox) = ConnHandle::new(id, user, cfg.outbox_frames);
    let (control_tx, control_rx) = mpsc::channel(16);
    state.metrics.connections_open.increment(1.0);
    let writer = tokio::spawn(writer::run(
        write,
        outbox,
        control_rx,
        Duration::from_secs(cfg.ping_secs.max(1)),
        state.metrics.clone(),
    ));

    let hello = ServerMsg::Hello {
        user_id: user,
        connection_id: id,
        limits: Limits {
            max_frame_bytes: cfg.max_frame_bytes,
            messages_per_second: cfg.rate_per_sec,
            burst: cfg.rate_burst,
        },
    };
    conn.push(Bytes::from(hello.to_json()), Class::MustDeliver);
    tracing::debug!(conn = id, "connected");

    let mut reader = Reader {
        state: &state,
        conn: conn.clone(),
        bucket: TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst, Instant::now()),
    };
    reader
        .read_loop(FragmentCollectorRead::new(read), control_tx)
        .await;

    for room in conn.joined_rooms() {
        match room {
            RoomKey::Workspace(ws) => state.router.disconnected(ws, id),
        }
    }
    // Let the writer send what is queued and the close frame, but not forever.
    conn.close(CloseReason {
        code: 1000,
        reason: "",
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    state.metrics.connections_open.decrement(1.0);
    tracing::debug!(conn = id, "disconnected");
}

struct Reader<'a> {
    state: &'a AppState,
    conn: ConnHandle,
    bucket: TokenBucket,
}

impl Reader<'_> {
    async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        mut read: FragmentCollectorRead<R>,
        control: mpsc::Sender<Control>,
    ) {
        let idle = Duration::from_secs(self.state.config.ws.idle_timeout_secs.max(1));
        let mut obligated = |frame: Frame<'_>| {
            // Pongs and close echoes go to the writer; a full control queue only drops pongs.
            let c = Control {
                opcode: frame.opcode,
                payload: frame.payload.to_vec(),
            };
            let sent = control.try_send(c).is_ok() || frame.opcode != OpCode::Close;
            async move {
                if sent {
                    Ok(())
                } else {
                    Err(std::io::Error::other("control queue full"))
                }
            }
        };
        loop {
            let frame = tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => {
                    self.conn.close(CloseReason::GOING_AWAY);
                    return;
                }
                () = self.conn.closed() => return,
                r = tokio::time::timeout(idle, read.read_frame(&mut obligated)) => r,
            };
            let frame = match frame {
                Err(_) => {
                    self.conn.close(CloseReason::IDLE);
                    return;
                }
                Ok(Err(WebSocketError::FrameTooLarge)) => {
                    self.conn.close(CloseReason::TOO_BIG);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "websocket read ended");
                    return;
                }
                Ok(Ok(frame)) => frame,
            };
            match frame.opcode {
                OpCode::Close => return,
                OpCode::Text => self.on_data(&frame.payload, true).await,
                OpCode::Binary => self.on_data(&frame.payload, false).await,
                _ => {}
            }
        }
    }

    async fn on_data(&mut self, payload: &[u8], text: bool) {
        self.state.metrics.frames_in.increment(1);
        if let Err(wait) = self.bucket.take(Instant::now()) {
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
            Err(e) => self.error(e.reference.as_ref(), e.code, &e.message, None),
            Ok((reference, msg)) => self.dispatch(reference, msg).await,
        }
    }

    async fn dispatch(&mut self, reference: Option<Ref>, msg: ClientMsg) {
        let room = msg.workspace_id();
        let key = RoomKey::Workspace(room);
        let joined = self.conn.is_joined(key);
        if matches!(msg, ClientMsg::JoinWorkspace(_)) {
            if !joined && self.conn.joined_count() >= MAX_ROOMS_PER_CONNECTION {
                let message =
                    format!("a connection may join at most {MAX_ROOMS_PER_CONNECTION} rooms");
                return self.error(reference.as_ref(), ErrorCode::Forbidden, &message, None);
            }
        } else if !joined {
            let message = RoomError::NotJoined.to_string();
            return self.error(reference.as_ref(), ErrorCode::NotJoined, &message, None);
        }
        let reply = ReplyTo::new(self.conn.clone(), reference);
        let sent = self
            .state
            .router
            .send(room, WorkspaceMsg::Client { reply, cmd: msg })
            .await;
        // Answer with the real reason (the `ReplyTo` would otherwise say `unavailable`).
        if let Err((err, Some(WorkspaceMsg::Client { reply, .. }))) = sent {
            reply.error(&RoomError::from(err));
        }
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
            .push(Bytes::from(frame.to_json()), Class::MustDeliver);
    }
}
