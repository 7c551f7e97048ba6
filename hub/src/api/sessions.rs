//! `/api/v1/sessions` and `/api/v1/questions`: conference sessions, their staff, guest joins,
//! attendees, ICE servers and questions. Every read of a live session and every change goes
//! through its room, which checks the caller's role and tells connected members; the tables
//! only index sessions (my sessions, attendees, a question's session).
//!
//! Callers are registered users (`Authorization: Bearer <access token>`) or, on the routes of
//! one session, that session's guests (`Authorization: Bearer <guest token>`).

use actors::session::qa::Ask;
use actors::session::qa::SessionRole;
use actors::session::state::{SessionError, SessionPatch, SessionSettings};
use actors::session::wire::{QuestionView, SessionView};
use actors::session::{Caller, SessionOp, SessionReply};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use persistence::{AttendeeRecord, SessionRecord};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use signaling::session::{Moderation, SessionStatus, Staff, Vote};
use signaling::text::{clean_line, normalize_email};
use signaling::{AttendeeId, ErrorCode, SessionId, UserId};
use uuid::Uuid;

use super::{ApiJson, ApiPath};
use crate::auth::{AuthUser, Authenticated, bearer};
use crate::error::ApiError;
use crate::http::ClientIp;
use crate::limits::Quota;
use crate::state::AppState;

/// Longest guest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 80;
/// The capacity of a session created without one.
pub const DEFAULT_CAPACITY: u32 = 500;
/// Most sessions per page of `GET /api/v1/sessions`.
pub const MAX_PAGE: u32 = 100;

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        use actors::session::qa::QaError;
        let status = match &e {
            SessionError::Forbidden(_) | SessionError::Creator => StatusCode::FORBIDDEN,
            SessionError::NotFound | SessionError::Qa(QaError::NotFound) => StatusCode::NOT_FOUND,
            SessionError::Invalid(_)
            | SessionError::Qa(QaError::InvalidText(_))
            | SessionError::Signal(_) => StatusCode::BAD_REQUEST,
            SessionError::Qa(QaError::Forbidden(_)) => StatusCode::FORBIDDEN,
            SessionError::Qa(QaError::RateLimited) => StatusCode::TOO_MANY_REQUESTS,
            SessionError::Qa(QaError::Blocked | QaError::TooManyLinks) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            SessionError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// `Option<Option<T>>` from JSON: absent is `None`, `null` is `Some(None)`.
fn double<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    scheduled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    capacity: Option<u32>,
    #[serde(default)]
    settings: Option<SessionSettings>,
}

/// `PATCH /api/v1/sessions/{id}`: only the fields given change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "double")]
    scheduled_at: Option<Option<DateTime<Utc>>>,
    #[serde(default)]
    capacity: Option<u32>,
    #[serde(default)]
    settings: Option<SessionSettings>,
}

/// `POST /api/v1/sessions/{id}/staff`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffBody {
    email: String,
    role: Staff,
}

/// `POST /api/v1/sessions/{id}/join`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    display_name: String,
    #[serde(default)]
    email: Option<String>,
}

/// `POST /api/v1/sessions/{id}/questions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    text: String,
    #[serde(default)]
    anonymous: bool,
}

/// `POST /api/v1/questions/{id}/vote`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    vote: Option<Vote>,
}

/// `PATCH /api/v1/questions/{id}`: an author's new text, or a moderator's action.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionPatch {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    action: Option<Moderation>,
}

/// `?before=<session id>&limit=<n>`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The `next_before` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    before: Option<SessionId>,
    /// 1–100, 20 by default.
    limit: Option<u32>,
}

/// A session in a list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionSummary {
    id: SessionId,
    title: String,
    status: SessionStatus,
    scheduled_at: Option<DateTime<Utc>>,
    capacity: u32,
    role: Staff,
    created_at: DateTime<Utc>,
}

/// A page of sessions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionPage {
    sessions: Vec<SessionSummary>,
    /// Pass as `before` for the next page; `null` on the last.
    next_before: Option<SessionId>,
}

/// Who calls a session's route: a registered user (any session) or that session's guest.
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    session: SessionId,
) -> Result<Caller, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
    match Authenticated::check(state, token).await {
        Ok(user) => Ok(user_caller(state, session, user).await?),
        Err(access_err) => match state.auth.verify_guest(token, session) {
            Ok(attendee) => {
                let name = state
                    .store
                    .attendee(attendee)
                    .await?
                    .map(|a| a.display_name);
                Ok(Caller {
                    attendee,
                    user: None,
                    name,
                })
            }
            // A guest token for another session says so; anything else gets the access error.
            Err(e) if e.status == StatusCode::FORBIDDEN => Err(e),
            Err(_) => Err(access_err),
        },
    }
}

