//! `/api/v1/admin/*`: the operator's routes, behind `HUB_ADMIN_TOKEN` ([`Operator`]).
//!
//! - `POST /admin/users/{id}/disable`: tokens refused, refresh tokens revoked, sockets closed.
//! - `POST /admin/users/{id}/enable`: the account may sign in again.
//! - `DELETE /admin/users/{id}`: the account is deleted as by the user themselves.

use axum::extract::State;
use axum::http::StatusCode;
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
