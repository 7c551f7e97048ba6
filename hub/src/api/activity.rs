//! `/api/v1/workspaces/{id}/activity` and `…/analytics/*`: the workspace's activity feed (one
//! entry per durable event, kept for `HUB_ACTIVITY_RETENTION_DAYS`) and the board's analytics,
//! read from the feed and the board index once the room has committed what it acknowledged.

use axum::Json;
use axum::extract::State;
use persistence::{ActivityRow, Day, Overview, Throughput};
use serde::{Deserialize, Serialize};
use signaling::WorkspaceId;

use super::workspaces::describe;
use super::{ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// The query of the feed.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// Entries older than this offset (the `next` of the previous page).
    #[serde(default)]
    before: Option<u64>,
    /// 1–200, 50 by default.
    #[serde(default)]
    limit: Option<u32>,
}

/// A page of the feed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    /// Newest first.
    activity: Vec<ActivityRow>,
    /// The `before` of the next page; `null` on the last one.
    next: Option<u64>,
}

/// Tasks created and completed per day.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Trends {
    /// Oldest first, one per day of the window (UTC).
    days: Vec<Day>,
}

/// Each member's throughput.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Productivity {
    /// Busiest first.
    members: Vec<Throughput>,
}

/// `GET /api/v1/workspaces/{id}/activity?before=<offset>&limit=<n>`: newest first,
/// `{"activity": [{"seq", "at", "actor", "kind", "subject", "detail"}], "next": offset | null}`
/// (pass `next` as `before` for the page after).
#[utoipa::path(get, path = "/workspaces/{id}/activity", tag = "activity", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), FeedParams), responses((status = 200, description = "Who did what, newest first.", body = FeedPage)))]
pub async fn feed(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(params): ApiQuery<FeedParams>,
) -> Result<Json<FeedPage>, ApiError> {
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
    Ok(Json(FeedPage {
        activity: entries,
        next,
    }))
}

/// The window of the trends and productivity.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// How many days back: 1–365, 30 by default.
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
#[utoipa::path(get, path = "/workspaces/{id}/analytics/overview", tag = "activity", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 200, description = "Tasks by status and priority, overdue, mean completion time.", body = Overview)))]
pub async fn overview(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<Overview>, ApiError> {
    describe(&state, id, user).await?;
    Ok(Json(state.store.overview(id).await?))
}

/// `GET /api/v1/workspaces/{id}/analytics/trends?days=<n>`: tasks created and completed per day
/// (UTC) over the last `n` days (1–365, 30).
#[utoipa::path(get, path = "/workspaces/{id}/analytics/trends", tag = "activity", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), Window), responses((status = 200, description = "Created and completed per day.", body = Trends)))]
pub async fn trends(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(window): ApiQuery<Window>,
) -> Result<Json<Trends>, ApiError> {
    let days = window.days()?;
    describe(&state, id, user).await?;
    let days = state.store.trends(id, days).await?;
    Ok(Json(Trends { days }))
}

/// `GET /api/v1/workspaces/{id}/analytics/productivity?days=<n>`: per member, tasks completed,
/// created and other changes over the last `n` days, busiest first.
#[utoipa::path(get, path = "/workspaces/{id}/analytics/productivity", tag = "activity", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), Window), responses((status = 200, description = "Per member: completed, created, other changes.", body = Productivity)))]
pub async fn productivity(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(window): ApiQuery<Window>,
) -> Result<Json<Productivity>, ApiError> {
    let days = window.days()?;
    describe(&state, id, user).await?;
    let members = state.store.productivity(id, days).await?;
    Ok(Json(Productivity { members }))
}