async fn user_caller(
    state: &AppState,
    session: SessionId,
    user: UserId,
) -> Result<Caller, ApiError> {
    let name = state.store.user_by_id(user).await?.map(|u| u.name);
    Ok(Caller {
        attendee: AttendeeId::of_user(session, user),
        user: Some(user),
        name,
    })
}

async fn call(
    state: &AppState,
    id: SessionId,
    caller: Caller,
    op: SessionOp,
) -> Result<SessionReply, ApiError> {
    Ok(state.router.call_session(id, caller, op).await?)
}

/// Runs `op` as a registered user and answers with the room's reply.
async fn user_op(
    state: &AppState,
    id: SessionId,
    user: UserId,
    op: SessionOp,
) -> Result<Json<Value>, ApiError> {
    let me = user_caller(state, id, user).await?;
    Ok(body(call(state, id, me, op).await?))
}

fn body(reply: SessionReply) -> Json<Value> {
    match reply {
        SessionReply::Json(v) => Json(v),
        SessionReply::Done(offset) => Json(json!({ "offset": offset })),
    }
}

/// `POST /api/v1/sessions`: creates a scheduled session; the caller is its presenter.
#[utoipa::path(post, path = "/sessions", tag = "sessions", security(("user" = [])), request_body = CreateBody, responses((status = 201, description = "Scheduled; the caller is its presenter.", body = SessionDetail)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(b): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let title = clean_line(&b.title, "title", actors::session::state::MAX_TITLE_CHARS)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let capacity = b.capacity.unwrap_or(DEFAULT_CAPACITY);
    // The room checks every field again when it loads; checking here first keeps a bad row out.
    let info = actors::session::state::SessionInfo {
        title,
        description: b.description,
        scheduled_at: b.scheduled_at,
        capacity,
    };
    let id = SessionId::new();
    actors::session::state::SessionState::new(id, user, info.clone())?;
    state.limits.create(user, Quota::Sessions).await?;
    let record = SessionRecord {
        id,
        created_by: Some(user),
        title: info.title,
        description: info.description,
        status: SessionStatus::Scheduled,
        scheduled_at: info.scheduled_at,
        capacity,
        created_at: Utc::now(),
    };
    state.store.create_session(&record).await?;
    let me = user_caller(&state, id, user).await?;
    let op = match b.settings {
        Some(settings) => SessionOp::Update(SessionPatch {
            settings: Some(settings),
            ..SessionPatch::default()
        }),
        None => SessionOp::Describe,
    };
    let reply = call(&state, id, me, op).await?;
    Ok((StatusCode::CREATED, body(reply)))
}

/// `GET /api/v1/sessions`: the sessions the caller presents or moderates, newest first.
#[utoipa::path(get, path = "/sessions", tag = "sessions", security(("user" = [])), params(Page), responses((status = 200, description = "The sessions the caller presents or moderates, newest first.", body = SessionPage)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(page): Query<Page>,
) -> Result<Json<SessionPage>, ApiError> {
    let limit = page.limit.unwrap_or(20).clamp(1, MAX_PAGE);
    let rows = state
        .store
        .sessions_for_user(user, page.before, limit)
        .await?;
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|(s, _)| s.id))
        .flatten();
    Ok(Json(SessionPage {
        sessions: rows
            .into_iter()
            .map(|(s, role)| SessionSummary {
                id: s.id,
                title: s.title,
                status: s.status,
                scheduled_at: s.scheduled_at,
                capacity: s.capacity,
                role,
                created_at: s.created_at,
            })
            .collect(),
        next_before,
    }))
}

/// `GET /api/v1/sessions/{id}`: any registered user, or the session's guest.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 200, description = "The session.", body = SessionDetail)))]
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Json<Value>, ApiError> {
    let me = caller(&state, &headers, id).await?;
    Ok(body(call(&state, id, me, SessionOp::Describe).await?))
}

/// `PATCH /api/v1/sessions/{id}` (presenters).
#[utoipa::path(patch, path = "/sessions/{id}", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), request_body = UpdateBody, responses((status = 200, description = "Changed (presenters).", body = SessionDetail)))]
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<SessionId>,
    ApiJson(b): ApiJson<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    let title = b
        .title
        .map(|t| clean_line(&t, "title", actors::session::state::MAX_TITLE_CHARS))
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let patch = SessionPatch {
        title,
        description: b.description,
        scheduled_at: b.scheduled_at,
        capacity: b.capacity,
        settings: b.settings,
    };
    user_op(&state, id, user, SessionOp::Update(patch)).await
}

