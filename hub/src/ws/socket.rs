//! The upgraded socket, shared by the connection's reader and writer.
//!
//! Both halves hold the same `Arc<TcpStream>` (tokio's readiness API takes `&self`, so no lock
//! is needed), and so does the connection task. That task can therefore always end the socket
//! itself: when the peer has stopped reading and the writer is stuck behind a full send queue,
//! it sets `SO_LINGER` to zero and drops its handles, and the kernel resets the connection and
//! frees the queue at once instead of keeping it for as long as the peer likes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes the HTTP server had read past the upgrade request, then the socket.
pub struct ReadSide {
    prefix: Bytes,
    stream: Arc<TcpStream>,
}

/// The writing side of the socket.
pub struct WriteSide {
    stream: Arc<TcpStream>,
}

/// Splits an upgraded socket; `prefix` is what was already read from it.
pub fn split(stream: TcpStream, prefix: Bytes) -> (Arc<TcpStream>, ReadSide, WriteSide) {
    let stream = Arc::new(stream);
    let read = ReadSide {
        prefix,
        stream: stream.clone(),
    };
    let write = WriteSide {
        stream: stream.clone(),
    };
    (stream, read, write)
}

/// Makes the socket's close abortive: when the last handle drops, the kernel sends a reset and
/// discards whatever the peer never read, instead of holding it while it retries.
pub fn abort_on_close(stream: &TcpStream) {
    // SO_LINGER with a zero timeout never blocks the closing thread (only a non-zero one does).
    if let Err(e) = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "could not make the close abortive");
    }
}

/// Ends a connection whose close frame has been written: sends FIN, then reads (and discards)
/// until the peer closes its side. True if it did by `deadline`.
pub async fn close_gracefully(stream: &TcpStream, deadline: tokio::time::Instant) -> bool {
    if socket2::SockRef::from(stream)
        .shutdown(std::net::Shutdown::Write)
        .is_err()
    {
        return true; // Already reset or closed by the peer.
    }
    let mut sink = [0u8; 4096];
    let drained = tokio::time::timeout_at(deadline, async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    });
    drained.await.is_ok()
}

impl AsyncRead for ReadSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            // `ReadBuf` is a `BufMut`: the kernel writes straight into its unfilled part, which
            // is never zeroed first (the read buffer can be as large as a whole frame).
            match self.stream.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                // Readiness was stale; `try_read` cleared it, so polling again registers us.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let sock = socket2::SockRef::from(self.stream.as_ref());
        Poll::Ready(match sock.shutdown(std::net::Shutdown::Write) {
            // Already reset or shut down by the peer: nothing left to say.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn the_prefix_is_read_before_the_socket() {
        let (server, mut client) = pair().await;
        let (_sock, mut read, mut write) = split(server, Bytes::from_static(b"early "));
        client.write_all(b"late").await.unwrap();
        let mut got = vec![0u8; 10];
        read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"early late");
        write.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }

    #[tokio::test]
    async fn a_graceful_close_waits_for_the_peer_and_gives_up_in_time() {
        let (server, mut client) = pair().await;
        let (sock, _read, _write) = split(server, Bytes::new());
        // A peer that closes its side: done at once.
        let closing = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let _ = client.read(&mut buf).await; // our FIN
            drop(client);
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        assert!(close_gracefully(&sock, deadline).await);
        closing.await.unwrap();
        // A peer that never closes: not done by the deadline.
        let (server, _client) = pair().await;
        let (sock, _read, _write) = split(server, Bytes::new());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
        assert!(!close_gracefully(&sock, deadline).await);
    }

    #[tokio::test]
    async fn an_abortive_close_resets_the_peer() {
        let (server, mut client) = pair().await;
        let (sock, read, write) = split(server, Bytes::new());
        abort_on_close(&sock);
        drop((sock, read, write));
        let mut buf = [0u8; 1];
        let err = client.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
}
