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
//! - every request carries `ConnectInfo<SocketAddr>` like `axum::serve` would;
//! - WebSocket upgrades keep working: the upgraded socket is the plain `TcpStream`, which the
//!   gateway takes back whole (see `ws::socket`).
//!
//! Shutdown: when `stop` is cancelled the loop stops accepting, asks every connection to finish
//! its in-flight request and close (idle ones close at once), and returns when they have.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
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

/// Accepts and serves connections until `stop` is cancelled, then waits for the open HTTP
/// connections to finish. Upgraded WebSocket connections are not waited for here: they belong
/// to the gateway once upgraded.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let conns = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually EMFILE/ENFILE: back off instead of spinning on the same error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        conns.spawn(serve_one(
            tcp,
            peer,
            app.clone(),
            header_timeout,
            stop.clone(),
        ));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), service)
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

/// The client's address: the peer of the TCP connection, or, with
/// `HUB_TRUST_FORWARDED_FOR`, the last entry of `X-Forwarded-For` (the one the trusted proxy
/// added). Every per-address limit and cap is keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(client_ip(parts, state.config.http.trust_forwarded_for))
    }
}

fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> ClientIp {
    if trust_forwarded_for {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ClientIp(ip);
        }
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    ClientIp(peer)
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
