//! Operational routes: liveness, readiness, metrics, and (when enabled) fault injection.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use signaling::{ErrorCode, WorkspaceId};

use super::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /health`: the process is up.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: the database answers, and in cluster mode Redis too (503 otherwise).
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.store.ping().await;
    if let Err(e) = &database {
        tracing::warn!(error = %e, "readiness check: the database does not answer");
    }
    let redis = match &state.cluster {
        Some(cluster) => Some(cluster.ping().await),
        None => None,
    };
    if let Some(Err(e)) = &redis {
        tracing::warn!(error = %e, "readiness check: redis does not answer");
    }
    let up = |ok: bool| if ok { "up" } else { "down" };
    let mut body = json!({ "status": "ready", "database": up(database.is_ok()) });
    if let Some(r) = &redis {
        body["redis"] = json!(up(r.is_ok()));
    }
    let draining = state.shutdown.is_cancelled()
        || state.drain.is_cancelled()
        || state.cluster.as_ref().is_some_and(|c| c.is_draining());
    let down = match (&database, &redis) {
        _ if draining => Some("this node is draining"),
        (Err(_), _) => Some("the database does not answer"),
        (Ok(()), Some(Err(_))) => Some("redis does not answer"),
        _ => None,
    };
    match down {
        None => (StatusCode::OK, Json(body)),
        Some(message) => {
            body["status"] = json!("unavailable");
            body["error"] = json!({"code": ErrorCode::Unavailable, "message": message});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let (Some(cluster), Some(links)) = (&state.cluster, &state.links) {
        state.metrics.cluster.update(cluster, links);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.handle.render(),
    )
}

/// `POST /debug/rooms/{id}/crash`: panics the room (only with `HUB_FAULT_INJECTION`).
pub async fn crash_room(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<StatusCode, ApiError> {
    state
        .router
        .crash(signaling::RoomKey::Workspace(id))
        .await
        .map_err(|e| ApiError::from(actors::workspace::RoomError::from(e)))?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /debug/sessions/{id}/crash` (fault injection only): the session room panics.
pub async fn crash_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<signaling::SessionId>,
) -> StatusCode {
    let _ = state.router.crash(signaling::RoomKey::Session(id)).await;
    StatusCode::ACCEPTED
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}

/// A route that exists, with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}
