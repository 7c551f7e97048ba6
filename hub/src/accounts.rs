//! What disabling or deleting an account does, wherever it is asked (the user deleting their own
//! account, or an operator).
//!
//! Disabling: its open WebSocket connections close with 4001 and new ones are refused (first,
//! before the store changes, so that no open connection can vouch for a new one afterwards),
//! the account's refresh tokens are revoked, and every authenticated request with one of its
//! access tokens is refused from now on (each request checks the account, see
//! `auth::Authenticated`).
//!
//! Deleting: first the account must not be the only owner of a workspace that has other members
//! (`409 last_owner`, naming them: ownership has to be handed over first). Then it is disabled
//! as above, so nothing it holds can act meanwhile; it leaves each of its workspaces through the
//! workspace's room (members see `member_left`), a workspace it was alone in is deleted; and
//! finally the account row goes.

use actors::CloseReason;
use actors::workspace::{Op, Reply, RoomError};
use axum::http::StatusCode;
use persistence::AccountStatus;
use serde_json::json;
use signaling::workspace::Role;
use signaling::{ErrorCode, UserId, WorkspaceId};

use crate::error::ApiError;
use crate::state::AppState;

/// What leaving one workspace takes.
enum Departure {
    /// The account is its only member: the workspace is deleted.
    Alone(WorkspaceId),
    /// Others stay: the account leaves.
    Leave(WorkspaceId),
    /// The account is its only owner and others remain: it cannot leave yet.
    Blocked(WorkspaceId),
}

/// Disables an account (or enables it again). Returns false when there is no such account.
///
/// # Errors
/// Storage failed.
pub async fn set_disabled(
    state: &AppState,
    user: UserId,
    disabled: bool,
) -> Result<bool, ApiError> {
    if !disabled {
        let found = state.store.set_disabled(user, false).await?;
        if found {
            state.registry.reopen_user(user);
        }
        return Ok(found);
    }
    // Closed (and refused for a while) before the store says so: a connection vouched for by
    // an open one (`Registry::vouches_for`) can never outlive the disabling, even if this
    // request is cancelled between the two steps.
    let closed = state.registry.close_user(user, CloseReason::ACCESS_REVOKED);
    match state.store.set_disabled(user, true).await {
        Ok(true) => {
            tracing::info!(%user, closed, "account disabled");
            Ok(true)
        }
        Ok(false) => {
            state.registry.reopen_user(user);
            Ok(false)
        }
        Err(e) => {
            state.registry.reopen_user(user);
            Err(e.into())
        }
    }
}

/// Deletes an account (see the module docs). The work runs in a task of its own, so that it
/// ends (or puts the account back as it was) even if the request that asked for it is
/// cancelled, say by its deadline.
///
/// # Errors
/// `409 last_owner` with the workspaces that block it, `404 not_found` when there is no such
/// account, or a room or the storage failed (the account is then as it was before, minus the
/// workspaces it already left, and the deletion can be asked again).
pub async fn delete(state: &AppState, user: UserId) -> Result<(), ApiError> {
    let state = state.clone();
    tokio::spawn(async move { delete_now(&state, user).await })
        .await
        .map_err(|e| ApiError::internal(&e))?
}

async fn delete_now(state: &AppState, user: UserId) -> Result<(), ApiError> {
    let was_disabled = match state.store.account_status(user).await? {
        AccountStatus::Deleted => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such account",
            ));
        }
        status => status == AccountStatus::Disabled,
    };
    // Two rounds: a membership added while the first ran is left in the second.
    for _ in 0..2 {
        let plan = plan(state, user).await?;
        let blocked: Vec<WorkspaceId> = plan
            .iter()
            .filter_map(|d| match d {
                Departure::Blocked(ws) => Some(*ws),
                _ => None,
            })
            .collect();
        if !blocked.is_empty() {
            let mut err = ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::LastOwner,
                "the account is the only owner of workspaces that have other members; \
                 make someone else owner first",
            );
            err.details = Some(json!({ "workspaces": blocked }));
            return Err(err);
        }
        // Disabled first, so that nothing it holds can act while it leaves its workspaces.
        set_disabled(state, user, true).await?;
        match leave_all(state, user, plan).await {
            Ok(()) => {}
            Err(e) => {
                if !was_disabled {
                    set_disabled(state, user, false).await?;
                }
                return Err(e);
            }
        }
        match state.store.delete_user(user).await {
            Ok(_) => {
                tracing::info!(%user, "account deleted");
                return Ok(());
            }
            Err(persistence::StoreError::Conflict) => continue,
            Err(e) => {
                if !was_disabled {
                    set_disabled(state, user, false).await?;
                }
                return Err(e.into());
            }
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::AlreadyExists,
        "the account kept being added to workspaces; try again",
    ))
}

/// Leaves (or deletes) each workspace of the plan, through its room.
async fn leave_all(state: &AppState, user: UserId, plan: Vec<Departure>) -> Result<(), ApiError> {
    for departure in plan {
        let op = match departure {
            Departure::Alone(ws) => (ws, Op::Delete),
            Departure::Leave(ws) => (ws, Op::RemoveMember(user)),
            Departure::Blocked(_) => continue,
        };
        match state.router.call(op.0, user, op.1).await {
            // Gone or left meanwhile: nothing to do there.
            Ok(_) | Err(RoomError::NotAMember) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How the account leaves each of its workspaces, asked of each workspace's room.
async fn plan(state: &AppState, user: UserId) -> Result<Vec<Departure>, ApiError> {
    let mut plan = Vec::new();
    for (ws, _) in state.store.workspaces_for_user(user).await? {
        let members = match state.router.call(ws.id, user, Op::Describe).await {
            Ok(Reply::Workspace { members, .. }) => members,
            // Deleted or left meanwhile: nothing to do there.
            Err(RoomError::NotAMember) => continue,
            Ok(other) => return Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
            Err(e) => return Err(e.into()),
        };
        let owners = members.iter().filter(|m| m.role == Role::Owner).count();
        let mine = members.iter().find(|m| m.user_id == user).map(|m| m.role);
        plan.push(match mine {
            _ if members.len() == 1 => Departure::Alone(ws.id),
            Some(Role::Owner) if owners == 1 => Departure::Blocked(ws.id),
            _ => Departure::Leave(ws.id),
        });
    }
    Ok(plan)
}