/// `DELETE /api/v1/sessions/{id}` (presenters).
#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 204, description = "Deleted (presenters).")))]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<StatusCode, ApiError> {
    let me = user_caller(&state, id, user).await?;
    call(&state, id, me, SessionOp::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/sessions/{id}/start` (presenters): `scheduled -> live`.
#[utoipa::path(post, path = "/sessions/{id}/start", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 200, description = "Live (presenters).", body = SessionDetail)))]
pub async fn start(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Json<Value>, ApiError> {
    user_op(&state, id, user, SessionOp::Start).await
}

/// `POST /api/v1/sessions/{id}/end` (presenters): `live -> ended`.
#[utoipa::path(post, path = "/sessions/{id}/end", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 200, description = "Ended (presenters).", body = SessionDetail)))]
pub async fn end(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Json<Value>, ApiError> {
    user_op(&state, id, user, SessionOp::End).await
}

/// `POST /api/v1/sessions/{id}/staff` (presenters): adds a co-presenter or moderator by email.
#[utoipa::path(post, path = "/sessions/{id}/staff", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), request_body = StaffBody, responses((status = 200, description = "Added or changed (presenters).", body = OffsetAnswer)))]
pub async fn add_staff(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<SessionId>,
    ApiJson(b): ApiJson<StaffBody>,
) -> Result<Json<Value>, ApiError> {
    let email = normalize_email(&b.email).map_err(|e| ApiError::invalid(e.to_string()))?;
    let me = user_caller(&state, id, user).await?;
    // Only presenters get past the room's check; misses are throttled like member additions.
    state.limits.begin_lookup(user, ip).await?;
    let target = match state.store.user_by_email(&email).await? {
        Some(account) if account.disabled_at.is_none() => account,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::UserNotFound,
                "no account with this email",
            ));
        }
    };
    state.limits.lookup_found(user, ip).await;
    let op = SessionOp::SetStaff {
        user: target.id,
        role: b.role,
    };
    Ok(body(call(&state, id, me, op).await?))
}

/// `DELETE /api/v1/sessions/{id}/staff/{user_id}` (presenters).
#[utoipa::path(delete, path = "/sessions/{id}/staff/{user_id}", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session."), ("user_id" = uuid::Uuid, Path, description = "The account.")), responses((status = 200, description = "Removed (presenters).", body = OffsetAnswer)))]
pub async fn remove_staff(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, target)): ApiPath<(SessionId, UserId)>,
) -> Result<Json<Value>, ApiError> {
    user_op(&state, id, user, SessionOp::RemoveStaff(target)).await
}

/// `POST /api/v1/sessions/{id}/join`: a guest joins with a display name (and, if they want, an
/// email) and gets a token for this session only. No account needed.
#[utoipa::path(post, path = "/sessions/{id}/join", tag = "sessions", params(("id" = uuid::Uuid, Path, description = "The session.")), request_body = JoinBody, responses((status = 201, description = "A guest's token for this session (no account needed).", body = GuestToken)))]
pub async fn join(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<SessionId>,
    ApiJson(b): ApiJson<JoinBody>,
) -> Result<(StatusCode, Json<GuestToken>), ApiError> {
    let name = clean_line(&b.display_name, "display_name", MAX_DISPLAY_NAME_CHARS)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let email = b
        .email
        .map(|e| normalize_email(&e))
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    state.limits.guest_join(ip).await?;
    let attendee = AttendeeId::new();
    let me = Caller {
        attendee,
        user: None,
        name: Some(name.clone()),
    };
    call(&state, id, me, SessionOp::Admit).await?;
    let now = Utc::now();
    // Not present until its WebSocket joins the room (which clears `left_at`).
    state
        .store
        .add_attendee(&AttendeeRecord {
            id: attendee,
            session: id,
            user: None,
            display_name: name.clone(),
            email,
            joined_at: now,
            left_at: Some(now),
        })
        .await?;
    let token = state.auth.issue_guest(id, attendee)?;
    Ok((
        StatusCode::CREATED,
        Json(GuestToken {
            attendee_id: attendee,
            session_id: id,
            display_name: name,
            token,
            token_type: "Bearer",
            expires_in: crate::auth::GUEST_TTL.as_secs(),
        }),
    ))
}

/// `POST /api/v1/sessions/{id}/leave`: the caller (guest or user) leaves; its connections leave
/// the room at once and the others see it go.
#[utoipa::path(post, path = "/sessions/{id}/leave", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 204, description = "The caller left; its connections leave the room.")))]
pub async fn leave(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&state, &headers, id).await?;
    call(&state, id, me, SessionOp::Leave).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/sessions/{id}/attendees` (presenters and moderators): everyone who joined, with
/// join and leave times, and the attendance summary.
#[utoipa::path(get, path = "/sessions/{id}/attendees", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 200, description = "Everyone who joined, and the attendance summary (presenters and moderators).", body = AttendeeList)))]
pub async fn attendees(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Json<AttendeeList>, ApiError> {
    staff_only(&state, id, user).await?;
    let records = state.store.attendees(id).await?;
    let visits = state.store.visits(id).await?;
    let summary = crate::analytics::attendance(&visits, Utc::now());
    let attendees = records
        .into_iter()
        .map(|a| AttendeeView {
            attendee_id: a.id,
            user_id: a.user,
            present: a.left_at.is_none(),
            display_name: a.display_name,
            email: a.email,
            joined_at: a.joined_at,
            left_at: a.left_at,
        })
        .collect();
    Ok(Json(AttendeeList { attendees, summary }))
}

/// Presenters and moderators only. Not on the staff, or no such session: the same answer, so
/// session ids cannot be probed.
async fn staff_only(state: &AppState, id: SessionId, user: UserId) -> Result<(), ApiError> {
    if state.store.session_staff(id, user).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "only the session's presenters and moderators see this",
        ));
    }
    Ok(())
}

