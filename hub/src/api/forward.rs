//! REST requests for a room that runs on another node of the cluster are passed to that node
//! whole, and its answer is passed back: a handler always runs where its room does, so every
//! route works on every node with no change to the handlers.
//!
//! The room is read off the path: `/api/v1/workspaces/{id}/…` and `/api/v1/sessions/{id}/…`,
//! `/api/v1/questions/{id}/…` (the question's session, from the store), and the fault-injection
//! routes. The node passing a request on has already charged the client's rate limits; the
//! request carries its proof (`x-hub-forwarded`), and the node running the room neither charges
//! it again nor passes it on a second time.

use std::str::FromStr;

use actors::cluster::link::Place;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use signaling::{ErrorCode, RoomKey, SessionId, WorkspaceId};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The header a node puts on a request it passes on.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-hub-forwarded");
/// The client's address, as the first node saw it (trusted only with [`FORWARDED`]).
pub const CLIENT_IP: HeaderName = HeaderName::from_static("x-hub-client-ip");

/// True when the request was passed on by a node of this cluster.
pub fn is_forwarded(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    match (
        &state.links,
        headers.get(&FORWARDED).and_then(|v| v.to_str().ok()),
    ) {
        (Some(links), Some(proof)) => links.check_forward_proof(proof),
        _ => false,
    }
}

/// Passes the request to the node running its room, when that is another node.
pub async fn to_owner(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(links) = state.links.clone() else {
        return next.run(req).await;
    };
    if is_forwarded(&state, req.headers()) {
        return next.run(req).await;
    }
    let Some(room) = room_of(&state, req.uri().path()).await else {
        return next.run(req).await;
    };
    if state.router.runs(room) {
        return next.run(req).await;
    }
    let node = match links.place_of(room).await {
        Ok(Place::Here) => return next.run(req).await,
        Ok(Place::Node(node)) => node,
        Err(e) => {
            tracing::debug!(%room, error = %e, "where the room runs is unknown");
            return unavailable();
        }
    };
    let Some(info) = links.cluster().live_node(&node) else {
        return unavailable();
    };
    match pass(&state, &info.addr, &links.forward_proof(), req).await {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(node, error = %e, "passing a request to the room's node failed");
            links.forget_place(room);
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "the room's node cannot be reached; retry",
    )
    .into_response()
}

/// The room a path names, if it names one.
async fn room_of(state: &AppState, path: &str) -> Option<RoomKey> {
    let mut parts = path.trim_start_matches('/').split('/');
    let (kind, id) = match (parts.next()?, parts.next()?) {
        ("api", "v1") => (parts.next()?, parts.next()?),
        ("debug", kind) => (kind, parts.next()?),
        _ => return None,
    };
    let id = Uuid::from_str(id).ok()?;
    match kind {
        "workspaces" | "rooms" => Some(RoomKey::Workspace(WorkspaceId::from_uuid(id))),
        "sessions" => Some(RoomKey::Session(SessionId::from_uuid(id))),
        "questions" => {
            let session = state.store.question_session(id).await.ok()??;
            Some(RoomKey::Session(session))
        }
        _ => None,
    }
}

/// Sends the request to `addr` and returns its answer.
async fn pass(state: &AppState, addr: &str, proof: &str, req: Request) -> Result<Response, String> {
    let client_ip = crate::http::client_ip_of(&req, state.config.http.trust_forwarded_for);
    let (mut parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, state.config.http.max_body_bytes)
        .await
        .map_err(|e| e.to_string())?;
    parts.headers.remove(axum::http::header::CONNECTION);
    parts.headers.insert(
        FORWARDED,
        HeaderValue::from_str(proof).map_err(|e| e.to_string())?,
    );
    if let Ok(ip) = HeaderValue::from_str(&client_ip.0.to_string()) {
        parts.headers.insert(CLIENT_IP, ip);
    }
    let mut forwarded = Request::from_parts(parts, Body::from(body));
    let path = forwarded
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *forwarded.uri_mut() = path
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    let response = send(addr, forwarded).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// Sends one request to the node at `addr` (an operator call passed on: the same bearer token)
/// and returns its status and JSON body.
///
/// # Errors
/// The node could not be reached, or answered with something that is not JSON.
pub async fn call_node(
    addr: &str,
    method: axum::http::Method,
    path: &str,
    bearer: &str,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value), String> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(axum::http::header::HOST, addr)
        .header(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {bearer}"),
        );
    let body = match body {
        Some(v) => {
            req = req.header(axum::http::header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let req = req.body(body).map_err(|e| e.to_string())?;
    let response = send(addr, req).await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
    };
    Ok((status, value))
}

/// Sends `req` to the node at `addr` on a connection of its own (one request each: forwarding is
/// for REST and operator calls, not the per-event path); connecting may take 1 s, the answer 10 s.
async fn send(
    addr: &str,
    req: Request,
) -> Result<axum::http::Response<hyper::body::Incoming>, String> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    tokio::time::timeout(std::time::Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "the node did not answer in time".to_owned())?
        .map_err(|e| e.to_string())
}
