//! The HTTP/1.1 accept loop in front of the axum [`Router`](axum::Router).
//!
//! `axum::serve` gives no way to bound how long a client may take to send a request, so a
//! connection that sends half a header (or nothing) would be held forever. This loop serves each
//! accepted socket with hyper directly, with a timer:
//!
//! - a request's headers must arrive within `header_timeout` of the connection opening or of the
//!   previous response, so a slowloris connection and an idle keep-alive connection are both
//!   closed after that long (hyper starts the same timer while it waits for the next request);
//! - request heads are bounded ([`MAX_HEAD_BYTES`], [`MAX_HEADERS`]);
//! - a response the client stops reading is given up after `write_timeout` ([`WriteDeadline`]),
//!   so a client cannot hold a response and its socket forever;
//! - every accepted socket has Nagle's algorithm off (`TCP_NODELAY`): a realtime frame goes out
//!   when it is written, not after the peer's delayed ACK (up to 40 ms on Linux);
//! - every request carries `ConnectInfo<SocketAddr>` like `axum::serve` would;
//! - WebSocket upgrades keep working: the upgraded socket is the plain `TcpStream`, which the
//!   gateway takes back whole (see `ws::socket`).
//!
//! Shutdown: when `stop` is cancelled the loop stops accepting, asks every connection to finish
//! its in-flight request and close (idle ones close at once), and returns when they have.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::state::AppState;

/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How many connections the accept loop takes before it lets every other ready task run once.
/// In a connection storm the kernel's queue ([`LISTEN_BACKLOG`]) holds the rest at no cost,
/// while connected members' frames are not queued behind thousands of new handshakes.
const ACCEPTS_PER_TURN: u32 = 4;

/// Accepts and serves connections until `stop` is cancelled, then waits for the open HTTP
/// connections to finish. Upgraded WebSocket connections are not waited for here: they belong
/// to the gateway once upgraded.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let conns = TaskTracker::new();
    let mut accepted_in_a_row = 0;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if out_of_resources(&e) => {
                // Out of file descriptors or memory: back off instead of spinning on it.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            // One connection's trouble (reset before it was accepted...): the next one is fine.
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        conns.spawn(serve_one(tcp, peer, app.clone(), timeouts, stop.clone()));
        accepted_in_a_row += 1;
        if accepted_in_a_row == ACCEPTS_PER_TURN {
            // Let every other ready task run before taking more (see `ACCEPTS_PER_TURN`).
            accepted_in_a_row = 0;
            tokio::task::yield_now().await;
        }
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// The accept loop's clocks.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a request's headers (and so for an idle keep-alive connection).
    pub header: Duration,
    /// For a write that the client does not read.
    pub write: Duration,
}

/// How many handshaken connections may wait to be accepted. `TcpListener::bind` asks for 1024,
/// which a reconnect storm overflows in a tenth of a second of the hub being busy; an overflow
/// costs the client a SYN retransmission, a whole second. The kernel caps this at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: u32 = 8192;

/// The hub's listening socket, with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `bind` sets it,
/// so that a restarted hub can listen while the old one's connections linger in `TIME_WAIT`).
///
/// # Errors
/// The address is taken or not ours.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Unix only: on Windows the option lets another process take the port.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder
        .serve_connection(
            TokioIo::new(WriteDeadline::new(tcp, timeouts.write)),
            service,
        )
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Header timeouts, resets and malformed requests all end up here; none is the hub's
        // problem, so they are not logged above debug.
        tracing::debug!(%peer, error = %e, "http connection ended");
    }
}

