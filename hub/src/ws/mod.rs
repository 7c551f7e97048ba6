//! The WebSocket gateway at `/ws`.
//!
//! A client authenticates at the upgrade with its access token (`Authorization: Bearer` or
//! `?token=`); the account must still exist and be enabled (read from the store unless the user
//! already has an open connection here, see [`registry::Registry::vouches_for`]), and the user
//! and the client's address must be under their connection caps. Each connection then runs two tasks:
//!
//! - [`connection`]: reads frames (reassembling fragments under the size budget, see
//!   [`assemble`]), enforces the rate limit, decodes commands and hands them to rooms through
//!   the router. Every bad input is answered with an `error` frame carrying a stable code; the
//!   connection stays open.
//! - [`writer`]: drains the connection's bounded outbox into the socket, batching every frame
//!   that is ready into one write, and sends pings, pongs and the close frame. A write that
//!   stalls past its deadline ends the connection.
//!
//! [`registry`] counts the open connections; [`socket`] is the shared socket that lets the
//! connection task end it even when the peer stops reading.

pub mod assemble;
pub mod connection;
pub mod registry;
pub mod socket;
pub mod writer;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fastwebsockets::upgrade::IncomingUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use signaling::{ErrorCode, UserId};

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::http::{ClientIp, WriteDeadline};
use crate::limits::Access;
use crate::state::AppState;
use registry::CapExceeded;

/// How long the upgraded socket may take to be handed over after the 101 response.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// `?token=` on the upgrade request.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The access token (or a guest's session token), when not sent as
    /// `Authorization: Bearer` (browsers cannot set headers on a WebSocket).
    token: Option<String>,
}

/// `GET /ws`: checks the request, the token, the account and the caps, then upgrades. Every
/// refusal is an HTTP error with the usual JSON body, before any upgrade.
#[utoipa::path(get, path = "/ws", tag = "ops", params(TokenQuery),
    security(("user" = []), ("guest" = [])),
    responses((status = 101, description = "Switched to the WebSocket protocol of \
        `docs/protocol.md`.")))]
pub async fn upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
    ws: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    let Ok(ws) = ws else {
        return ApiError::invalid(
            "expected a WebSocket upgrade (`Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`)",
        )
        .into_response();
    };
    if let Err(e) = state.limits.request_from(ip, Access::Read).await {
        state.metrics.rate_limited.increment(1);
        return e.into_response();
    }
    let query_token = query.ok().and_then(|Query(q)| q.token);
    let Some(token) = crate::auth::bearer(&headers)
        .map(str::to_owned)
        .or(query_token)
    else {
        return ApiError::unauthorized(
            "missing access token (`Authorization: Bearer` or `?token=`)",
        )
        .into_response();
    };
    // An access token, or else a guest's token for one conference session (no account to
    // check: the token is all there is).
    let (user, guest, expires) = match state.auth.access_claims(&token) {
        Ok(claims) => (claims.sub, None, Some(claims.exp)),
        Err(e) => match state.auth.verify_guest_any(&token) {
            Ok((session, attendee)) => (UserId::from_uuid(attendee.as_uuid()), Some(session), None),
            Err(_) => return e.into_response(),
        },
    };
    // A user already connected here was found enabled then, and would have been closed since
    // if not (see `Registry::vouches_for`); anyone else is read from the store.
    let vouched = guest.is_some() || state.registry.vouches_for(user);
    if !vouched && let Err(e) = Authenticated::active(&state, user).await {
        return e.into_response();
    }
    if state.shutdown.is_cancelled() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "shutting down",
        )
        .into_response();
    }
    let admission = match state.registry.admit(user, ip) {
        Ok(a) => a,
        Err(refused) => return refused_connection(&state, refused).into_response(),
    };
    let admission = match &state.cluster {
        Some(cluster) => match admission.count_in_cluster(cluster).await {
            Ok(a) => a,
            Err(refused) => return refused_connection(&state, refused).into_response(),
        },
        None => admission,
    };
    if !vouched && guest.is_none() {
        state.registry.account_read(user);
    }
    let Ok((response, fut)) = ws.upgrade() else {
        return ApiError::invalid("websocket upgrade failed").into_response();
    };
    let tracker = state.connections.clone();
    tracker.spawn(async move {
        let upgraded = match tokio::time::timeout(HANDOVER_TIMEOUT, fut).await {
            Ok(Ok(ws)) => ws.into_inner().into_inner(),
            Ok(Err(e)) => return tracing::debug!(error = %e, "websocket upgrade did not complete"),
            Err(_) => return tracing::debug!("websocket upgrade timed out"),
        };
        // The listener hands hyper its own socket type; take the TCP stream back whole.
        match upgraded.downcast::<TokioIo<WriteDeadline>>() {
            Ok(parts) => {
                let tcp = parts.io.into_inner().into_inner();
                let opened = connection::Opened {
                    user,
                    guest,
                    expires,
                };
                connection::run(state, opened, admission, tcp, parts.read_buf).await;
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
        }
    });
    response.map(axum::body::Body::new).into_response()
}

/// The answer to an upgrade the registry refused.
fn refused_connection(state: &AppState, refused: CapExceeded) -> ApiError {
    let too_many = |message: String| {
        state.metrics.rate_limited.increment(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyConnections,
            message,
        )
    };
    match refused {
        CapExceeded::PerUser(n) => too_many(format!("at most {n} open connections per user")),
        CapExceeded::PerAddress(n) => too_many(format!("at most {n} open connections per address")),
        CapExceeded::Revoked => ApiError::unauthorized("access revoked"),
    }
}
