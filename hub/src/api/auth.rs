//! `/api/v1/auth/*`: accounts and tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use persistence::{NewUser, UserRecord};
use serde::Serialize;
use signaling::rest::{LoginBody, PasswordBody, RefreshBody, RegisterBody};
use signaling::{ErrorCode, UserId};
use uuid::Uuid;

use super::ApiJson;
use crate::auth::{AuthUser, hash_refresh};
use crate::error::ApiError;
use crate::http::ClientIp;
use crate::state::AppState;

/// An account as clients see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    id: UserId,
    email: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            created_at: u.created_at,
        }
    }
}

/// Tokens, with the account they belong to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuthResponse {
    user: UserView,
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

fn reused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::RefreshTokenReused,
        "refresh token already used; all sessions from this login are revoked",
    )
}

/// Issues an access token and a refresh token of `family`. With `replaces`, the new refresh
/// token rotates that one out atomically; if another request rotated it first, that is a reuse
/// and the family is revoked.
/// Closes every open socket of `user` (4001) without refusing new ones: after a logout, a
/// password reset or a revoked token family, the account's clients sign in again.
pub(crate) fn close_sockets(state: &AppState, user: UserId) {
    let closed = state
        .registry
        .close_user(user, actors::CloseReason::ACCESS_REVOKED);
    state.registry.reopen_user(user);
    if closed > 0 {
        tracing::info!(%user, closed, "sockets closed");
    }
}

pub(crate) async fn issue(
    state: &AppState,
    user: UserRecord,
    family: Uuid,
    replaces: Option<Uuid>,
) -> Result<AuthResponse, ApiError> {
    let access_token = state.auth.issue_access(user.id)?;
    let (refresh_token, record) = state.auth.new_refresh(user.id, family)?;
    match replaces {
        None => state.store.insert_refresh_token(&record).await?,
        Some(old) => {
            if !state.store.rotate_refresh_token(old, &record).await? {
                state.store.revoke_refresh_family(family).await?;
                close_sockets(state, user.id);
                return Err(reused());
            }
        }
    }
    Ok(AuthResponse {
        user: user.into(),
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.auth.access_ttl().as_secs(),
    })
}

/// Creates the account of a normalized registration (the password hashed on the hashing pool);
/// an email that has an account is `409 already_exists` with `taken` as the message.
pub(crate) async fn create_account(
    state: &AppState,
    body: RegisterBody,
    taken: &'static str,
) -> Result<UserRecord, ApiError> {
    let password_hash = state.auth.hash_password(body.password).await?;
    state
        .store
        .create_user(NewUser {
            email: body.email,
            name: body.name,
            password_hash,
        })
        .await
        .map_err(|e| match e {
            persistence::StoreError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::AlreadyExists, taken)
            }
            other => other.into(),
        })
}

/// `POST /api/v1/auth/register`: creates an account and logs it in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses((status = 201, description = "The account, logged in.", body = AuthResponse)))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiError> {
    state.limits.auth_from(ip).await?;
    let body = body.normalize()?;
    state.limits.register(ip, &body.email).await?;
    let user = create_account(&state, body, "email already registered").await?;
    let response = issue(&state, user, Uuid::now_v7(), None).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// `POST /api/v1/auth/login`. Failures count per (email, address), per email and per address;
/// past any of those allowances every attempt waits, even with the right password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, description = "Logged in.", body = AuthResponse)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<AuthResponse>, ApiError> {
    state.limits.auth_from(ip).await?;
    let body = body.normalize()?;
    let email = body.email;
    state.limits.begin_login(ip, &email).await?;
    let user = state.store.user_by_email(&email).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state.auth.verify_password(body.password, hash).await;
    let user = match user {
        Some(user) if verified => user,
        _ => return Err(ApiError::unauthorized("wrong email or password")),
    };
    state.limits.login_succeeded(ip, &email).await;
    if user.disabled_at.is_some() {
        return Err(ApiError::account_disabled());
    }
    Ok(Json(issue(&state, user, Uuid::now_v7(), None).await?))
}

/// `POST /api/v1/auth/refresh`: exchanges a refresh token for new tokens. A token that was
/// already exchanged revokes its family.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, description = "New tokens; the refresh token sent is spent.",
        body = AuthResponse)))]
pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<AuthResponse>, ApiError> {
    state.limits.auth_from(ip).await?;
    let invalid = || ApiError::unauthorized("invalid refresh token");
    let token = state
        .store
        .refresh_token_by_hash(&hash_refresh(&body.refresh_token))
        .await?
        .ok_or_else(invalid)?;
    if token.rotated_at.is_some() {
        let revoked = state.store.revoke_refresh_family(token.family_id).await?;
        tracing::warn!(user = %token.user_id, family = %token.family_id, revoked, "rotated refresh token reused; family revoked");
        close_sockets(&state, token.user_id);
        return Err(reused());
    }
    if token.revoked_at.is_some() || token.expires_at <= Utc::now() {
        return Err(invalid());
    }
    let user = state
        .store
        .user_by_id(token.user_id)
        .await?
        .ok_or_else(invalid)?;
    if user.disabled_at.is_some() {
        return Err(ApiError::account_disabled());
    }
    Ok(Json(
        issue(&state, user, token.family_id, Some(token.id)).await?,
    ))
}

/// `POST /api/v1/auth/logout`: revokes the refresh token's family. Idempotent.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshBody,
    responses((status = 204, description = "The token's family is revoked and the account's \
        sockets closed.")))]
pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    state.limits.auth_from(ip).await?;
    if let Some(token) = state
        .store
        .refresh_token_by_hash(&hash_refresh(&body.refresh_token))
        .await?
    {
        state.store.revoke_refresh_family(token.family_id).await?;
        close_sockets(&state, token.user_id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/auth/me`: deletes the caller's account, after checking the password again.
/// Their sockets close (4001), their refresh tokens go, they leave every workspace (a workspace
/// they are alone in is deleted). Refused with `409 last_owner` while they are the only owner of
/// a workspace that has other members.
#[utoipa::path(delete, path = "/auth/me", tag = "auth", request_body = PasswordBody,
    security(("user" = [])),
    responses((status = 204, description = "The account is deleted.")))]
pub async fn delete_me(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let record = state
        .store
        .user_by_id(user)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account no longer exists"))?;
    // A wrong password here counts like a failed login: a stolen access token must not become
    // a password oracle.
    state.limits.begin_login(ip, &record.email).await?;
    if !state
        .auth
        .verify_password(body.password, Some(record.password_hash))
        .await
    {
        return Err(ApiError::unauthorized("wrong password"));
    }
    state.limits.login_succeeded(ip, &record.email).await;
    crate::accounts::delete(&state, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/auth/me`.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("user" = [])),
    responses((status = 200, description = "The caller's account.", body = UserView)))]
pub async fn me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<UserView>, ApiError> {
    let user = state
        .store
        .user_by_id(user)
        .await?
        .ok_or_else(|| ApiError::unauthorized("account no longer exists"))?;
    Ok(Json(user.into()))
}
