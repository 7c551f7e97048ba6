//! Invitations by email (`POST /api/v1/workspaces/{id}/invite`, list, revoke, accept) and
//! password resets (`POST /api/v1/auth/password/forgot`, `…/reset`). Each token is random, sent
//! only in the mail, stored hashed, expires, and works once. The mail is written to the outbox in
//! the same transaction as the token (see `jobs`). Neither the invitation nor the reset routes
//! tell whether an email has an account.

use actors::workspace::{Op, RoomError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use persistence::{Invitation, Mail, TokenRefused};
use serde::{Deserialize, Serialize};
use signaling::workspace::{Member, Role};
use signaling::{ErrorCode, UserId, WorkspaceId};
use uuid::Uuid;

use super::auth::AuthResponse;
use super::{ApiJson, ApiPath};
use crate::auth::{AuthUser, hash_refresh};
use crate::error::ApiError;
use crate::http::ClientIp;
use crate::state::AppState;

/// Most open invitations per workspace.
const MAX_OPEN_INVITATIONS: u64 = 100;

fn new_token() -> Result<(String, String), ApiError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| ApiError::internal(&e))?;
    let token = URL_SAFE_NO_PAD.encode(raw);
    let hash = hash_refresh(&token);
    Ok((token, hash))
}

fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidToken,
        "this link is unknown, used, revoked or expired",
    )
}

fn public_url(state: &AppState) -> String {
    state
        .config
        .mail
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config.listen))
        .trim_end_matches('/')
        .to_owned()
}

/// An invitation as owners and admins see it (never its token).
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    id: Uuid,
    workspace_id: WorkspaceId,
    /// The address invited.
    email: String,
    /// The role the invitee gets.
    role: Role,
    invited_by: UserId,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// `pending`, `accepted`, `revoked` or `expired`.
    status: &'static str,
    /// The account that accepted it.
    accepted_by: Option<UserId>,
}

impl From<&Invitation> for InvitationView {
    fn from(inv: &Invitation) -> Self {
        let status = if inv.accepted_at.is_some() {
            "accepted"
        } else if inv.revoked_at.is_some() {
            "revoked"
        } else if inv.expires_at <= Utc::now() {
            "expired"
        } else {
            "pending"
        };
        Self {
            id: inv.id,
            workspace_id: inv.workspace_id,
            email: inv.email.clone(),
            role: inv.role,
            invited_by: inv.invited_by,
            created_at: inv.created_at,
            expires_at: inv.expires_at,
            status,
            accepted_by: inv.accepted_by,
        }
    }
}

/// A workspace's invitations.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationList {
    /// Newest first.
    invitations: Vec<InvitationView>,
}

/// The body of an invitation.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    /// The address to invite.
    email: String,
    /// `member` by default; only an owner invites an owner.
    #[serde(default = "member")]
    role: Role,
}

fn member() -> Role {
    Role::Member
}

/// `POST /api/v1/workspaces/{id}/invite`: `{"email", "role"}` (owners and admins; only an owner
/// invites an owner). Mails a link that works once, for `HUB_INVITE_TTL_HOURS`. `201` with the
/// invitation (never its token).
#[utoipa::path(post, path = "/workspaces/{id}/invite", tag = "invitations", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), request_body = InviteBody, responses((status = 201, description = "Invited: a link that works once is mailed.", body = InvitationView)))]
pub async fn invite(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(body): ApiJson<InviteBody>,
) -> Result<(StatusCode, Json<InvitationView>), ApiError> {
    let email = signaling::text::normalize_email(&body.email)?;
    let super::workspaces::WorkspaceDetail { name, role, .. } =
        super::workspaces::describe(&state, id, user).await?;
    if !role.can_manage_members() {
        return Err(RoomError::Forbidden("only owners and admins invite").into());
    }
    if body.role == Role::Owner && role != Role::Owner {
        return Err(RoomError::Forbidden("only an owner can invite an owner").into());
    }
    if state.store.open_invitations(id).await? >= MAX_OPEN_INVITATIONS {
        return Err(
            RoomError::LimitReached("a workspace holds at most 100 open invitations").into(),
        );
    }
    let (token, hash) = new_token()?;
    let now = Utc::now();
    let ttl =
        chrono::Duration::hours(i64::try_from(state.config.mail.invite_ttl_hours).unwrap_or(168));
    let inv = Invitation {
        id: Uuid::now_v7(),
        workspace_id: id,
        email: email.clone(),
        role: body.role,
        invited_by: user,
        created_at: now,
        expires_at: now + ttl,
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
    };
    let link = format!("{}/invitations/accept?token={token}", public_url(&state));
    let mail = Mail {
        to: email,
        subject: format!("You are invited to {name}"),
        text: format!(
            "You are invited to join the workspace \"{name}\" as {}.\n\n\
             Accept the invitation: {link}\n\n\
             The link works once, until {}. If you did not expect this, ignore this mail.\n",
            body.role.as_str(),
            inv.expires_at.format("%Y-%m-%d %H:%M UTC"),
        ),
    };
    state.store.create_invitation(&inv, &hash, &mail).await?;
    state.jobs.notify_one();
    Ok((StatusCode::CREATED, Json(InvitationView::from(&inv))))
}