/// `?format=json|csv`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Format {
    /// `json` (the default) or `csv` (one line per attendee).
    format: Option<String>,
}

/// A session as its members see it, with the caller's role and the attendees present.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes the room's answer (`SessionOp::Describe`).
pub struct SessionDetail {
    #[serde(flatten)]
    session: SessionView<'static>,
    /// The caller's role in the session.
    your_role: SessionRole,
    /// Attendees present now.
    attendee_count: u64,
}

/// A question, and the offset of the event that changed it.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes the room's answer to a question command.
pub struct QuestionAnswer {
    /// The question as the caller may see it.
    question: QuestionView<'static>,
    /// The event's offset (`null` when nothing was written).
    offset: Option<u64>,
}

/// The offset of the event a change wrote (`null` when it wrote none).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes the room's answer to staff changes.
pub struct OffsetAnswer {
    offset: Option<u64>,
}

/// A guest's token for one session.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GuestToken {
    /// The guest's attendee id (its peer id in signaling).
    attendee_id: AttendeeId,
    session_id: SessionId,
    display_name: String,
    /// `Authorization: Bearer <token>` on this session's routes and `/ws`.
    token: String,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds the token lasts.
    expires_in: u64,
}

/// Someone who joined a session.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttendeeView {
    attendee_id: AttendeeId,
    /// The account, for a registered user.
    user_id: Option<UserId>,
    display_name: String,
    email: Option<String>,
    joined_at: DateTime<Utc>,
    left_at: Option<DateTime<Utc>>,
    /// In the room now.
    present: bool,
}

/// A session's attendees.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttendeeList {
    attendees: Vec<AttendeeView>,
    summary: crate::analytics::Attendance,
}

/// A session's analytics report.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionReport {
    session_id: SessionId,
    title: String,
    status: SessionStatus,
    report: crate::analytics::Report,
}

/// STUN and TURN servers for the caller's peer connections.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IceServers {
    ice_servers: Vec<crate::turn::IceServer>,
    /// Seconds the TURN credentials last.
    ttl_secs: u64,
}

/// `GET /api/v1/sessions/{id}/analytics[?format=json|csv]` (presenters and moderators):
/// attendance, questions and votes over time, engagement per attendee, connection quality and
/// presenter actions; `csv` exports one line per attendee.
#[utoipa::path(get, path = "/sessions/{id}/analytics", tag = "sessions", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The session."), Format), responses((status = 200, description = "The report (presenters and moderators); with `format=csv`, one line per attendee.", content((SessionReport = "application/json"), (String = "text/csv")))))]
pub async fn analytics(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<SessionId>,
    Query(f): Query<Format>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    staff_only(&state, id, user).await?;
    let store = &state.store;
    let session = store.session(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "session not found",
        )
    })?;
    let report = crate::analytics::report(
        &store.attendees(id).await?,
        &store.visits(id).await?,
        &store.activity(id).await?,
        &store.quality(id).await?,
        Utc::now(),
    );
    match f.format.as_deref() {
        None | Some("json") => Ok(Json(SessionReport {
            session_id: id,
            title: session.title,
            status: session.status,
            report,
        })
        .into_response()),
        Some("csv") => Ok((
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/csv; charset=utf-8".to_owned(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"session-{id}.csv\""),
                ),
            ],
            crate::analytics::csv(&report),
        )
            .into_response()),
        Some(_) => Err(ApiError::invalid("format: must be json or csv")),
    }
}

