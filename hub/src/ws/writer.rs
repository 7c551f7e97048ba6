//! The one task that writes to a connection's socket.
//!
//! Everything in the outbox is a complete WebSocket frame, built once by the room for all its
//! members (`actors::WireFrame`). The writer waits for the first, takes every other frame
//! already queued (up to [`MAX_BATCH`]) and hands them all to the kernel in one vectored write:
//! no copy, no per-member framing, no write buffer kept per connection. The reader's pongs come
//! through the outbox like any frame (droppable); its close echo is the connection's close
//! reason, which ends the queue and goes out as the close frame.
//!
//! A write that stalls (the client stopped reading and the socket's send queue is full) fails
//! after the write deadline of the socket ([`crate::http::WriteDeadline`], whose timer runs only
//! while a write waits): the connection is closed as a slow consumer (it can reconnect and resume
//! by offset), and the writer reports [`WriterEnd::Stuck`] so that the connection resets the
//! socket rather than leave the queue to the peer's mercy.

use std::io::{self, IoSlice};
use std::time::Duration;

use actors::{CloseReason, Outbox, WireFrame};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::metrics::HubMetrics;

/// Most frames taken from the outbox for one batch.
pub const MAX_BATCH: usize = 64;
/// Most frames handed to one `writev` call (a batch takes several when it is longer). Kept
/// small: the slices live in the writer's state, which every connection holds while idle.
const SLICES_PER_WRITE: usize = 16;

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

/// Runs until the outbox closes (the room or the hub asked, or the reader ended) or the socket
/// fails or stalls; then sends a close frame with the reason.
pub async fn run<W: AsyncWrite + Unpin>(
    sock: W,
    mut outbox: Outbox,
    ping_every: Duration,
    metrics: HubMetrics,
) -> WriterEnd {
    let mut w = Writer {
        sock,
        batch: Vec::new(),
        metrics,
    };
    match w.serve(&mut outbox, ping_every).await {
        Ok(()) => WriterEnd::Closed,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            // Whatever stalled (events, a ping, the close frame), the client is not reading:
            // the connection ends as a slow consumer, and the reader stops too.
            if outbox.close_reason().is_none() {
                w.metrics.rooms.slow_consumers.increment(1);
            }
            outbox.close(CloseReason::SLOW_CONSUMER);
            WriterEnd::Stuck
        }
        Err(e) => {
            tracing::debug!(error = %e, "websocket write ended");
            WriterEnd::Failed
        }
    }
}

/// A ping; its payload means nothing.
fn ping() -> Bytes {
    Bytes::from_static(b"\x89\x03hub")
}

struct Writer<W> {
    sock: W,
    /// The frames of the batch being written; empty between batches.
    batch: Vec<Bytes>,
    metrics: HubMetrics,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn serve(&mut self, outbox: &mut Outbox, ping_every: Duration) -> io::Result<()> {
        let mut ping_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        loop {
            tokio::select! {
                biased;
                frame = outbox.recv() => {
                    let Some(first) = frame else { break };
                    self.batch.push(first);
                    while self.batch.len() < MAX_BATCH {
                        let Some(next) = outbox.try_recv() else { break };
                        self.batch.push(next);
                    }
                    let n = self.batch.len() as u64;
                    self.write_batch().await?;
                    self.metrics.frames_out.increment(n);
                }
                _ = ping_timer.tick() => self.write_one(ping()).await?,
            }
        }
        // The close frame: the room's or the hub's reason, or the echo of the client's close.
        let reason = outbox.close_reason().unwrap_or(CloseReason {
            code: 1000,
            reason: "",
        });
        let close = WireFrame::close(reason.code, reason.reason);
        self.write_one(close.bytes().clone()).await
    }

    async fn write_one(&mut self, frame: Bytes) -> io::Result<()> {
        self.batch.push(frame);
        self.write_batch().await
    }

    /// Writes the whole batch, as few vectored writes as the kernel takes, then clears it.
    async fn write_batch(&mut self) -> io::Result<()> {
        let result = write_all_vectored(&mut self.sock, &self.batch).await;
        self.batch.clear();
        result
    }
}

/// Writes every frame of `frames`, in order, resuming after partial writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    sock: &mut W,
    frames: &[Bytes],
) -> io::Result<()> {
    // Where the writing stands: the first frame not fully written, and how much of it is.
    let (mut first, mut offset) = (0, 0);
    while first < frames.len() {
        let mut slices = [IoSlice::new(&[]); SLICES_PER_WRITE];
        let mut k = 0;
        for (i, frame) in frames[first..].iter().take(SLICES_PER_WRITE).enumerate() {
            let start = if i == 0 { offset } else { 0 };
            slices[k] = IoSlice::new(&frame[start..]);
            k += 1;
        }
        let mut written = sock.write_vectored(&slices[..k]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 && first < frames.len() {
            let left = frames[first].len() - offset;
            if written >= left {
                written -= left;
                first += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A sink that takes at most `chunk` bytes per write, to exercise partial writes.
    struct Trickle {
        got: Vec<u8>,
        chunk: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.chunk - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.chunk {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped_and_keep_the_order() {
        let frames: Vec<Bytes> = (0..100u8)
            .map(|i| {
                WireFrame::text(vec![b'a' + i % 26; i as usize])
                    .bytes()
                    .clone()
            })
            .collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        for chunk in [1, 7, 64, 10_000] {
            let mut sink = Trickle {
                got: Vec::new(),
                chunk,
            };
            write_all_vectored(&mut sink, &frames).await.unwrap();
            assert_eq!(sink.got, expected, "chunk {chunk}");
        }
    }
}
