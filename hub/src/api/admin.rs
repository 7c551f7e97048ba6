//! `/api/v1/admin/*`: the operator's routes, behind `HUB_ADMIN_TOKEN` ([`Operator`]).
//!
//! - `GET /admin/nodes`: the cluster's live nodes (this one alone when not in cluster mode).
//! - `POST /admin/users/{id}/disable`: tokens refused, refresh tokens revoked, sockets closed.
//! - `POST /admin/users/{id}/enable`: the account may sign in again.
//! - `DELETE /admin/users/{id}`: the account is deleted as by the user themselves.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use signaling::{ErrorCode, UserId};

use super::ApiPath;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::state::AppState;

fn no_such_account() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such account",
    )
}

/// `GET /api/v1/admin/nodes`: `{"cluster": bool, "node_id", "nodes": [{id, addr, started_at_ms,
/// heartbeat_at_ms, rooms, connections}]}`, sorted by id. Alone (no `REDIS_URL`), the one node is
/// this process, with its id `local`.
pub async fn nodes(State(state): State<AppState>, _: Operator) -> Json<Value> {
    match &state.cluster {
        Some(cluster) => Json(json!({
            "cluster": true,
            "node_id": cluster.node_id(),
            "nodes": &*cluster.live_nodes(),
        })),
        None => Json(json!({
            "cluster": false,
            "node_id": "local",
            "nodes": [{
                "id": "local",
                "addr": state.config.listen.to_string(),
                "rooms": state.router.active_rooms(),
                "connections": state.connections.len(),
            }],
        })),
    }
}

/// `POST /api/v1/admin/users/{id}/disable`.
pub async fn disable_user(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(user): ApiPath<UserId>,
) -> Result<StatusCode, ApiError> {
    if crate::accounts::set_disabled(&state, user, true).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_account())
    }
}

/// `POST /api/v1/admin/users/{id}/enable`.
pub async fn enable_user(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(user): ApiPath<UserId>,
) -> Result<StatusCode, ApiError> {
    if crate::accounts::set_disabled(&state, user, false).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_account())
    }
}

/// `DELETE /api/v1/admin/users/{id}`.
pub async fn delete_user(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(user): ApiPath<UserId>,
) -> Result<StatusCode, ApiError> {
    crate::accounts::delete(&state, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
