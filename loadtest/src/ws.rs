//! Opening one connection: TCP (from a spread source address, `addrs.rs`), the WebSocket
//! upgrade (hyper's HTTP/1 client, then fastwebsockets over the upgraded stream), the hub's
//! `hello`, `join_workspace` and, for `--op task_update`, the connection's own task. The result
//! is a [`Session`] ready for the load loop in `client.rs` (or held unread, `slow.rs`, or held
//! by a storm, `storm.rs`). [`Dialer::open_bare`] stops after `hello`, for the conference
//! scenarios, which join a session with their own commands (`webrtc.rs`).
//!
//! The upgrade is done here rather than by `fastwebsockets::handshake::client` so that a refusal
//! keeps the hub's error code from its body: `HTTP 429 too_many_connections` (a connection cap)
//! and `HTTP 429 rate_limited` (the per-address throttle) call for different hub settings.
//!
//! The setup is strict request/reply on the unsplit socket, with one timeout around all of it;
//! frames that are not the awaited reply (the snapshot, presence of others joining, their tasks
//! being created) are read and dropped.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket, handshake};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use signaling::client::ClientMsg;
use signaling::server::Limits;
use signaling::{TaskId, WorkspaceId};
use tokio::net::{TcpSocket, TcpStream};

use crate::addrs::{self, SourceAddrs};
use crate::args::Op;
use crate::frames::{self, Incoming};
use crate::target::Target;

/// An upgraded connection.
pub type Socket = WebSocket<TokioIo<Upgraded>>;

/// Longest time from starting the TCP connect to the last setup reply.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// `ref` of the `join_workspace` command.
const JOIN_REF: u64 = 1;
/// `ref` of the `task_create` command; load commands are numbered after it.
const CREATE_REF: u64 = 2;
/// First `ref` of the load phase.
pub const FIRST_LOAD_REF: u64 = 3;
/// Most of a refused upgrade's body read for its error code.
const MAX_REFUSAL_BODY: usize = 4096;

/// Why a connection could not be opened: the step and what went wrong. Displayed as the key the
/// report groups failures by, so details that vary per connection stay out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    /// `tcp`, `handshake`, `hello`, `join`, `task_create`, `timeout`...
    pub step: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

fn fail(step: &'static str, detail: impl std::fmt::Display) -> OpenError {
    OpenError {
        step,
        detail: detail.to_string(),
    }
}

/// A joined connection, ready for the load phase.
pub struct Session {
    /// The socket.
    pub ws: Socket,
    /// The limits from `hello`.
    pub limits: Option<Limits>,
    /// The connection's own task and its version (`--op task_update` only).
    pub task: Option<(TaskId, u64)>,
}

/// Opens connections to a hub, or to the nodes of a cluster (connection i to node i % n); the
/// addresses are resolved once for all of them.
pub struct Dialer {
    nodes: Vec<(Target, Vec<SocketAddr>)>,
    /// Source addresses connections are spread over; 0 binds nothing.
    sources: usize,
}

impl Dialer {
    /// Resolves the hub's host and decides how many source addresses `connections` sockets
    /// are spread over.
    ///
    /// # Errors
    /// When the name does not resolve, or source addresses were asked for and it resolves to
    /// nothing on 127.0.0.0/8.
    pub async fn resolve(
        targets: &[Target],
        source_addrs: SourceAddrs,
        connections: usize,
    ) -> anyhow::Result<Dialer> {
        let mut nodes = Vec::with_capacity(targets.len());
        for target in targets {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((target.host.as_str(), target.port))
                    .await
                    .with_context(|| format!("resolving {}", target.host))?
                    .collect();
            anyhow::ensure!(!addrs.is_empty(), "{} resolves to no address", target.host);
            nodes.push((target.clone(), addrs));
        }
        let first = nodes.first().context("no hub address")?;
        // `localhost` may resolve to ::1 first; bound sockets need the IPv4 loopback.
        let loopback = first
            .1
            .iter()
            .map(SocketAddr::ip)
            .find(|&ip| addrs::is_loopback_v4(ip));
        let sources = source_addrs.resolve(connections, loopback.unwrap_or(first.1[0].ip()));
        if sources > 0 {
            for (target, addrs) in &mut nodes {
                addrs.retain(|a| addrs::is_loopback_v4(a.ip()));
                anyhow::ensure!(
                    !addrs.is_empty(),
                    "--source-addrs needs a hub on 127.0.0.0/8; {} is not",
                    target.host
                );
            }
        }
        Ok(Dialer { nodes, sources })
    }

    /// The node connection `conn` goes to.
    fn node(&self, conn: usize) -> &(Target, Vec<SocketAddr>) {
        &self.nodes[conn % self.nodes.len()]
    }