/// A socket whose writes fail with `TimedOut` once one has made no progress for `timeout` (the
/// client stopped reading). Reads are untouched. Costs nothing while writes complete at once:
/// the timer exists only while a write waits.
pub struct WriteDeadline<S = TcpStream> {
    stream: S,
    timeout: Duration,
    /// Running while a write waits; allocated only when one does.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    /// Wraps `stream`.
    pub fn new(stream: S, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            stalled: None,
        }
    }

    /// The socket (an upgraded WebSocket takes it back).
    pub fn into_inner(self) -> S {
        self.stream
    }

    fn deadline<T>(&mut self, cx: &mut Context<'_>, polled: Poll<T>) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Ready(v) => {
                self.stalled = None;
                Poll::Ready(Ok(v))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.deadline(cx, polled).map(|r| r.and_then(|n| n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.deadline(cx, polled).map(|r| r.and_then(|n| n))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.deadline(cx, polled).map(|r| r.and_then(|n| n))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The client's address: the peer of the TCP connection, or, with
/// `HUB_TRUST_FORWARDED_FOR`, the last entry of `X-Forwarded-For` (the one the trusted proxy
/// added). Every per-address limit and cap is keyed by it. An IPv6 client is counted by its /64
/// (one subscriber usually holds a whole /64, so its single addresses are free to it), and an
/// IPv4-mapped IPv6 address as the IPv4 address it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The key an address is counted under.
    pub fn of(ip: IpAddr) -> ClientIp {
        ClientIp(match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(std::net::Ipv6Addr::from(
                    u128::from(v6) & !u128::from(u64::MAX),
                )),
            },
        })
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // A request another node of the cluster passed on: the client is who that node saw.
        if crate::api::forward::is_forwarded(state, &parts.headers)
            && let Some(ip) = parts
                .headers
                .get(&crate::api::forward::CLIENT_IP)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<IpAddr>().ok())
        {
            return Ok(ClientIp::of(ip));
        }
        Ok(client_ip(parts, state.config.http.trust_forwarded_for))
    }
}

/// The client's address for a whole request (as [`ClientIp`] reads it from its parts).
pub fn client_ip_of(req: &axum::extract::Request, trust_forwarded_for: bool) -> ClientIp {
    client_ip_from(req.headers(), req.extensions(), trust_forwarded_for)
}

fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> ClientIp {
    client_ip_from(&parts.headers, &parts.extensions, trust_forwarded_for)
}

fn client_ip_from(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trust_forwarded_for: bool,
) -> ClientIp {
    if trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ClientIp::of(ip);
        }
    }
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    ClientIp::of(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(forwarded: &[&str]) -> Parts {
        let mut req = axum::http::Request::builder().uri("/");
        for f in forwarded {
            req = req.header("x-forwarded-for", *f);
        }
        let (mut parts, ()) = req.body(()).expect("request").into_parts();
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 5000))));
        parts
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_fails_after_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut w = WriteDeadline::new(server, Duration::from_millis(200));
        let chunk = vec![0u8; 64 * 1024];
        let started = std::time::Instant::now();
        let err = loop {
            if let Err(e) = w.write_all(&chunk).await {
                break e;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never timed out"
            );
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }

    /// A burst of connections larger than `bind`'s default backlog (1024) all complete their
    /// handshake while the hub is not accepting, instead of the surplus waiting a second for a
    /// SYN retransmission.
    #[tokio::test]
    async fn a_burst_beyond_the_default_backlog_waits_in_the_queue() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let burst = 1500;
        if somaxconn < burst {
            eprintln!(
                "net.core.somaxconn is {somaxconn}: the kernel caps every backlog below {burst}; not testable here"
            );
            return;
        }
        let mut files = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` only writes the struct given to it.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut files) };
        // One descriptor per client socket (the queued server sides are the kernel's), plus
        // room for the other tests running in this process.
        if got != 0 || files.rlim_cur < burst as u64 + 1024 {
            eprintln!(
                "the open-file limit is {}: too low for a burst of {burst}; not testable here",
                files.rlim_cur
            );
            return;
        }
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let attempts = (0..burst).map(|_| async move {
            // Well under the first SYN retransmission (1 s): only a queued connection completes.
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await
        });
        let done = futures_util::future::join_all(attempts).await;
        let connected = done.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, burst, "every connection of the burst is queued");
        drop(listener);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientIp::of(a), ClientIp::of(b));
        assert_ne!(ClientIp::of(a), ClientIp::of(other));
        assert_eq!(
            ClientIp::of("::ffff:10.0.0.9".parse().unwrap()).0,
            IpAddr::from([10, 0, 0, 9])
        );
    }

    #[test]
    fn the_peer_is_the_client_unless_a_proxy_is_trusted() {
        let p = parts(&["1.2.3.4, 5.6.7.8"]);
        assert_eq!(client_ip(&p, false).0, IpAddr::from([10, 0, 0, 9]));
        assert_eq!(client_ip(&p, true).0, IpAddr::from([5, 6, 7, 8]));
        let p = parts(&["1.2.3.4", "junk"]);
        assert_eq!(
            client_ip(&p, true).0,
            IpAddr::from([10, 0, 0, 9]),
            "an unreadable last entry falls back to the peer"
        );
    }
}
