//! Opening one connection: TCP, the WebSocket upgrade (fastwebsockets' client handshake over
//! hyper), the hub's `hello`, `join_workspace` and, for `--op task_update`, the connection's own
//! task. The result is a [`Session`] ready for the load loop in `client.rs`.
//!
//! The setup is strict request/reply on the unsplit socket, with one timeout around all of it;
//! frames that are not the awaited reply (the snapshot, presence of others joining, their tasks
//! being created) are read and dropped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError, handshake};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper::{Request, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use signaling::client::ClientMsg;
use signaling::server::Limits;
use signaling::{TaskId, WorkspaceId};
use tokio::net::TcpStream;

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

/// Opens connections to one hub; the address is resolved once for all of them.
pub struct Dialer {
    target: Target,
    addrs: Vec<SocketAddr>,
}

impl Dialer {
    /// Resolves the hub's host.
    ///
    /// # Errors
    /// When the name does not resolve.
    pub async fn resolve(target: &Target) -> anyhow::Result<Dialer> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .with_context(|| format!("resolving {}", target.host))?
            .collect();
        anyhow::ensure!(!addrs.is_empty(), "{} resolves to no address", target.host);
        Ok(Dialer {
            target: target.clone(),
            addrs,
        })
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
            let ws = self.upgrade(token).await?;
            setup(ws, workspace, op, conn).await
        })
        .await
        .map_err(|_| fail("timeout", format!("not joined within {SETUP_TIMEOUT:?}")))?
    }

    async fn upgrade(&self, token: &str) -> Result<Socket, OpenError> {
        let tcp = self.tcp().await?;
        let req = Request::builder()
            .method("GET")
            .uri(self.target.ws_path(token))
            .header(header::HOST, &self.target.authority)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "upgrade")
            .header(header::SEC_WEBSOCKET_KEY, handshake::generate_key())
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail("handshake", e))?;
        let (ws, _response) = handshake::client(&TokioExecutor::new(), req, tcp)
            .await
            .map_err(|e| match e {
                WebSocketError::InvalidStatusCode(code) => {
                    fail("handshake", format!("HTTP {code}"))
                }
                other => fail("handshake", other),
            })?;
        Ok(ws)
    }

    /// Connects to the first address that accepts.
    async fn tcp(&self) -> Result<TcpStream, OpenError> {
        let mut last = None;
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    // Latency is the point of the run: no Nagle delay on small frames.
                    tcp.set_nodelay(true).map_err(|e| fail("tcp", e))?;
                    return Ok(tcp);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if e.raw_os_error() == Some(24) => fail(
                "tcp",
                format!("{e} (raise the open-file limit: `ulimit -n`)"),
            ),
            Some(e) => fail("tcp", e),
            None => fail("tcp", "no address"),
        })
    }
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

async fn read_hello(ws: &mut Socket) -> Result<Option<Limits>, OpenError> {
    let frame = next_text(ws, "hello").await?;
    let f = Incoming::parse(&frame.payload).map_err(|e| fail("hello", e))?;
    match &*f.kind {
        "hello" => Ok(f.limits),
        "error" => Err(fail("hello", f.code.as_deref().unwrap_or("error"))),
        other => Err(fail("hello", format!("expected hello, got `{other}`"))),
    }
}

/// Sends a command and waits for its `ack`; the acked task, if the ack carries one.
async fn request(
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
