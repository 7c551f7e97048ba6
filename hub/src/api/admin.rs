//! `/api/v1/admin/*`: the operator's routes, behind `HUB_ADMIN_TOKEN` ([`Operator`]).
//!
//! - `GET /admin/nodes`: the cluster's live nodes (this one alone when not in cluster mode).
//! - `POST /admin/nodes/{id}/drain`: that node drains and exits, as on SIGTERM.
//! - `GET /admin/rooms`: the rooms running in the cluster, with their node, epoch, offset and
//!   members.
//! - `POST /admin/rooms/{room}/move`: hands a room to another node.
//! - `GET /admin/users`, `/admin/workspaces`, `/admin/sessions` (pages, newest first) and each
//!   by id: the operator's lookups.
//! - `POST /admin/users/{id}/disable`: tokens refused, refresh tokens revoked, sockets closed.
//! - `POST /admin/users/{id}/enable`: the account may sign in again.
//! - `DELETE /admin/users/{id}`: the account is deleted as by the user themselves.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
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

/// `GET /api/v1/admin/nodes`: `{"cluster": bool, "node_id", "nodes": [{id, addr, started_at_ms,
/// heartbeat_at_ms, rooms, connections}]}`, sorted by id. Alone (no `REDIS_URL`), the one node is
/// this process, with its id `local`.
pub async fn nodes(State(state): State<AppState>, _: Operator) -> Json<Value> {
    match &state.cluster {
        Some(cluster) => Json(json!({
            "cluster": true,
            "node_id": cluster.node_id(),
            "nodes": &*cluster.live_nodes(),
        })),
        None => Json(json!({
            "cluster": false,
            "node_id": "local",
            "nodes": [{
                "id": "local",
                "addr": state.config.listen.to_string(),
                "rooms": state.router.active_rooms(),
                "connections": state.connections.len(),
            }],
        })),
    }
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

fn no_such_node(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no live node {id:?}"),
    )
}

fn unreachable_node(id: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        format!("node {id:?} could not be reached: {why}"),
    )
}

/// This node's id (`local` alone).
fn me(state: &AppState) -> &str {
    state.cluster.as_ref().map_or("local", |c| c.node_id())
}

/// An operator call passed to node `id`, answered as that node answers.
async fn on_node(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let node = state
        .cluster
        .as_ref()
        .and_then(|c| c.live_node(id))
        .ok_or_else(|| no_such_node(id))?;
    let token = crate::auth::bearer(headers).unwrap_or("");
    let (status, body) = super::forward::call_node(&node.addr, method, path, token, body)
        .await
        .map_err(|e| unreachable_node(id, &e))?;
    Ok((status, Json(body)))
}

/// `POST /api/v1/admin/nodes/{id}/drain`: `202` once the node (this one, or the one named,
/// reached through this one) has begun to drain: it hands its rooms to the others, closes its
/// clients with `4010`, and exits.
pub async fn drain_node(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if id == me(&state) {
        tracing::warn!(node = %id, "drain requested by the operator");
        state.drain.cancel();
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"node": id, "draining": true})),
        ));
    }
    let path = format!("/api/v1/admin/nodes/{id}/drain");
    on_node(&state, &id, &headers, Method::POST, &path, None).await
}

/// Which rooms `GET /admin/rooms` lists.
#[derive(serde::Deserialize)]
pub struct RoomsQuery {
    /// `node`: this node's only (what the node asking the others uses).
    scope: Option<String>,
}

/// `GET /api/v1/admin/rooms`: `{"rooms": [{room, node, epoch, offset, members}]}`, every node's
/// (each asked in turn; a node that does not answer is listed in `unreachable`).
pub async fn rooms(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    Query(q): Query<RoomsQuery>,
) -> Json<Value> {
    let here = me(&state).to_owned();
    let mut rooms: Vec<Value> = state
        .router
        .describe()
        .await
        .into_iter()
        .map(|r| json!({"room": r.room, "node": here, "epoch": r.epoch, "offset": r.offset, "members": r.members}))
        .collect();
    let mut unreachable = Vec::new();
    if q.scope.as_deref() != Some("node")
        && let Some(cluster) = &state.cluster
    {
        for node in cluster.live_nodes().iter().filter(|n| n.id != here) {
            let listed = on_node(
                &state,
                &node.id,
                &headers,
                Method::GET,
                "/api/v1/admin/rooms?scope=node",
                None,
            )
            .await;
            match listed {
                Ok((StatusCode::OK, Json(body))) => {
                    if let Some(more) = body["rooms"].as_array() {
                        rooms.extend(more.iter().cloned());
                    }
                }
                _ => unreachable.push(node.id.clone()),
            }
        }
    }
    Json(json!({"rooms": rooms, "unreachable": unreachable}))
}

