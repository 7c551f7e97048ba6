//! `/api/v1/auth/*`: accounts and tokens.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use persistence::{NewUser, UserRecord};
use serde::{Deserialize, Serialize};
use signaling::{ErrorCode, UserId};
use uuid::Uuid;

use super::ApiJson;
use crate::auth::{AuthUser, hash_refresh};
use crate::error::ApiError;
use crate::state::AppState;

/// Password length bounds, in characters.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// `POST /auth/register` body.
#[derive(Deserialize)]
pub struct RegisterBody {
    email: String,
    password: String,
    name: String,
}

/// `POST /auth/login` body.
#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

/// `POST /auth/refresh` and `/auth/logout` body.
#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// An account as clients see it.
#[derive(Serialize)]
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
#[derive(Serialize)]
pub struct AuthResponse {
    user: UserView,
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// Lower-cases and checks an email address.
fn parse_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::invalid("email: not a valid address"))
    }
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
async fn issue(
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

/// `POST /api/v1/auth/register`: creates an account and logs it in.
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiError> {
    let email = parse_email(&body.email)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name: must be 1-100 characters"));
    }
    if !PASSWORD_CHARS.contains(&body.password.chars().count()) {
        return Err(ApiError::invalid("password: must be 8-128 characters"));
    }
    let password_hash = state.auth.hash_password(body.password).await?;
    let user = state
        .store
        .create_user(NewUser {
            email,
            name,
            password_hash,
        })
        .await
        .map_err(|e| match e {
            persistence::StoreError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyExists,
                "email already registered",
            ),
            other => other.into(),
        })?;
    let response = issue(&state, user, Uuid::now_v7(), None).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// `POST /api/v1/auth/login`: 5 failures per 15 minutes per (email, address), then 429.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<AuthResponse>, ApiError> {
    let email = body.email.trim().to_lowercase();
    let ip = peer.ip();
    if let Err(secs) = state.logins.check(&email, ip, Instant::now()) {
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many failed logins; retry later",
        );
        err.retry_after = Some(secs);
        return Err(err);
    }
    let user = state.store.user_by_email(&email).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    if !state.auth.verify_password(body.password, hash).await {
        state.logins.fail(&email, ip, Instant::now());
        return Err(ApiError::unauthorized("wrong email or password"));
    }
    let Some(user) = user else {
        return Err(ApiError::unauthorized("wrong email or password"));
    };
    state.logins.succeed(&email, ip);
    Ok(Json(issue(&state, user, Uuid::now_v7(), None).await?))
}

/// `POST /api/v1/auth/refresh`: exchanges a refresh token for new tokens. A token that was
/// already exchanged revokes its family.
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<AuthResponse>, ApiError> {
    let invalid = || ApiError::unauthorized("invalid refresh token");
    let token = state
        .store
        .refresh_token_by_hash(&hash_refresh(&body.refresh_token))
        .await?
        .ok_or_else(invalid)?;
    if token.rotated_at.is_some() {
        let revoked = state.store.revoke_refresh_family(token.family_id).await?;
        tracing::warn!(user = %token.user_id, family = %token.family_id, revoked, "rotated refresh token reused; family revoked");
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
    Ok(Json(
        issue(&state, user, token.family_id, Some(token.id)).await?,
    ))
}

/// `POST /api/v1/auth/logout`: revokes the refresh token's family. Idempotent.
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    if let Some(token) = state
        .store
        .refresh_token_by_hash(&hash_refresh(&body.refresh_token))
        .await?
    {
        state.store.revoke_refresh_family(token.family_id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/auth/me`.
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

#[cfg(test)]
mod tests {
    use super::parse_email;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(parse_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "", "ada", "@x.io", "ada@", "ada@x", "a b@x.io", "a@x.io.", "a@@x.io",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }
}
