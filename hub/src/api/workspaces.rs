//! `/api/v1/workspaces`: workspaces and their members. Reads of a workspace and every change to
//! it go through its room, which checks the caller's role and tells connected members.

use actors::workspace::{Op, Reply, RoomError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use signaling::rest::{AddMemberBody, NameBody, RoleBody};
use signaling::workspace::{Member, Role};
use signaling::{UserId, WorkspaceId};

use super::{ApiJson, ApiPath};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::ClientIp;
use crate::limits::Quota;
use crate::state::AppState;

/// A workspace in a list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceSummary {
    id: WorkspaceId,
    name: String,
    role: Role,
    created_at: DateTime<Utc>,
}

/// A workspace in detail.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceDetail {
    id: WorkspaceId,
    pub(crate) name: String,
    pub(crate) role: Role,
    members: Vec<Member>,
    pub(crate) offset: u64,
}

/// `GET /api/v1/workspaces`: the caller's workspaces.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces", security(("user" = [])), responses((status = 200, description = "The caller's workspaces.", body = Vec<WorkspaceSummary>)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<WorkspaceSummary>>, ApiError> {
    let list = state.store.workspaces_for_user(user).await?;
    Ok(Json(
        list.into_iter()
            .map(|(w, role)| WorkspaceSummary {
                id: w.id,
                name: w.name,
                role,
                created_at: w.created_at,
            })
            .collect(),
    ))
}

/// `POST /api/v1/workspaces`: creates a workspace owned by the caller.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", security(("user" = [])), request_body = NameBody, responses((status = 201, description = "Created, owned by the caller.", body = WorkspaceSummary)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<(StatusCode, Json<WorkspaceSummary>), ApiError> {
    let name = body.normalize()?;
    state.limits.create(user, Quota::Workspaces).await?;
    let w = state.store.create_workspace(&name, user).await?;
    Ok((
        StatusCode::CREATED,
        Json(WorkspaceSummary {
            id: w.id,
            name: w.name,
            role: Role::Owner,
            created_at: w.created_at,
        }),
    ))
}

/// The workspace as the caller may see it, from its room: refuses non-members (`404
/// not_a_member`), loads the room if it was not running, and answers only once the room's
/// acknowledged writes are committed (so a read of the store after it sees them).
pub(crate) async fn describe(
    state: &AppState,
    id: WorkspaceId,
    user: UserId,
) -> Result<WorkspaceDetail, ApiError> {
    match state.router.call(id, user, Op::Describe).await? {
        Reply::Workspace {
            name,
            role,
            members,
            offset,
        } => Ok(WorkspaceDetail {
            id,
            name,
            role,
            members,
            offset,
        }),
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// `GET /api/v1/workspaces/{id}`.
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 200, description = "The workspace as the caller may see it.", body = WorkspaceDetail)))]
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<WorkspaceDetail>, ApiError> {
    Ok(Json(describe(&state, id, user).await?))
}

/// `PUT /api/v1/workspaces/{id}`: renames (owners and admins).
#[utoipa::path(put, path = "/workspaces/{id}", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), request_body = NameBody, responses((status = 200, description = "Renamed (owners and admins).", body = WorkspaceDetail)))]
pub async fn rename(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Json<WorkspaceDetail>, ApiError> {
    let name = body.normalize()?;
    state.router.call(id, user, Op::Rename(name)).await?;
    Ok(Json(describe(&state, id, user).await?))
}

/// `DELETE /api/v1/workspaces/{id}` (owners).
#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 204, description = "Deleted (owners).")))]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<StatusCode, ApiError> {
    state.router.call(id, user, Op::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/workspaces/{id}/members`.
#[utoipa::path(get, path = "/workspaces/{id}/members", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 200, description = "The members.", body = Vec<Member>)))]
pub async fn members(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<Vec<Member>>, ApiError> {
    Ok(Json(describe(&state, id, user).await?.members))
}

/// `POST /api/v1/workspaces/{id}/members`: adds an existing account by email (owners and
/// admins).
#[utoipa::path(post, path = "/workspaces/{id}/members", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), request_body = AddMemberBody, responses((status = 201, description = "Added (owners and admins).", body = Member)))]
pub async fn add_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    let body = body.normalize()?;
    // Check the caller first, so that non-members cannot probe which emails have accounts.
    let caller = describe(&state, id, user).await?;
    if !caller.role.can_manage_members() {
        return Err(RoomError::Forbidden("only owners and admins manage the workspace").into());
    }
    // Managers can still probe; their misses are throttled (see `Limits::begin_lookup`).
    state.limits.begin_lookup(user, ip).await?;
    let account = match state.store.user_by_email(&body.email).await? {
        Some(account) if account.disabled_at.is_none() => account,
        _ => return Err(RoomError::UserNotFound.into()),
    };
    state.limits.lookup_found(user, ip).await;
    let member = Member {
        user_id: account.id,
        role: body.role,
        name: account.name,
        email: account.email,
    };
    state
        .router
        .call(id, user, Op::AddMember(member.clone()))
        .await?;
    Ok((StatusCode::CREATED, Json(member)))
}

/// `PUT /api/v1/workspaces/{id}/members/{user_id}`: changes a role.
#[utoipa::path(put, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("user_id" = uuid::Uuid, Path, description = "The member (an account id).")), request_body = RoleBody, responses((status = 200, description = "The member with the new role.", body = Member)))]
pub async fn set_role(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, target)): ApiPath<(WorkspaceId, UserId)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Json<Member>, ApiError> {
    state
        .router
        .call(
            id,
            user,
            Op::SetRole {
                user: target,
                role: body.role,
            },
        )
        .await?;
    let detail = describe(&state, id, user).await?;
    let member = detail
        .members
        .into_iter()
        .find(|m| m.user_id == target)
        .ok_or(RoomError::UserNotFound)?;
    Ok(Json(member))
}

/// `DELETE /api/v1/workspaces/{id}/members/{user_id}`: removes a member.
#[utoipa::path(delete, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("user_id" = uuid::Uuid, Path, description = "The member (an account id).")), responses((status = 204, description = "Removed.")))]
pub async fn remove_member(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, target)): ApiPath<(WorkspaceId, UserId)>,
) -> Result<StatusCode, ApiError> {
    state
        .router
        .call(id, user, Op::RemoveMember(target))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/workspaces/{id}/leave`: the caller leaves (not the last owner).
#[utoipa::path(post, path = "/workspaces/{id}/leave", tag = "workspaces", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 204, description = "The caller left.")))]
pub async fn leave(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<StatusCode, ApiError> {
    state.router.call(id, user, Op::RemoveMember(user)).await?;
    Ok(StatusCode::NO_CONTENT)
}