/// `GET /api/v1/workspaces/{id}/invitations`: newest first, with their status (owners and
/// admins).
#[utoipa::path(get, path = "/workspaces/{id}/invitations", tag = "invitations", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 200, description = "Newest first, with their status (owners and admins).", body = InvitationList)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<InvitationList>, ApiError> {
    let role = super::workspaces::describe(&state, id, user).await?.role;
    if !role.can_manage_members() {
        return Err(RoomError::Forbidden("only owners and admins see invitations").into());
    }
    let invitations = state
        .store
        .invitations(id)
        .await?
        .iter()
        .map(InvitationView::from)
        .collect();
    Ok(Json(InvitationList { invitations }))
}

/// `DELETE /api/v1/workspaces/{id}/invitations/{invitation_id}`: its link stops working.
#[utoipa::path(delete, path = "/workspaces/{id}/invitations/{invitation_id}", tag = "invitations", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("invitation_id" = uuid::Uuid, Path, description = "The invitation.")), responses((status = 204, description = "Revoked: its link stops working.")))]
pub async fn revoke(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, invitation)): ApiPath<(WorkspaceId, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let role = super::workspaces::describe(&state, id, user).await?.role;
    if !role.can_manage_members() {
        return Err(RoomError::Forbidden("only owners and admins revoke invitations").into());
    }
    if !state.store.revoke_invitation(id, invitation).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no open invitation with this id",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The body of an acceptance: the token, and, to register with the invited email, a name and a
/// password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The token of the mailed link.
    token: String,
    /// Without a bearer token: the display name of the account to register.
    #[serde(default)]
    name: Option<String>,
    /// Without a bearer token: the password of the account to register.
    #[serde(default)]
    password: Option<String>,
}

/// The answer to an acceptance.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The workspace joined.
    workspace_id: WorkspaceId,
    /// The caller as a member.
    member: Member,
    /// When the acceptance registered an account: its tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthResponse>,
}

