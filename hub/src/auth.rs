//! Authentication: argon2id password hashes, short-lived JWT access tokens (HS256, pinned), and
//! rotating refresh tokens stored only as SHA-256 hashes. Presenting a refresh token that was
//! already rotated revokes its whole family: a stolen token is useful at most once, and its use
//! logs out the thief and the victim alike.
//!
//! A token alone is not enough: every authenticated request also checks that its account still
//! exists and is not disabled ([`Authenticated::check`], one primary-key read), so deleting or
//! disabling an account takes effect at once, not when its tokens expire. A WebSocket upgrade
//! skips the read when an open connection of the same user, whose account was read less than a
//! minute ago, vouches for it (`ws::registry::Registry::vouches_for`): disabling closes those
//! connections first.
//!
//! A guest of a conference session has no account: its token ([`Auth::issue_guest`]) names one
//! session and carries its own audience, so it is refused wherever an access token is asked for,
//! and an access token is refused where a guest token is.
//!
//! [`AuthUser`] is the extractor REST handlers use (it also charges the user's request
//! allowance); the WebSocket gateway checks the token and [`Authenticated::active`] itself (a
//! browser cannot set headers on a WebSocket, so it also accepts `?token=`). [`Operator`] guards the admin routes.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use persistence::{AccountStatus, RefreshToken};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signaling::{AttendeeId, ErrorCode, SessionId, UserId};
use uuid::Uuid;

use crate::config::AuthConfig;
use crate::error::ApiError;
use crate::hasher::Hasher;
use crate::limits::Access;
use crate::state::AppState;

/// The `aud` (and `iss`) of every access token.
pub const AUDIENCE: &str = "hub";
/// The `aud` of a guest's token: a token for one conference session, refused everywhere an
/// access token is asked for (its audience differs), and an access token is refused where a
/// guest token is.
pub const GUEST_AUDIENCE: &str = "hub-guest";
/// How long a guest's token lasts.
pub const GUEST_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
const SECRET_FILE: &str = "jwt_secret";

/// Access token claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// Always [`AUDIENCE`].
    pub iss: String,
}

/// A guest's token claims: an attendee of one session, with no account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestClaims {
    /// The attendee.
    pub sub: AttendeeId,
    /// The one session the token is good for.
    pub sid: SessionId,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Always [`GUEST_AUDIENCE`].
    pub aud: String,
    /// Always [`AUDIENCE`].
    pub iss: String,
}

/// Token issuing and checking.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    guest_validation: Validation,
    access_ttl: Duration,
    refresh_ttl: chrono::Duration,
    /// A real hash, verified against when an email is unknown so that a login takes as long
    /// whether or not the account exists.
    dummy_hash: String,
    hasher: Hasher,
}