/// `GET /api/v1/sessions/{id}/ice-servers`: STUN/TURN for the caller's peer connections.
#[utoipa::path(get, path = "/sessions/{id}/ice-servers", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 200, description = "STUN/TURN for the caller's peer connections.", body = IceServers)))]
pub async fn ice_servers(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Json<IceServers>, ApiError> {
    let me = caller(&state, &headers, id).await?;
    // The session must exist (and the caller be let in): the room answers that.
    call(&state, id, me.clone(), SessionOp::Describe).await?;
    let servers = crate::turn::ice_servers(
        &state.config.ice,
        &me.attendee.to_string(),
        Utc::now().timestamp(),
    );
    Ok(Json(IceServers {
        ice_servers: servers,
        ttl_secs: state.config.ice.turn_ttl_secs,
    }))
}

/// `GET /api/v1/sessions/{id}/questions`: the questions the caller may see, in priority order.
#[utoipa::path(get, path = "/sessions/{id}/questions", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 200, description = "The questions the caller may see, in priority order.", body = Vec<QuestionView>)))]
pub async fn questions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Json<Value>, ApiError> {
    let me = caller(&state, &headers, id).await?;
    Ok(body(call(&state, id, me, SessionOp::Questions).await?))
}

/// `POST /api/v1/sessions/{id}/questions`: asks a question.
#[utoipa::path(post, path = "/sessions/{id}/questions", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), request_body = AskBody, responses((status = 201, description = "Asked.", body = QuestionAnswer)))]
pub async fn ask(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<SessionId>,
    ApiJson(b): ApiJson<AskBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let me = caller(&state, &headers, id).await?;
    let ask = Ask {
        id: Uuid::now_v7(),
        text: b.text,
        anonymous: b.anonymous,
        author_name: None,
    };
    let reply = call(&state, id, me, SessionOp::Ask(ask)).await?;
    Ok((StatusCode::CREATED, body(reply)))
}

/// The session of a question, and the caller in it.
async fn question_caller(
    state: &AppState,
    headers: &HeaderMap,
    question: Uuid,
) -> Result<(SessionId, Caller), ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::QuestionNotFound,
            "question not found",
        )
    };
    let session = state
        .store
        .question_session(question)
        .await?
        .ok_or_else(not_found)?;
    let me = caller(state, headers, session).await?;
    Ok((session, me))
}

/// `POST /api/v1/questions/{id}/vote`: `{"vote": "up" | "down" | null}`.
#[utoipa::path(post, path = "/questions/{id}/vote", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The question.")), request_body = VoteBody, responses((status = 200, description = "The question with the new totals.", body = QuestionAnswer)))]
pub async fn vote(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<VoteBody>,
) -> Result<Json<Value>, ApiError> {
    let (session, me) = question_caller(&state, &headers, id).await?;
    let op = SessionOp::Vote { id, vote: b.vote };
    Ok(body(call(&state, session, me, op).await?))
}

/// `PATCH /api/v1/questions/{id}`: `{"text": ...}` (its author) or `{"action": ...}`
/// (presenters and moderators).
#[utoipa::path(patch, path = "/questions/{id}", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The question.")), request_body = QuestionPatch, responses((status = 200, description = "Edited by its author, or moderated.", body = QuestionAnswer)))]
pub async fn patch_question(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<QuestionPatch>,
) -> Result<Json<Value>, ApiError> {
    let op = match (b.text, b.action) {
        (Some(text), None) => SessionOp::Edit { id, text },
        (None, Some(action)) => SessionOp::Moderate { id, action },
        _ => return Err(ApiError::invalid("give exactly one of `text` and `action`")),
    };
    let (session, me) = question_caller(&state, &headers, id).await?;
    Ok(body(call(&state, session, me, op).await?))
}

/// `DELETE /api/v1/questions/{id}`: its author, presenters and moderators.
#[utoipa::path(delete, path = "/questions/{id}", tag = "sessions", security(("user" = []), ("guest" = [])), params(("id" = uuid::Uuid, Path, description = "The question.")), responses((status = 204, description = "Deleted (its author, presenters and moderators).")))]
pub async fn delete_question(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let (session, me) = question_caller(&state, &headers, id).await?;
    call(&state, session, me, SessionOp::DeleteQuestion(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
