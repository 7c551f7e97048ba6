//! The one task that writes to a connection's socket.
//!
//! It waits for the first ready frame, then takes every other frame already queued (up to
//! [`MAX_BATCH`]) and writes them into a buffered stream flushed once: under fan-out load one
//! syscall carries many frames. Control frames (pongs and the close echo that the reader is
//! obliged to send) come through a separate small channel and go first.
//!
//! Every flush has a deadline: a client that stops reading fills its socket's send queue, the
//! flush stalls, and after `write_timeout` the connection is closed as a slow consumer (it can
//! reconnect and resume by offset). The writer then reports [`WriterEnd::Stuck`] so that the
//! connection resets the socket rather than leave the queue to the peer's mercy.

use std::time::Duration;

use actors::{CloseReason, Outbox};
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketWrite};
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

/// The writer's clocks.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often to ping.
    pub ping_every: Duration,
    /// How long one flush may stall before the client counts as gone.
    pub write_timeout: Duration,
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEnd {
    /// The close frame was sent.
    Closed,
    /// The socket failed (the peer went away).
    Failed,
    /// A write stalled past its deadline: the peer is not reading.
    Stuck,
}

enum Stop {
    Io(WebSocketError),
    Stalled,
}

impl From<WebSocketError> for Stop {
    fn from(e: WebSocketError) -> Self {
        Stop::Io(e)
    }
}

/// Runs until the outbox closes (the room or the hub asked, or the reader ended) or the socket
/// fails or stalls; then sends a close frame with the reason.
pub async fn run<W: AsyncWrite + Unpin>(
    ws: WebSocketWrite<W>,
    mut outbox: Outbox,
    mut control: mpsc::Receiver<Control>,
    timing: Timing,
    metrics: HubMetrics,
) -> WriterEnd {
    let mut w = Writer {
        ws,
        timing,
        metrics,
    };
    match w.serve(&mut outbox, &mut control).await {
        Ok(()) => WriterEnd::Closed,
        Err(Stop::Io(e)) => {
            tracing::debug!(error = %e, "websocket write ended");
            WriterEnd::Failed
        }
        Err(Stop::Stalled) => {
            // Whatever stalled (events, a ping, the close frame), the client is not reading:
            // the connection ends as a slow consumer, and the reader stops too.
            if outbox.close_reason().is_none() {
                w.metrics.rooms.slow_consumers.increment(1);
            }
            outbox.close(CloseReason::SLOW_CONSUMER);
            WriterEnd::Stuck
        }
    }
}

struct Writer<W> {
    ws: WebSocketWrite<W>,
    timing: Timing,
    metrics: HubMetrics,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn serve(
        &mut self,
        outbox: &mut Outbox,
        control: &mut mpsc::Receiver<Control>,
    ) -> Result<(), Stop> {
        let every = self.timing.ping_every;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                biased;
                Some(c) = control.recv() => {
                    let close = c.opcode == OpCode::Close;
                    self.send(Frame::new(true, c.opcode, None, Payload::Owned(c.payload))).await?;
                    if close {
                        return Ok(());
                    }
                }
                frame = outbox.recv() => {
                    let Some(first) = frame else { break };
                    self.batch(&first, outbox).await?;
                }
                _ = ping.tick() => {
                    self.send(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"hub"))).await?;
                }
            }
        }
        // Closing: a close echo the reader owes goes out instead of our own close.
        while let Ok(c) = control.try_recv() {
            if c.opcode == OpCode::Close {
                let echo = Frame::new(true, OpCode::Close, None, Payload::Owned(c.payload));
                return self.send(echo).await;
            }
        }
        let reason = outbox.close_reason().unwrap_or(CloseReason {
            code: 1000,
            reason: "",
        });
        self.send(Frame::close(reason.code, reason.reason.as_bytes()))
            .await
    }

    /// Writes `first` and whatever else is queued, then flushes, all under the deadline.
    async fn batch(&mut self, first: &Bytes, outbox: &mut Outbox) -> Result<(), Stop> {
        let deadline = self.timing.write_timeout;
        let written = tokio::time::timeout(deadline, async {
            let mut n = 1;
            self.ws.write_frame(text(first)).await?;
            while n < MAX_BATCH {
                let Some(next) = outbox.try_recv() else { break };
                self.ws.write_frame(text(&next)).await?;
                n += 1;
            }
            self.ws.flush().await?;
            Ok::<u64, WebSocketError>(n as u64)
        })
        .await
        .map_err(|_| Stop::Stalled)??;
        self.metrics.frames_out.increment(written);
        Ok(())
    }

    /// Writes one frame and flushes, under the deadline.
    async fn send(&mut self, frame: Frame<'_>) -> Result<(), Stop> {
        tokio::time::timeout(self.timing.write_timeout, async {
            self.ws.write_frame(frame).await?;
            self.ws.flush().await
        })
        .await
        .map_err(|_| Stop::Stalled)?
        .map_err(Stop::Io)
    }
}

fn text(frame: &Bytes) -> Frame<'_> {
    Frame::text(Payload::Borrowed(frame))
}
