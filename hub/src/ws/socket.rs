//! The upgraded socket, shared by the connection's reader and writer.
//!
//! The writer and the connection task (which reads) hold the same `Arc<TcpStream>` (tokio's
//! readiness API takes `&self`, so no lock is needed). That task can therefore always end the socket
//! itself: when the peer has stopped reading and the writer is stuck behind a full send queue,
//! it sets `SO_LINGER` to zero and drops its handles, and the kernel resets the connection and
//! frees the queue at once instead of keeping it for as long as the peer likes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// The writing side of the socket.
pub struct WriteSide {
    stream: Arc<TcpStream>,
}

/// Shares an upgraded socket: the connection task (which reads it and ends it) keeps the `Arc`,
/// the writer gets the [`WriteSide`].
pub fn split(stream: TcpStream) -> (Arc<TcpStream>, WriteSide) {
    let stream = Arc::new(stream);
    let write = WriteSide {
        stream: stream.clone(),
    };
    (stream, write)
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
    async fn writes_go_to_the_peer() {
        let (server, mut client) = pair().await;
        let (_sock, mut write) = split(server);
        write.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }

    #[tokio::test]
    async fn a_graceful_close_waits_for_the_peer_and_gives_up_in_time() {
        let (server, mut client) = pair().await;
        let (sock, _write) = split(server);
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
        let (sock, _write) = split(server);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
        assert!(!close_gracefully(&sock, deadline).await);
    }

    #[tokio::test]
    async fn an_abortive_close_resets_the_peer() {
        let (server, mut client) = pair().await;
        let (sock, write) = split(server);
        abort_on_close(&sock);
        drop((sock, write));
        let mut buf = [0u8; 1];
        let err = client.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
}