/// `POST /api/v1/admin/rooms/{room}/move` `{"node": id}`: hands the room (`ws:<id>` or
/// `session:<id>`) to that node. `202` with `{"room", "from", "to"}`; its members resync and
/// continue there by offset.
pub async fn move_room(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    axum::extract::Path(room): axum::extract::Path<String>,
    super::ApiJson(body): super::ApiJson<MoveBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = parse_room(&room)
        .ok_or_else(|| ApiError::invalid("a room is `ws:<uuid>` or `session:<uuid>`"))?;
    let cluster = state.cluster.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Forbidden,
            "one node alone: there is nowhere to move a room",
        )
    })?;
    let target = cluster
        .live_node(&body.node)
        .filter(|n| !n.draining)
        .ok_or_else(|| no_such_node(&body.node))?;
    let here = cluster.node_id().to_owned();
    if state.router.runs(key) {
        if target.id == here {
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"room": room, "from": here, "to": here})),
            ));
        }
        state.router.hand_off(key, Some(target.id.clone()));
        if let Some(links) = &state.links {
            links
                .stats
                .handoffs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"room": room, "from": here, "to": target.id})),
        ));
    }
    let holder = cluster.lease_holder(&key.to_string()).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            e.to_string(),
        )
    })?;
    match holder {
        Some(node) if node != here && cluster.is_live(&node) => {
            let path = format!("/api/v1/admin/rooms/{room}/move");
            on_node(
                &state,
                &node,
                &headers,
                Method::POST,
                &path,
                Some(json!({"node": body.node})),
            )
            .await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "the room is not running on any node",
        )),
    }
}

/// `POST /admin/rooms/{room}/move`'s body.
#[derive(serde::Deserialize)]
pub struct MoveBody {
    /// The node to move it to.
    node: String,
}

/// `ws:<uuid>` or `session:<uuid>`.
fn parse_room(room: &str) -> Option<signaling::RoomKey> {
    let (kind, id) = room.split_once(':')?;
    let id = uuid::Uuid::parse_str(id).ok()?;
    match kind {
        "ws" => Some(signaling::RoomKey::Workspace(
            signaling::WorkspaceId::from_uuid(id),
        )),
        "session" => Some(signaling::RoomKey::Session(
            signaling::SessionId::from_uuid(id),
        )),
        _ => None,
    }
}

/// A page of an operator's list: `before` (an id: older than it) and `limit` (1–200, 50).
#[derive(serde::Deserialize)]
pub struct Page {
    before: Option<uuid::Uuid>,
    limit: Option<u32>,
    /// `GET /admin/users` only: the account with this email.
    email: Option<String>,
}

impl Page {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, 200)
    }
}

fn user_json(u: &persistence::UserRecord) -> Value {
    json!({"id": u.id, "email": u.email, "name": u.name, "created_at": u.created_at,
           "disabled": u.disabled_at.is_some()})
}

fn session_json(s: &persistence::SessionRecord) -> Value {
    json!({"id": s.id, "title": s.title, "status": s.status.as_str(), "created_by": s.created_by,
           "scheduled_at": s.scheduled_at, "capacity": s.capacity, "created_at": s.created_at})
}

/// Where a room runs: `{"node": id | null}` (the lease holder in a cluster; this node or none
/// alone).
async fn room_place(state: &AppState, room: signaling::RoomKey) -> Value {
    match &state.cluster {
        Some(cluster) => match cluster.lease_holder(&room.to_string()).await {
            Ok(node) => json!({"node": node}),
            Err(_) => json!({"node": null, "unknown": true}),
        },
        None => json!({"node": state.router.runs(room).then_some("local")}),
    }
}

/// The next page's cursor: the last item's id when the page is full.
fn next_cursor(items: &[Value], limit: u32) -> Value {
    if items.len() == limit as usize {
        items.last().map_or(Value::Null, |i| i["id"].clone())
    } else {
        Value::Null
    }
}

