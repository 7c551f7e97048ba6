//! Operational routes: liveness, readiness, metrics, and (when enabled) fault injection.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use signaling::{ErrorCode, WorkspaceId};

use super::ApiPath;
use crate::error::{ApiError, ErrorObject};
use crate::state::AppState;

/// The answer of `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /health`: the process is up.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "The process is up.", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The answer of `GET /ready`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `up` or `down`.
    database: &'static str,
    /// In cluster mode: `up` or `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'static str>,
    /// When unavailable: why (`unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObject>,
}

/// `GET /ready`: the database answers, and in cluster mode Redis too (503 otherwise).
#[utoipa::path(get, path = "/ready", tag = "ops", responses(
    (status = 200, description = "Ready to serve.", body = Readiness),
    (status = 503, description = "The database or Redis does not answer, or the node drains.",
        body = Readiness),
))]
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
    let mut body = Readiness {
        status: "ready",
        database: up(database.is_ok()),
        redis: redis.as_ref().map(|r| up(r.is_ok())),
        error: None,
    };
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
            body.status = "unavailable";
            body.error = Some(ErrorObject {
                code: ErrorCode::Unavailable,
                message: message.into(),
                details: None,
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Prometheus text exposition.", content_type = "text/plain",
        body = String),
))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let (Some(cluster), Some(links)) = (&state.cluster, &state.links) {
        state.metrics.cluster.update(cluster, links);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.handle.render(),
    )
}

/// `GET /openapi.json`: this API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses(
    (status = 200, description = "The OpenAPI 3.1 document of every route.",
        content_type = "application/json", body = Object),
))]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.get().cloned().unwrap_or_default(),
    )
}

/// `POST /debug/rooms/{id}/crash`: panics the room (only with `HUB_FAULT_INJECTION`).
#[utoipa::path(post, path = "/debug/rooms/{id}/crash", tag = "ops",
    params(("id" = uuid::Uuid, Path, description = "The workspace.")),
    responses((status = 202, description = "The room panicked; its supervisor restarts it.")))]
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
#[utoipa::path(post, path = "/debug/sessions/{id}/crash", tag = "ops",
    params(("id" = uuid::Uuid, Path, description = "The session.")),
    responses((status = 202, description = "The room panicked; its supervisor restarts it.")))]
pub async fn crash_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<signaling::SessionId>,
) -> StatusCode {
    let _ = state.router.crash(signaling::RoomKey::Session(id)).await;
    StatusCode::ACCEPTED
}

/// The message of a path no route takes.
pub const NO_SUCH_ROUTE: &str = "no such route";

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, NO_SUCH_ROUTE)
}

/// A route that exists, with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}
