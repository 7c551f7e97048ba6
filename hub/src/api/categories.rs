//! `/api/v1/workspaces/{id}/categories`: a workspace's task categories. Writes are room
//! operations, like their WebSocket twins (`category_create`, ...): journaled, then broadcast.

use actors::workspace::{Op, Reply};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use signaling::category::{Category, CategoryChanges, CategoryDraft};
use signaling::{CategoryId, WorkspaceId};

use super::{ApiJson, ApiPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

fn category_of(reply: Reply) -> Result<Category, ApiError> {
    match reply {
        Reply::Category(category, _) => Ok(category),
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// `GET /api/v1/workspaces/{id}/categories`: in list order.
#[utoipa::path(get, path = "/workspaces/{id}/categories", tag = "categories", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 200, description = "In list order.", body = Vec<Category>)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<Vec<Category>>, ApiError> {
    match state.router.call(id, user, Op::ListCategories).await? {
        Reply::Categories(categories) => Ok(Json(categories)),
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// `POST /api/v1/workspaces/{id}/categories`.
#[utoipa::path(post, path = "/workspaces/{id}/categories", tag = "categories", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), request_body = CategoryDraft, responses((status = 201, description = "Created.", body = Category)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(mut draft): ApiJson<CategoryDraft>,
) -> Result<(StatusCode, Json<Category>), ApiError> {
    draft.normalize()?;
    let reply = state
        .router
        .call(id, user, Op::CreateCategory(draft))
        .await?;
    Ok((StatusCode::CREATED, Json(category_of(reply)?)))
}

/// `PUT /api/v1/workspaces/{id}/categories/{category_id}`: the fields to change.
#[utoipa::path(put, path = "/workspaces/{id}/categories/{category_id}", tag = "categories", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("category_id" = uuid::Uuid, Path, description = "The category.")), request_body = CategoryChanges, responses((status = 200, description = "Changed.", body = Category)))]
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, category_id)): ApiPath<(WorkspaceId, CategoryId)>,
    ApiJson(mut changes): ApiJson<CategoryChanges>,
) -> Result<Json<Category>, ApiError> {
    changes.normalize()?;
    let op = Op::UpdateCategory {
        category_id,
        changes,
    };
    Ok(Json(category_of(state.router.call(id, user, op).await?)?))
}

/// `DELETE /api/v1/workspaces/{id}/categories/{category_id}`: its tasks keep existing, with no
/// category.
#[utoipa::path(delete, path = "/workspaces/{id}/categories/{category_id}", tag = "categories", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("category_id" = uuid::Uuid, Path, description = "The category.")), responses((status = 204, description = "Deleted; its tasks have no category now.")))]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, category_id)): ApiPath<(WorkspaceId, CategoryId)>,
) -> Result<StatusCode, ApiError> {
    state
        .router
        .call(id, user, Op::DeleteCategory(category_id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