/// `GET /api/v1/admin/users`: `{"users": [...], "next": id | null}`, newest first; `?email=`
/// finds one account.
pub async fn list_users(
    State(state): State<AppState>,
    _: Operator,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    if let Some(email) = &page.email {
        let found = state
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?;
        let users: Vec<Value> = found.iter().map(user_json).collect();
        return Ok(Json(json!({"users": users, "next": null})));
    }
    let limit = page.limit();
    let users: Vec<Value> = state
        .store
        .list_users(page.before.map(UserId::from_uuid), limit)
        .await?
        .iter()
        .map(user_json)
        .collect();
    let next = next_cursor(&users, limit);
    Ok(Json(json!({"users": users, "next": next})))
}

/// `GET /api/v1/admin/users/{id}`: the account and its workspaces with its role in each.
pub async fn get_user(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .store
        .user_by_id(user)
        .await?
        .ok_or_else(no_such_account)?;
    let workspaces: Vec<Value> = state
        .store
        .workspaces_for_user(user)
        .await?
        .into_iter()
        .map(|(w, role)| json!({"id": w.id, "name": w.name, "role": role}))
        .collect();
    let mut body = user_json(&record);
    body["workspaces"] = json!(workspaces);
    Ok(Json(body))
}

/// `GET /api/v1/admin/workspaces`: `{"workspaces": [...], "next"}`, newest first.
pub async fn list_workspaces(
    State(state): State<AppState>,
    _: Operator,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit();
    let workspaces: Vec<Value> = state
        .store
        .list_workspaces(page.before.map(signaling::WorkspaceId::from_uuid), limit)
        .await?
        .into_iter()
        .map(|w| json!({"id": w.id, "name": w.name, "created_at": w.created_at}))
        .collect();
    let next = next_cursor(&workspaces, limit);
    Ok(Json(json!({"workspaces": workspaces, "next": next})))
}

/// `GET /api/v1/admin/workspaces/{id}`: the workspace, its members, and where its room runs.
pub async fn get_workspace(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<signaling::WorkspaceId>,
) -> Result<Json<Value>, ApiError> {
    let w = state.store.workspace(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such workspace",
        )
    })?;
    let members = state.store.members(id).await?;
    let room = room_place(&state, signaling::RoomKey::Workspace(id)).await;
    Ok(Json(
        json!({"id": w.id, "name": w.name, "created_at": w.created_at,
                   "members": members, "room": room}),
    ))
}

/// `GET /api/v1/admin/sessions`: `{"sessions": [...], "next"}`, newest first.
pub async fn list_sessions(
    State(state): State<AppState>,
    _: Operator,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit();
    let sessions: Vec<Value> = state
        .store
        .list_sessions(page.before.map(signaling::SessionId::from_uuid), limit)
        .await?
        .iter()
        .map(session_json)
        .collect();
    let next = next_cursor(&sessions, limit);
    Ok(Json(json!({"sessions": sessions, "next": next})))
}

/// `GET /api/v1/admin/sessions/{id}`: the session, its attendee count, and where its room runs.
pub async fn get_session(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<signaling::SessionId>,
) -> Result<Json<Value>, ApiError> {
    let s = state.store.session(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such session",
        )
    })?;
    let attendees = state.store.attendees(id).await?.len();
    let mut body = session_json(&s);
    body["attendees"] = json!(attendees);
    body["room"] = room_place(&state, signaling::RoomKey::Session(id)).await;
    Ok(Json(body))
}

/// The query of the job list.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/admin/jobs?state=dead|pending|sent&limit=<n>`: the outbox's jobs in a state
/// (`dead` by default: the ones that need an operator), newest first.
pub async fn list_jobs(
    State(state): State<AppState>,
    _: Operator,
    super::ApiQuery(q): super::ApiQuery<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    let wanted = match q.state.as_deref() {
        None | Some("dead") => persistence::JobState::Dead,
        Some("pending") => persistence::JobState::Pending,
        Some("sent") => persistence::JobState::Sent,
        Some(_) => return Err(ApiError::invalid("state: must be dead, pending or sent")),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let jobs = state.store.jobs(wanted, limit).await?;
    Ok(Json(json!({ "jobs": jobs })))
}

/// `POST /api/v1/admin/jobs/{id}/retry`: a dead job goes back in line with fresh attempts.
pub async fn retry_job(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    if !state.store.retry_job(id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no dead job with this id",
        ));
    }
    state.jobs.notify_one();
    Ok(StatusCode::ACCEPTED)
}