    /// How many source addresses the connections are spread over (0: the kernel's choice).
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Opens connection `conn` as the holder of `token`, joins `workspace` and, for
    /// `task_update`, creates the connection's task.
    ///
    /// # Errors
    /// An [`OpenError`] naming the step that failed.
    pub async fn open(
        &self,
        token: &str,
        workspace: WorkspaceId,
        op: Op,
        conn: usize,
    ) -> Result<Session, OpenError> {
        tokio::time::timeout(SETUP_TIMEOUT, async {
            let ws = self.upgrade(token, conn).await?;
            setup(ws, workspace, op, conn).await
        })
        .await
        .map_err(|_| fail("timeout", format!("not joined within {SETUP_TIMEOUT:?}")))?
    }

    /// Opens connection `conn` as the holder of `token` as far as the hub's `hello`, for a
    /// caller that sends its own commands (the conference scenarios join a session, not a
    /// workspace).
    ///
    /// # Errors
    /// An [`OpenError`] naming the step that failed.
    pub async fn open_bare(
        &self,
        token: &str,
        conn: usize,
    ) -> Result<(Socket, Option<Limits>), OpenError> {
        tokio::time::timeout(SETUP_TIMEOUT, async {
            let mut ws = self.upgrade(token, conn).await?;
            let limits = read_hello(&mut ws).await?;
            Ok((ws, limits))
        })
        .await
        .map_err(|_| fail("timeout", format!("no hello within {SETUP_TIMEOUT:?}")))?
    }

    /// The TCP connect and the WebSocket upgrade of connection `conn` as the holder of `token`
    /// (no `hello` read yet): the session scenarios join their own rooms.
    ///
    /// # Errors
    /// An [`OpenError`] of step `tcp` or `handshake`.
    pub async fn upgrade(&self, token: &str, conn: usize) -> Result<Socket, OpenError> {
        let tcp = self.tcp(conn).await?;
        let target = &self.node(conn).0;
        let req = Request::builder()
            .method("GET")
            .uri(target.ws_path(token))
            .header(header::HOST, &target.authority)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "upgrade")
            .header(header::SEC_WEBSOCKET_KEY, handshake::generate_key())
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail("handshake", e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| fail("handshake", e))?;
        // Drives the HTTP exchange and hands the socket over once upgraded; its error, if any,
        // reaches us through the response below.
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut response = sender
            .send_request(req)
            .await
            .map_err(|e| fail("handshake", e))?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = Limited::new(response.into_body(), MAX_REFUSAL_BODY);
            let code = match body.collect().await {
                Ok(bytes) => refusal_code(&bytes.to_bytes()),
                Err(_) => None,
            };
            return Err(fail("handshake", refusal(status, code.as_deref())));
        }
        let upgraded = hyper::upgrade::on(&mut response)
            .await
            .map_err(|e| fail("handshake", e))?;
        Ok(WebSocket::after_handshake(
            TokioIo::new(upgraded),
            Role::Client,
        ))
    }

    /// Connects to the first address that accepts, from connection `conn`'s source address.
    async fn tcp(&self, conn: usize) -> Result<TcpStream, OpenError> {
        let source = addrs::source_for(conn, self.sources);
        let mut last = None;
        for addr in &self.node(conn).1 {
            match connect(*addr, source).await {
                Ok(tcp) => {
                    // Latency is the point of the run: no Nagle delay on small frames.
                    tcp.set_nodelay(true).map_err(|e| fail("tcp", e))?;
                    return Ok(tcp);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => fail("tcp", explain(&e)),
            None => fail("tcp", "no address"),
        })
    }
}

/// One TCP connect, bound first to `source` (port 0: the kernel picks) when there is one.
async fn connect(
    addr: SocketAddr,
    source: Option<std::net::Ipv4Addr>,
) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        defer_port_choice(&socket);
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    socket.connect(addr).await
}

/// `IP_BIND_ADDRESS_NO_PORT`: the port of a socket bound to `(addr, 0)` is chosen at
/// `connect`, by the kernel's fast search for a free 4-tuple, rather than at `bind` by a scan
/// for a port no other socket on that address holds (which grows slow with tens of thousands
/// of sockets on one address). Best effort: without it binding still works, only slower.
fn defer_port_choice(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: `setsockopt` reads `size_of::<c_int>()` bytes from a live local; the descriptor
    // belongs to `socket`, which outlives the call.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            // A c_int's size always fits a socklen_t.
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// A connect error with what to do about it, where there is something to do. Kept free of
/// per-connection details: it is the key failures are counted under.
fn explain(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => {
            format!("{e} (the open-file limit: see the warning at start)")
        }
        Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => {
            format!("{e} (out of local ports: spread over more --source-addrs)")
        }
        _ => e.to_string(),
    }
}

