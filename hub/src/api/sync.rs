//! `/api/v1/workspaces/{id}/sync/…` and `…/conflicts`: offline sync over REST. A push is a room
//! operation (its merge rules live in `actors::workspace::merge`); pull and status read the
//! journal once the room has committed what it acknowledged; the conflict ledger is read from
//! its table and settled through the room.

use actors::workspace::{Op, Reply, RoomError};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use signaling::server::durable_frame;
use signaling::sync::{Choice, MAX_OPS};
use signaling::{ErrorCode, RoomKey, UserId, WorkspaceId};
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Most events one pull returns.
const MAX_PULL: u32 = 1000;

/// The body of a push.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    ops: Vec<Box<RawValue>>,
}

/// `POST /api/v1/workspaces/{id}/sync/push`: `{"ops": [...]}` → `{"results": [...], "offset"}`,
/// one result per operation in order. A malformed operation, or one the caller may not make, is
/// refused on its own; the others apply.
pub async fn push(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(body): ApiJson<PushBody>,
) -> Result<Json<Value>, ApiError> {
    state.limits.sync_by(user).await?;
    if body.ops.is_empty() || body.ops.len() > MAX_OPS {
        return Err(ApiError::invalid("ops: must hold 1-100 operations"));
    }
    let ops = signaling::sync::parse_ops(&body.ops);
    match state.router.call(id, user, Op::SyncPush(ops)).await? {
        Reply::Synced { results, offset } => {
            Ok(Json(json!({"results": results, "offset": offset})))
        }
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// The room's offset, once it has committed every write it acknowledged; refuses non-members.
async fn head(state: &AppState, id: WorkspaceId, user: UserId) -> Result<u64, ApiError> {
    Ok(super::workspaces::describe(state, id, user).await?.offset)
}

/// The query of a pull.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullParams {
    since: u64,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/workspaces/{id}/sync/pull?since=<offset>&limit=<n>`: the durable events after
/// `since` (`mode: events`, at most `limit` (1–1000, default 1000), `more` when there are others
/// after them), or the whole state (`mode: snapshot`) when the journal no longer reaches back.
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
pub async fn status(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<Value>, ApiError> {
    state.limits.sync_by(user).await?;
    let head = head(&state, id, user).await?;
    let room = RoomKey::Workspace(id).to_string();
    let oldest = state
        .store
        .journal_first(&room)
        .await?
        .map_or(head, |f| f.saturating_sub(1));
    let open = state.store.open_conflicts(id).await?;
    Ok(Json(json!({
        "offset": head,
        "oldest_offset": oldest,
        "open_conflicts": open,
        "server_time": Utc::now(),
    })))
}

/// The query of the ledger list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    before: Option<Uuid>,
    #[serde(default)]
    limit: Option<u32>,
}

fn conflict_json(r: &persistence::ConflictRecord) -> Value {
    let mut v = serde_json::to_value(&r.conflict).unwrap_or(Value::Null);
    v["resolved"] = match &r.resolved {
        Some((choice, by, at)) => json!({"choice": choice, "by": by, "at": at}),
        None => Value::Null,
    };
    v
}

/// `GET /api/v1/workspaces/{id}/conflicts?status=open|resolved|all&before=<id>&limit=<n>`: the
/// ledger, newest first (`open` by default; pages of 1–200, 50 by default).
pub async fn conflicts(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(params): ApiQuery<ConflictParams>,
) -> Result<Json<Value>, ApiError> {
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
    let list: Vec<Value> = records.iter().map(conflict_json).collect();
    Ok(Json(json!({"conflicts": list, "next": next})))
}

/// The body of a resolution.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    choice: Choice,
}

/// `POST /api/v1/workspaces/{id}/conflicts/{conflict_id}/resolve`: `{"choice": "kept" | "lost"}`.
/// `lost` puts the losing value back (a deleted task is re-created); either way the entry is
/// settled and every member gets `conflict_resolved`.
pub async fn resolve(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, conflict_id)): ApiPath<(WorkspaceId, Uuid)>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "conflict_id": conflict_id,
        "choice": body.choice,
        "task": task,
        "offset": offset,
    })))
}
