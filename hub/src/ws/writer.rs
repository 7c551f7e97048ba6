//! The one task that writes to a connection's socket.
//!
//! It waits for the first ready frame, then takes every other frame already queued (up to
//! [`MAX_BATCH`]) and writes them into a buffered stream flushed once: under fan-out load one
//! syscall carries many frames. Control frames (pongs and the close echo that the reader is
//! obliged to send) come through a separate small channel and go first.

use std::time::Duration;

use actors::{CloseReason, Outbox};
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketWrite};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use crate::metrics::HubMetrics;

/// Most frames written per flush.
pub const MAX_BATCH: usize = 64;

/// A control frame the reader must have sent.
pub struct Control {
    /// Pong or Close.
    pub opcode: OpCode,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Runs until the outbox closes (the room or the hub asked, or the reader ended) or the socket
/// fails; then sends a close frame with the reason.
pub async fn run<W: AsyncWrite + Unpin>(
    mut ws: WebSocketWrite<W>,
    mut outbox: Outbox,
    mut control: mpsc::Receiver<Control>,
    ping_every: Duration,
    metrics: HubMetrics,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let result: Result<(), fastwebsockets::WebSocketError> = async {
        loop {
            tokio::select! {
                biased;
                Some(c) = control.recv() => {
                    let close = c.opcode == OpCode::Close;
                    ws.write_frame(Frame::new(true, c.opcode, None, Payload::Owned(c.payload))).await?;
                    ws.flush().await?;
                    if close {
                        return Ok(());
                    }
                }
                frame = outbox.recv() => {
                    let Some(first) = frame else { break };
                    let mut n = 1;
                    write_text(&mut ws, &first).await?;
                    while n < MAX_BATCH {
                        let Some(next) = outbox.try_recv() else { break };
                        write_text(&mut ws, &next).await?;
                        n += 1;
                    }
                    ws.flush().await?;
                    metrics.frames_out.increment(n as u64);
                }
                _ = ping.tick() => {
                    ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"hub"))).await?;
                    ws.flush().await?;
                }
            }
        }
        // Closing: a close echo the reader owes goes out instead of our own close.
        while let Ok(c) = control.try_recv() {
            if c.opcode == OpCode::Close {
                ws.write_frame(Frame::new(true, OpCode::Close, None, Payload::Owned(c.payload))).await?;
                return ws.flush().await;
            }
        }
        let reason = outbox.close_reason().unwrap_or(CloseReason { code: 1000, reason: "" });
        ws.write_frame(Frame::close(reason.code, reason.reason.as_bytes())).await?;
        ws.flush().await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "websocket write ended");
    }
}

async fn write_text<W: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<W>,
    frame: &Bytes,
) -> Result<(), fastwebsockets::WebSocketError> {
    ws.write_frame(Frame::text(Payload::Borrowed(frame))).await
}