/// `POST /api/v1/invitations/accept`: logged in (with the account of the invited email), or
/// not, with `name` and `password` to register that email. The member is added through the room
/// like any other member (with the inviter's authority: an inviter no longer able to add members
/// makes the link void). `200 {"workspace_id", "member"}`, plus the tokens when it registered.
#[utoipa::path(post, path = "/invitations/accept", tag = "invitations", security((), ("user" = [])), request_body = AcceptBody, responses((status = 200, description = "The caller is a member (registered first when not logged in).", body = Accepted)))]
pub async fn accept(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state.limits.auth_from(ip).await?;
    let hash = hash_refresh(&body.token);
    let invitation = state
        .store
        .open_invitation(&hash)
        .await?
        .ok_or_else(invalid_token)?;
    let (account, registered) = match crate::auth::bearer(&headers) {
        Some(token) => {
            let user = crate::auth::Authenticated::check(&state, token).await?;
            let account = state
                .store
                .user_by_id(user)
                .await?
                .ok_or_else(|| ApiError::unauthorized("no such account"))?;
            if account.email != invitation.email {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Forbidden,
                    "this invitation is for another email address",
                ));
            }
            (account, None)
        }
        None => {
            let register = signaling::rest::RegisterBody {
                email: invitation.email.clone(),
                name: body.name.clone().unwrap_or_default(),
                password: body.password.clone().unwrap_or_default(),
            }
            .normalize()?;
            state.limits.register(ip, &register.email).await?;
            // The token holder owns the mailbox: telling them the address has an account tells
            // no one else.
            let taken = "this email has an account: log in, then accept";
            let account = super::auth::create_account(&state, register, taken).await?;
            (account.clone(), Some(account))
        }
    };
    let taken = match state.store.take_invitation(&hash, account.id).await? {
        Ok(inv) => inv,
        Err(TokenRefused::Invalid) => return Err(invalid_token()),
    };
    let member = Member {
        user_id: account.id,
        role: taken.role,
        name: account.name.clone(),
        email: account.email.clone(),
    };
    let added = state
        .router
        .call(
            taken.workspace_id,
            taken.invited_by,
            Op::AddMember(member.clone()),
        )
        .await;
    match added {
        Ok(_) | Err(RoomError::AlreadyExists(_)) => {}
        Err(e) => {
            let _ = state.store.untake_invitation(taken.id).await;
            return Err(match e {
                RoomError::Forbidden(_) | RoomError::NotAMember => ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Forbidden,
                    "the inviter can no longer add members: ask for a new invitation",
                ),
                other => other.into(),
            });
        }
    }
    let auth = match registered {
        Some(account) => Some(super::auth::issue(&state, account, Uuid::now_v7(), None).await?),
        None => None,
    };
    let answer = Accepted {
        workspace_id: taken.workspace_id,
        member,
        auth,
    };
    Ok((StatusCode::OK, Json(answer)))
}

/// The body of a reset request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotBody {
    /// The account's email.
    email: String,
}

/// `POST /api/v1/auth/password/forgot`: `{"email"}` → always `202`, whether the email has an
/// account or not; when it has (and is not disabled), a reset link is mailed.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotBody, responses((status = 202, description = "Always, whether the email has an account or not; when it has, a reset link is mailed.")))]
pub async fn forgot(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ForgotBody>,
) -> Result<StatusCode, ApiError> {
    state.limits.auth_from(ip).await?;
    let email = signaling::text::normalize_email(&body.email)?;
    // The same allowance as registering: per address and per email, so that nobody mails
    // someone a stream of links.
    state.limits.register(ip, &email).await?;
    if let Some(account) = state.store.user_by_email(&email).await?
        && account.disabled_at.is_none()
    {
        let (token, hash) = new_token()?;
        let minutes = i64::try_from(state.config.mail.reset_ttl_minutes).unwrap_or(60);
        let expires = Utc::now() + chrono::Duration::minutes(minutes);
        let link = format!("{}/password/reset?token={token}", public_url(&state));
        let mail = Mail {
            to: account.email.clone(),
            subject: "Reset your password".into(),
            text: format!(
                "Someone asked to reset the password of this account.\n\n\
                 Choose a new password: {link}\n\n\
                 The link works once, for {minutes} minutes. If it was not you, ignore this mail: \
                 your password stays as it is.\n"
            ),
        };
        state
            .store
            .create_password_reset(account.id, &hash, expires, &mail)
            .await?;
        state.jobs.notify_one();
    }
    Ok(StatusCode::ACCEPTED)
}

/// The body of a reset.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// The token of the mailed link.
    token: String,
    /// The new password (8–128 characters).
    password: String,
}

/// `POST /api/v1/auth/password/reset`: `{"token", "password"}` → `204`. The token works once;
/// every refresh token of the account is revoked, and its open sockets are closed.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetBody, responses((status = 204, description = "The password is changed; every refresh token of the account is revoked and its sockets closed.")))]
pub async fn reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<StatusCode, ApiError> {
    state.limits.auth_from(ip).await?;
    signaling::rest::check_password(&body.password)?;
    let hash = state.auth.hash_password(body.password).await?;
    match state
        .store
        .use_password_reset(&hash_refresh(&body.token), &hash)
        .await?
    {
        Ok(user) => {
            tracing::info!(%user, "password reset");
            super::auth::close_sockets(&state, user);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(TokenRefused::Invalid) => Err(invalid_token()),
    }
}