/// The failure key of a refused upgrade: `HTTP 429 too_many_connections`.
fn refusal(status: StatusCode, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("HTTP {} {code}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// The stable error code of a hub error body (`{"error": {"code": ...}}`).
fn refusal_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    // The code becomes a report key: keep it short and printable whatever the body says.
    let code: String = body
        .error
        .code
        .chars()
        .take(40)
        .filter(|c| c.is_ascii_graphic())
        .collect();
    (!code.is_empty()).then_some(code)
}

/// `hello`, join and (for `task_update`) the task.
async fn setup(
    mut ws: Socket,
    workspace: WorkspaceId,
    op: Op,
    conn: usize,
) -> Result<Session, OpenError> {
    let limits = read_hello(&mut ws).await?;
    request(&mut ws, JOIN_REF, &frames::join(workspace), "join").await?;
    let task = match op {
        Op::Broadcast => None,
        Op::TaskUpdate => {
            let msg = frames::task_create(workspace, conn);
            let task = request(&mut ws, CREATE_REF, &msg, "task_create")
                .await?
                .ok_or_else(|| fail("task_create", "the ack carries no task"))?;
            Some((task.id, task.version))
        }
    };
    Ok(Session { ws, limits, task })
}

/// The next complete text frame; pings are answered and other control frames dropped.
async fn next_text(ws: &mut Socket, step: &'static str) -> Result<Frame<'static>, OpenError> {
    loop {
        let frame = ws.read_frame().await.map_err(|e| fail(step, e))?;
        match frame.opcode {
            OpCode::Text if frame.fin => return Ok(frame),
            OpCode::Text | OpCode::Continuation => {
                return Err(fail(step, "fragmented frames are not supported"));
            }
            OpCode::Close => {
                return Err(fail(
                    step,
                    format!("closed by the hub ({})", frames::close_code(&frame.payload)),
                ));
            }
            _ => {}
        }
    }
}

/// Reads the `hello` frame and its limits.
///
/// # Errors
/// An [`OpenError`] of step `hello`.
pub async fn read_hello(ws: &mut Socket) -> Result<Option<Limits>, OpenError> {
    let frame = next_text(ws, "hello").await?;
    let f = Incoming::parse(&frame.payload).map_err(|e| fail("hello", e))?;
    match &*f.kind {
        "hello" => Ok(f.limits),
        "error" => Err(fail("hello", f.code.as_deref().unwrap_or("error"))),
        other => Err(fail("hello", format!("expected hello, got `{other}`"))),
    }
}

/// Sends a command and waits for its `ack`; the acked task, if the ack carries one. Frames
/// that are not its answer are dropped.
///
/// # Errors
/// An [`OpenError`] of step `step`: the socket failed, or the hub answered with an `error`.
pub async fn request(
    ws: &mut Socket,
    reference: u64,
    msg: &ClientMsg,
    step: &'static str,
) -> Result<Option<frames::TaskIn>, OpenError> {
    let bytes = frames::command(reference, msg).map_err(|e| fail(step, e))?;
    ws.write_frame(Frame::text(Payload::Owned(bytes)))
        .await
        .map_err(|e| fail(step, e))?;
    loop {
        let frame = next_text(ws, step).await?;
        let Ok(f) = Incoming::parse(&frame.payload) else {
            continue;
        };
        if f.ref_num() != Some(reference) {
            continue;
        }
        match &*f.kind {
            "ack" => return Ok(f.acked_task()),
            "error" => {
                return Err(fail(
                    step,
                    f.code.as_deref().unwrap_or("unknown error code"),
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_keyed_by_status_and_the_hubs_code() {
        let body = br#"{"error":{"code":"too_many_connections","message":"at most 50 open connections per user"}}"#;
        let code = refusal_code(body);
        assert_eq!(code.as_deref(), Some("too_many_connections"));
        assert_eq!(
            refusal(StatusCode::TOO_MANY_REQUESTS, code.as_deref()),
            "HTTP 429 too_many_connections"
        );
        assert_eq!(refusal(StatusCode::UNAUTHORIZED, None), "HTTP 401");
        assert_eq!(refusal_code(b"<html>busy</html>"), None);
        assert_eq!(
            refusal_code(br#"{"error":{"code":"a b\nc"}}"#).as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn connect_errors_say_what_to_do() {
        let ports = std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        assert!(
            explain(&ports).contains("--source-addrs"),
            "{}",
            explain(&ports)
        );
        let files = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert!(explain(&files).contains("open-file limit"));
    }

    #[tokio::test]
    async fn bound_sockets_leave_from_their_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source = addrs::source_for(1, 3);
        let (client, accepted) = tokio::join!(connect(addr, source), listener.accept());
        let client = client.unwrap();
        let (_, peer) = accepted.unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(client.local_addr().unwrap().ip(), peer.ip());
    }
}
