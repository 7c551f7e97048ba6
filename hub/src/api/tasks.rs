//! `/api/v1/workspaces/{id}/tasks`: the task board over REST. Every write is a room operation,
//! exactly like its WebSocket twin: journaled, then broadcast to the room's members.

use actors::workspace::{Op, Reply};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use signaling::task::{Task, TaskChanges, TaskDraft};
use signaling::{TaskId, WorkspaceId};

use super::{ApiJson, ApiPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

fn task_of(reply: Reply) -> Result<Task, ApiError> {
    match reply {
        Reply::Task(task, _) => Ok(task),
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// `GET /api/v1/workspaces/{id}/tasks`: in board order.
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<Vec<Task>>, ApiError> {
    match state.router.call(id, user, Op::ListTasks).await? {
        Reply::Tasks(tasks) => Ok(Json(tasks)),
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// `POST /api/v1/workspaces/{id}/tasks`.
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(mut draft): ApiJson<TaskDraft>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    draft.normalize()?;
    let task = task_of(state.router.call(id, user, Op::CreateTask(draft)).await?)?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// `GET /api/v1/workspaces/{id}/tasks/{task_id}`.
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(task_of(
        state.router.call(id, user, Op::GetTask(task_id)).await?,
    )?))
}

/// `PUT /api/v1/workspaces/{id}/tasks/{task_id}`: the fields to change, and optionally
/// `base_version` (refused with 409 `version_conflict` when stale; without it, last writer wins).
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
    ApiJson(mut body): ApiJson<Map<String, Value>>,
) -> Result<Json<Task>, ApiError> {
    let base_version = match body.remove("base_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ApiError::invalid("base_version: must be a non-negative integer"))?,
        ),
    };
    // Parsed again from the rest of the body so that a bad field is named like everywhere else.
    let rest = serde_json::to_vec(&Value::Object(body)).map_err(|e| ApiError::internal(&e))?;
    let mut changes: TaskChanges = signaling::json::from_slice(&rest)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message))?;
    changes.normalize()?;
    let op = Op::UpdateTask {
        task_id,
        base_version,
        changes,
    };
    Ok(Json(task_of(state.router.call(id, user, op).await?)?))
}

/// `POST /api/v1/workspaces/{id}/tasks/{task_id}/complete`.
pub async fn complete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
) -> Result<Json<Task>, ApiError> {
    let op = Op::UpdateTask {
        task_id,
        base_version: None,
        changes: TaskChanges {
            completed: Some(true),
            ..TaskChanges::default()
        },
    };
    Ok(Json(task_of(state.router.call(id, user, op).await?)?))
}

/// `DELETE /api/v1/workspaces/{id}/tasks/{task_id}`.
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
) -> Result<StatusCode, ApiError> {
    state.router.call(id, user, Op::DeleteTask(task_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
