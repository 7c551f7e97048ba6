//! The WebSocket gateway at `/ws`.
//!
//! A client authenticates at the upgrade with its access token (`Authorization: Bearer` or
//! `?token=`). Each connection then runs two tasks:
//!
//! - [`connection`]: reads frames, enforces the frame-size and rate limits, decodes commands and
//!   hands them to rooms through the router. Every bad input is answered with an `error` frame
//!   carrying a stable code; the connection stays open.
//! - [`writer`]: drains the connection's bounded outbox into the socket, batching every frame
//!   that is ready into one write, and sends pings, pongs and the close frame.

pub mod connection;
pub mod writer;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use fastwebsockets::upgrade::IncomingUpgrade;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// `?token=` on the upgrade request.
#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /ws`: authenticates, then upgrades. A bad token is a 401 before any upgrade.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
    headers: axum::http::HeaderMap,
    ws: IncomingUpgrade,
) -> Response {
    let token = crate::auth::bearer(&headers)
        .map(str::to_owned)
        .or(query.token);
    let Some(token) = token else {
        return ApiError::unauthorized(
            "missing access token (`Authorization: Bearer` or `?token=`)",
        )
        .into_response();
    };
    let user = match state.auth.verify_access(&token) {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    if state.shutdown.is_cancelled() {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            signaling::ErrorCode::Unavailable,
            "shutting down",
        )
        .into_response();
    }
    let (response, fut) = match ws.upgrade() {
        Ok(pair) => pair,
        Err(e) => {
            return ApiError::invalid(format!("websocket upgrade failed: {e}")).into_response();
        }
    };
    let tracker = state.connections.clone();
    tracker.spawn(async move {
        match fut.await {
            Ok(socket) => connection::run(state, user, socket).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade did not complete"),
        }
    });
    response.map(axum::body::Body::new).into_response()
}