impl Auth {
    /// Signs with `secret`.
    ///
    /// # Errors
    /// Hashing the timing-equalizer password failed.
    pub fn new(secret: &[u8], config: &AuthConfig) -> anyhow::Result<Auth> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "sub", "iss"]);
        validation.leeway = 5;
        let mut guest_validation = validation.clone();
        guest_validation.set_audience(&[GUEST_AUDIENCE]);
        guest_validation.set_required_spec_claims(&["exp", "iat", "aud", "sub", "iss"]);
        let dummy_hash = crate::hasher::hash("timing equalizer password")
            .map_err(anyhow::Error::msg)
            .context("hashing the dummy password")?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        Ok(Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            guest_validation,
            access_ttl: Duration::from_secs(config.access_ttl_secs.max(1)),
            refresh_ttl: chrono::Duration::days(
                i64::try_from(config.refresh_ttl_days.max(1)).unwrap_or(30),
            ),
            dummy_hash,
            hasher: Hasher::new(threads),
        })
    }

    /// Access token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Issues an access token for `user`.
    ///
    /// # Errors
    /// Signing failed (a bug).
    pub fn issue_access(&self, user: UserId) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            iat: now,
            exp: now + i64::try_from(self.access_ttl.as_secs()).unwrap_or(900),
            aud: AUDIENCE.into(),
            iss: AUDIENCE.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(&e))
    }

    /// Issues a guest's token for `session` (see [`GUEST_AUDIENCE`]), good for [`GUEST_TTL`].
    ///
    /// # Errors
    /// Signing failed (a bug).
    pub fn issue_guest(
        &self,
        session: SessionId,
        attendee: AttendeeId,
    ) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let claims = GuestClaims {
            sub: attendee,
            sid: session,
            iat: now,
            exp: now + i64::try_from(GUEST_TTL.as_secs()).unwrap_or(7200),
            aud: GUEST_AUDIENCE.into(),
            iss: AUDIENCE.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::internal(&e))
    }

    /// Checks a guest's token for `session`: signature, expiry, audience, issuer, and that it
    /// names this session.
    ///
    /// # Errors
    /// `unauthorized` for any failure ("guest token expired" when that is all that is wrong);
    /// `forbidden` when it is a good token for another session.
    pub fn verify_guest(&self, token: &str, session: SessionId) -> Result<AttendeeId, ApiError> {
        let claims =
            jsonwebtoken::decode::<GuestClaims>(token, &self.decoding, &self.guest_validation)
                .map(|data| data.claims)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        ApiError::unauthorized("guest token expired")
                    }
                    _ => ApiError::unauthorized("invalid guest token"),
                })?;
        if claims.sid != session {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this guest token is for another session",
            ));
        }
        Ok(claims.sub)
    }

    /// Checks a guest's token for whatever session it names (the WebSocket upgrade, which then
    /// lets the connection into that session only).
    ///
    /// # Errors
    /// `unauthorized` for any failure.
    pub fn verify_guest_any(&self, token: &str) -> Result<(SessionId, AttendeeId), ApiError> {
        jsonwebtoken::decode::<GuestClaims>(token, &self.decoding, &self.guest_validation)
            .map(|data| (data.claims.sid, data.claims.sub))
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("guest token expired")
                }
                _ => ApiError::unauthorized("invalid guest token"),
            })
    }

    /// Checks an access token: signature (HS256 only), expiry, audience, issuer.
    ///
    /// # Errors
    /// `unauthorized` for any failure ("access token expired" when that is all that is wrong,
    /// so that a client knows to refresh; never the library's own words).
    pub fn verify_access(&self, token: &str) -> Result<UserId, ApiError> {
        self.access_claims(token).map(|c| c.sub)
    }

    /// [`Auth::verify_access`], with the token's claims (its expiry, for an open socket).
    ///
    /// # Errors
    /// As [`Auth::verify_access`].
    pub fn access_claims(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("access token expired")
                }
                _ => ApiError::unauthorized("invalid access token"),
            })
    }

    /// A new refresh token (returned once, to the client) and its stored record.
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn new_refresh(
        &self,
        user: UserId,
        family: Uuid,
    ) -> Result<(String, RefreshToken), ApiError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| ApiError::internal(&e))?;
        let token = URL_SAFE_NO_PAD.encode(raw);
        let now = Utc::now();
        let record = RefreshToken {
            id: Uuid::now_v7(),
            user_id: user,
            family_id: family,
            token_hash: hash_refresh(&token),
            created_at: now,
            expires_at: now + self.refresh_ttl,
            rotated_at: None,
            revoked_at: None,
        };
        Ok((token, record))
    }

    /// Hashes a password with argon2id on the hashing pool.
    ///
    /// # Errors
    /// Hashing failed (a bug or exhausted memory).
    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        self.hasher
            .hash(password)
            .await
            .map_err(|e| ApiError::internal(&e))
    }

    /// Checks a password against a stored hash (or against the dummy hash when `hash` is
    /// `None`, always failing, so that unknown emails cost the same time).
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        self.hasher.verify(password, hash).await && known
    }
}

/// The stored form of a refresh token: SHA-256, hex.
pub fn hash_refresh(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signing secret: the configured one, else the one kept in the data folder, else a new
/// random one written there (readable by the owner only).
///
/// # Errors
/// A configured secret that is too short, or the data folder cannot be read or written.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "HUB_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes"
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let secret = STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not base64", path.display()))?;
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "{} is too short",
            path.display()
        );
        return Ok(secret);
    }
    let mut secret = vec![0u8; 64];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    write_private(&path, &STANDARD.encode(&secret))
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a JWT signing secret");
    Ok(secret)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The bearer token of a request, from `Authorization: Bearer ...`.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The check behind every authenticated request.
pub struct Authenticated;

impl Authenticated {
    /// The user an access token names, if the token is valid and the account exists and is
    /// enabled.
    ///
    /// # Errors
    /// `401 unauthorized` (bad token, deleted account), `401 account_disabled`, or `503` when
    /// the database cannot answer.
    pub async fn check(state: &AppState, token: &str) -> Result<UserId, ApiError> {
        let user = state.auth.verify_access(token)?;
        Self::active(state, user).await?;
        Ok(user)
    }

