//! `/api/v1/workspaces/{id}/activity` and `…/analytics/*`: the workspace's activity feed (one
//! entry per durable event, kept for `HUB_ACTIVITY_RETENTION_DAYS`) and the board's analytics,
//! read from the feed and the board index once the room has committed what it acknowledged.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use signaling::WorkspaceId;

use super::workspaces::describe;
use super::{ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// The query of the feed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/workspaces/{id}/activity?before=<offset>&limit=<n>`: newest first,
/// `{"activity": [{"seq", "at", "actor", "kind", "subject", "detail"}], "next": offset | null}`
/// (pass `next` as `before` for the page after).
pub async fn feed(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(params): ApiQuery<FeedParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit: must be between 1 and 200"));
    }
    describe(&state, id, user).await?;
    let entries = state
        .store
        .workspace_activity(id, params.before, limit)
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({"activity": entries, "next": next})))
}

/// The window of the trends and productivity.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(default)]
    days: Option<u32>,
}

impl Window {
    fn days(&self) -> Result<u32, ApiError> {
        let days = self.days.unwrap_or(30);
        if (1..=365).contains(&days) {
            Ok(days)
        } else {
            Err(ApiError::invalid("days: must be between 1 and 365"))
        }
    }
}

/// `GET /api/v1/workspaces/{id}/analytics/overview`: tasks by status and priority, overdue,
/// mean completion time.
pub async fn overview(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<Value>, ApiError> {
    describe(&state, id, user).await?;
    let o = state.store.overview(id).await?;
    Ok(Json(
        serde_json::to_value(o).map_err(|e| ApiError::internal(&e))?,
    ))
}

/// `GET /api/v1/workspaces/{id}/analytics/trends?days=<n>`: tasks created and completed per day
/// (UTC) over the last `n` days (1–365, 30).
pub async fn trends(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(window): ApiQuery<Window>,
) -> Result<Json<Value>, ApiError> {
    let days = window.days()?;
    describe(&state, id, user).await?;
    let trend = state.store.trends(id, days).await?;
    Ok(Json(json!({"days": trend})))
}

/// `GET /api/v1/workspaces/{id}/analytics/productivity?days=<n>`: per member, tasks completed,
/// created and other changes over the last `n` days, busiest first.
pub async fn productivity(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(window): ApiQuery<Window>,
) -> Result<Json<Value>, ApiError> {
    let days = window.days()?;
    describe(&state, id, user).await?;
    let members = state.store.productivity(id, days).await?;
    Ok(Json(json!({"members": members})))
}
