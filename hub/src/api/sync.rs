//! `/api/v1/workspaces/{id}/sync/…` and `…/conflicts`: offline sync over REST. A push is a room
//! operation (its merge rules live in `actors::workspace::merge`); pull and status read the
//! journal once the room has committed what it acknowledged; the conflict ledger is read from
//! its table and settled through the room.

use actors::workspace::{Op, Reply, RoomError};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use signaling::server::durable_frame;
use signaling::sync::{Choice, Conflict, MAX_OPS, OpResult, SyncOp};
use signaling::task::Task;
use signaling::{ErrorCode, RoomKey, UserId, WorkspaceId};
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Most events one pull returns.
const MAX_PULL: u32 = 1000;

/// The body of a push.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    /// 1–100 operations, applied in order (each one read on its own, so that a malformed one
    /// is refused alone).
    #[schema(value_type = Vec<SyncOp>)]
    ops: Vec<Box<RawValue>>,
}

/// The answer to a push.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PushAnswer {
    /// One per operation, in the order of the batch.
    results: Vec<OpResult>,
    /// The room's offset after the batch.
    offset: u64,
}

/// `POST /api/v1/workspaces/{id}/sync/push`: `{"ops": [...]}` → `{"results": [...], "offset"}`,
/// one result per operation in order. A malformed operation, or one the caller may not make, is
/// refused on its own; the others apply.
#[utoipa::path(post, path = "/workspaces/{id}/sync/push", tag = "sync", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), request_body = PushBody, responses((status = 200, description = "One result per operation, in order: applied, merged, conflicted, duplicate or refused (with a code).", body = PushAnswer)))]
pub async fn push(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(body): ApiJson<PushBody>,
) -> Result<Json<PushAnswer>, ApiError> {
    state.limits.sync_by(user).await?;
    if body.ops.is_empty() || body.ops.len() > MAX_OPS {
        return Err(ApiError::invalid("ops: must hold 1-100 operations"));
    }
    let ops = signaling::sync::parse_ops(&body.ops);
    match state.router.call(id, user, Op::SyncPush(ops)).await? {
        Reply::Synced { results, offset } => Ok(Json(PushAnswer { results, offset })),
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// The room's offset, once it has committed every write it acknowledged; refuses non-members.
async fn head(state: &AppState, id: WorkspaceId, user: UserId) -> Result<u64, ApiError> {
    Ok(super::workspaces::describe(state, id, user).await?.offset)
}

/// The query of a pull.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PullParams {
    /// The last offset the client has applied.
    since: u64,
    /// Most events to return: 1–1000, 1000 by default.
    #[serde(default)]
    limit: Option<u32>,
}

/// What a pull answers, written by `pull` straight from the journal's records.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the answer `pull` writes as text.
pub struct PullAnswer {
    /// `events`, or `snapshot` when the journal no longer reaches back to `since`.
    mode: PullMode,
    /// With `events`: the durable events after `since`, in order, as sent over WebSocket.
    #[schema(value_type = Option<Vec<Object>>)]
    events: Option<Vec<Value>>,
    /// With `snapshot`: the whole state, as the WebSocket `workspace_snapshot`.
    #[schema(value_type = Option<Object>)]
    snapshot: Option<Value>,
    /// The offset the answer brings the client to.
    offset: u64,
    /// More events follow: pull again from `offset`.
    more: bool,
}

/// How a pull answers.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Part of `PullAnswer`.
#[schema(rename_all = "snake_case")]
pub enum PullMode {
    /// The events since the offset.
    Events,
    /// The whole state.
    Snapshot,
}

/// `GET /api/v1/workspaces/{id}/sync/pull?since=<offset>&limit=<n>`: the durable events after
/// `since` (`mode: events`, at most `limit` (1–1000, default 1000), `more` when there are others
/// after them), or the whole state (`mode: snapshot`) when the journal no longer reaches back.
#[utoipa::path(get, path = "/workspaces/{id}/sync/pull", tag = "sync", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), PullParams), responses((status = 200, description = "What changed since the offset, or a snapshot.", body = PullAnswer)))]
pub async fn pull(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(params): ApiQuery<PullParams>,
) -> Result<Response, ApiError> {
    state.limits.sync_by(user).await?;
    let limit = params.limit.unwrap_or(MAX_PULL);
    if !(1..=MAX_PULL).contains(&limit) {
        return Err(ApiError::invalid("limit: must be between 1 and 1000"));
    }
    let head = head(&state, id, user).await?;
    if params.since > head {
        return Err(ApiError::invalid(format!(
            "since: the workspace is at offset {head}"
        )));
    }
    let room = RoomKey::Workspace(id).to_string();
    let records = if params.since == head {
        Vec::new()
    } else {
        state
            .store
            .journal_since(&room, params.since, limit + 1)
            .await?
    };
    // The journal reaches back when its first record after `since` is `since + 1` (a trim
    // between two reads cannot slip a gap through this one).
    let gap = params.since < head
        && records
            .first()
            .is_none_or(|r| u64::try_from(r.seq).ok() != Some(params.since + 1));
    if gap {
        let Reply::Snapshot(frame) = state.router.call(id, user, Op::Snapshot).await? else {
            return Err(ApiError::internal(&"unexpected reply to a snapshot"));
        };
        let offset = serde_json::from_str::<Value>(&frame)
            .ok()
            .and_then(|v| v["offset"].as_u64())
            .unwrap_or(head);
        let body = format!(
            "{{\"mode\":\"snapshot\",\"offset\":{offset},\"snapshot\":{frame},\"more\":false}}"
        );
        return Ok(json_response(body));
    }
    let more = records.len() > limit as usize;
    let mut body = String::from("{\"mode\":\"events\",\"events\":[");
    let mut last = params.since;
    for (n, r) in records.iter().take(limit as usize).enumerate() {
        if n > 0 {
            body.push(',');
        }
        last = u64::try_from(r.seq).unwrap_or(last);
        body.push_str(&durable_frame(id, last, &r.event));
    }
    body.push_str(&format!("],\"offset\":{last},\"more\":{more}}}"));
    Ok(json_response(body))
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/v1/workspaces/{id}/sync/status`: the room's offset, the oldest offset a pull can
/// replay from, the open conflicts and the hub's clock.
#[utoipa::path(get, path = "/workspaces/{id}/sync/status", tag = "sync", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 200, description = "Where the workspace is.", body = SyncStatus)))]
pub async fn status(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<SyncStatus>, ApiError> {
    state.limits.sync_by(user).await?;
    let head = head(&state, id, user).await?;
    let room = RoomKey::Workspace(id).to_string();
    let oldest = state
        .store
        .journal_first(&room)
        .await?
        .map_or(head, |f| f.saturating_sub(1));
    let open = state.store.open_conflicts(id).await?;
    Ok(Json(SyncStatus {
        offset: head,
        oldest_offset: oldest,
        open_conflicts: open,
        server_time: Utc::now(),
    }))
}

/// The answer of `GET …/sync/status`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    /// The room's offset.
    offset: u64,
    /// The oldest offset a pull can replay from (older ones get a snapshot).
    oldest_offset: u64,
    /// Conflict ledger entries not yet settled.
    open_conflicts: u64,
    /// The hub's clock.
    server_time: DateTime<Utc>,
}

/// The query of the ledger list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConflictParams {
    /// `open` (the default), `resolved` or `all`.
    #[serde(default)]
    status: Option<String>,
    /// The `next` of the previous page.
    #[serde(default)]
    before: Option<Uuid>,
    /// 1–200, 50 by default.
    #[serde(default)]
    limit: Option<u32>,
}

/// A ledger entry, and how it was settled.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConflictEntry {
    /// The entry.
    #[serde(flatten)]
    conflict: Conflict,
    /// How it was settled; `null` while open.
    resolved: Option<Resolution>,
}

/// How a ledger entry was settled.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Resolution {
    /// `kept` or `lost`.
    choice: String,
    /// Who settled it.
    by: UserId,
    /// When.
    at: DateTime<Utc>,
}

impl From<persistence::ConflictRecord> for ConflictEntry {
    fn from(r: persistence::ConflictRecord) -> Self {
        Self {
            conflict: r.conflict,
            resolved: r
                .resolved
                .map(|(choice, by, at)| Resolution { choice, by, at }),
        }
    }
}

/// A page of the ledger.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConflictPage {
    /// Newest first.
    conflicts: Vec<ConflictEntry>,
    /// The `before` of the next page; `null` on the last one.
    next: Option<Uuid>,
}

/// `GET /api/v1/workspaces/{id}/conflicts?status=open|resolved|all&before=<id>&limit=<n>`: the
/// ledger, newest first (`open` by default; pages of 1–200, 50 by default).
#[utoipa::path(get, path = "/workspaces/{id}/conflicts", tag = "sync", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ConflictParams), responses((status = 200, description = "A page of the conflict ledger.", body = ConflictPage)))]
pub async fn conflicts(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(params): ApiQuery<ConflictParams>,
) -> Result<Json<ConflictPage>, ApiError> {
    let open = match params.status.as_deref() {
        None | Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some("all") => None,
        Some(_) => return Err(ApiError::invalid("status: must be open, resolved or all")),
    };
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit: must be between 1 and 200"));
    }
    head(&state, id, user).await?;
    let records = state
        .store
        .conflicts(id, open, params.before, limit)
        .await?;
    let next = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.conflict.id))
        .flatten();
    let conflicts = records.into_iter().map(ConflictEntry::from).collect();
    Ok(Json(ConflictPage { conflicts, next }))
}

/// The body of a resolution.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `kept` closes the entry; `lost` puts the losing value back.
    choice: Choice,
}

/// The answer to a resolution.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Resolved {
    /// The entry settled.
    conflict_id: Uuid,
    /// As sent.
    choice: Choice,
    /// The task as it is now (`null` when it is gone).
    task: Option<Task>,
    /// The offset of the `conflict_resolved` event.
    offset: Option<u64>,
}

/// `POST /api/v1/workspaces/{id}/conflicts/{conflict_id}/resolve`: `{"choice": "kept" | "lost"}`.
/// `lost` puts the losing value back (a deleted task is re-created); either way the entry is
/// settled and every member gets `conflict_resolved`.
#[utoipa::path(post, path = "/workspaces/{id}/conflicts/{conflict_id}/resolve", tag = "sync", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("conflict_id" = uuid::Uuid, Path, description = "The conflict ledger entry.")), request_body = ResolveBody, responses((status = 200, description = "Settled; every member gets `conflict_resolved`.", body = Resolved)))]
pub async fn resolve(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, conflict_id)): ApiPath<(WorkspaceId, Uuid)>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Resolved>, ApiError> {
    head(&state, id, user).await?;
    let record = state
        .store
        .conflict(id, conflict_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such conflict",
            )
        })?;
    if record.resolved.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::InvalidTransition,
            "this conflict is settled already",
        ));
    }
    let op = Op::ResolveConflict {
        conflict: Box::new(record.conflict),
        choice: body.choice,
    };
    let (task, offset) = match state.router.call(id, user, op).await {
        Ok(Reply::Task(task, offset)) => (Some(task), offset),
        Ok(Reply::Done(offset)) => (None, Some(offset)),
        Ok(other) => return Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
        Err(RoomError::TaskNotFound) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::TaskNotFound,
                "the task is gone: only `kept` can settle this conflict",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(Resolved {
        conflict_id,
        choice: body.choice,
        task,
        offset,
    }))
}