    /// Whether `user`'s account exists and is enabled, read from the store.
    ///
    /// # Errors
    /// As [`Authenticated::check`].
    pub async fn active(state: &AppState, user: UserId) -> Result<(), ApiError> {
        match state.store.account_status(user).await? {
            AccountStatus::Active => Ok(()),
            AccountStatus::Disabled => Err(ApiError::account_disabled()),
            AccountStatus::Deleted => Err(ApiError::unauthorized("account no longer exists")),
        }
    }
}

/// An authenticated REST caller, whose request has been counted against their allowance.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("missing `Authorization: Bearer <access token>`")
        })?;
        let user = Authenticated::check(state, token).await?;
        if let Err(e) = state
            .limits
            .request_by(user, Access::of(&parts.method))
            .await
        {
            state.metrics.rate_limited.increment(1);
            return Err(e);
        }
        Ok(AuthUser(user))
    }
}

/// The operator, for the admin routes: `Authorization: Bearer <HUB_ADMIN_TOKEN>`. Without a
/// configured token the admin routes do not exist (404).
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.config.admin_token.as_deref() else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such route",
            ));
        };
        let given = bearer(&parts.headers).unwrap_or("");
        // Compare digests so the comparison takes as long whatever the guess.
        let same = Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes());
        if same && !given.is_empty() {
            Ok(Operator)
        } else {
            Err(ApiError::unauthorized("invalid operator token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(ttl: u64) -> Auth {
        Auth::new(
            &[7u8; 32],
            &AuthConfig {
                access_ttl_secs: ttl,
                refresh_ttl_days: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_guest_token_works_for_its_session_only_and_never_as_an_access_token() {
        let a = auth(60);
        let (session, attendee) = (SessionId::new(), AttendeeId::new());
        let guest = a.issue_guest(session, attendee).unwrap();
        assert_eq!(a.verify_guest(&guest, session).unwrap(), attendee);
        let elsewhere = a.verify_guest(&guest, SessionId::new()).unwrap_err();
        assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
        assert_eq!(
            a.verify_access(&guest).unwrap_err().status,
            StatusCode::UNAUTHORIZED,
            "not an access token: refused by every account route and workspace"
        );
        let access = a.issue_access(UserId::new()).unwrap();
        assert_eq!(
            a.verify_guest(&access, session).unwrap_err().status,
            StatusCode::UNAUTHORIZED,
            "an access token is not a guest token"
        );
        let mut forged = guest.clone();
        forged.pop();
        assert!(a.verify_guest(&forged, session).is_err());
        let now = Utc::now().timestamp();
        let stale = GuestClaims {
            sub: attendee,
            sid: session,
            iat: now - 3 * 3600,
            exp: now - 3600,
            aud: GUEST_AUDIENCE.into(),
            iss: AUDIENCE.into(),
        };
        let stale = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &stale,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert_eq!(
            a.verify_guest(&stale, session).unwrap_err().message,
            "guest token expired"
        );
    }

    #[test]
    fn access_tokens_round_trip_and_are_bound_to_the_secret() {
        let a = auth(60);
        let user = UserId::new();
        let token = a.issue_access(user).unwrap();
        assert_eq!(a.verify_access(&token).unwrap(), user);
        let other = Auth::new(
            &[8u8; 32],
            &AuthConfig {
                access_ttl_secs: 60,
                refresh_ttl_days: 1,
            },
        )
        .unwrap();
        assert!(other.verify_access(&token).is_err());
    }

    /// A token signed with the test secret, `alg` and expiry `exp_in` seconds from now.
    fn signed(alg: Algorithm, exp_in: i64) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: UserId::new(),
            iat: now.min(now + exp_in) - 60,
            exp: now + exp_in,
            aud: AUDIENCE.into(),
            iss: AUDIENCE.into(),
        };
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap()
    }

    #[test]
    fn other_algorithms_are_refused() {
        let a = auth(60);
        assert!(a.verify_access(&signed(Algorithm::HS256, 60)).is_ok());
        assert!(a.verify_access(&signed(Algorithm::HS512, 60)).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        assert!(
            auth(60)
                .verify_access(&signed(Algorithm::HS256, -60))
                .is_err()
        );
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let a = auth(60);
        let hash = a.hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            a.verify_password("correct horse".into(), Some(hash.clone()))
                .await
        );
        assert!(!a.verify_password("wrong".into(), Some(hash)).await);
        assert!(
            !a.verify_password("timing equalizer password".into(), None)
                .await
        );
    }

    #[test]
    fn the_secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(None, dir.path()).unwrap();
        let second = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(first, second);
        assert!(load_or_create_secret(Some("short"), dir.path()).is_err());
    }
}
