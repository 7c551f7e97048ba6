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
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use signaling::session::SessionStatus;
use signaling::workspace::{Member, Role};
use signaling::{ErrorCode, SessionId, UserId, WorkspaceId};

use super::ApiPath;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::state::AppState;

/// The cluster's nodes (`GET /admin/nodes`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the answer `nodes` writes.
pub struct NodeList {
    /// Whether the hub runs as a cluster (`REDIS_URL`).
    cluster: bool,
    /// This node's id (`local` alone).
    node_id: String,
    /// The live nodes, by id; alone, this process with its `id`, `addr`, `rooms` and
    /// `connections`.
    nodes: Vec<NodeRow>,
}

/// A node in `GET /admin/nodes` (the fields from its registration in Redis; alone, only `id`,
/// `addr`, `rooms` and `connections`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Part of `NodeList`.
pub struct NodeRow {
    /// The node's id (`local` alone).
    id: String,
    /// Where it serves clients.
    addr: String,
    /// Cluster mode: where the other nodes reach it.
    link: Option<String>,
    /// Cluster mode: when it started, ms since the epoch.
    started_at_ms: Option<u64>,
    /// Cluster mode: its last heartbeat, ms since the epoch.
    heartbeat_at_ms: Option<u64>,
    /// Rooms running on it.
    rooms: u64,
    /// WebSocket connections open on it.
    connections: u64,
    /// Cluster mode: it is draining.
    draining: Option<bool>,
}

/// A node's answer to a drain.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the answer `drain_node` writes (or the named node does).
pub struct Draining {
    node: String,
    /// Always `true`.
    draining: bool,
}

/// A room running on a node.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Part of `RoomList`.
pub struct RoomInfo {
    /// `ws:<id>` or `session:<id>`.
    room: String,
    /// The node it runs on.
    node: String,
    /// Its lease epoch.
    epoch: u64,
    /// Its offset.
    offset: u64,
    /// Members connected.
    members: u64,
}

/// The rooms running in the cluster (`GET /admin/rooms`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the answer `rooms` writes from every node's.
pub struct RoomList {
    rooms: Vec<RoomInfo>,
    /// The nodes that did not answer.
    unreachable: Vec<String>,
}

/// A room handed to another node.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the answer `move_room` writes (or the room's node does).
pub struct Moved {
    room: String,
    from: String,
    to: String,
}

/// An account as the operator sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountView {
    id: UserId,
    email: String,
    name: String,
    created_at: DateTime<Utc>,
    /// Disabled by an operator.
    disabled: bool,
}

impl From<&persistence::UserRecord> for AccountView {
    fn from(u: &persistence::UserRecord) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            created_at: u.created_at,
            disabled: u.disabled_at.is_some(),
        }
    }
}

/// A page of accounts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountPage {
    /// Newest first.
    users: Vec<AccountView>,
    /// The `before` of the next page; `null` on the last one.
    next: Option<UserId>,
}

/// A workspace an account is in.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountWorkspace {
    id: WorkspaceId,
    name: String,
    /// The account's role there.
    role: Role,
}

/// An account with its workspaces.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountDetail {
    #[serde(flatten)]
    account: AccountView,
    workspaces: Vec<AccountWorkspace>,
}

/// A workspace in the operator's list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceRow {
    id: WorkspaceId,
    name: String,
    created_at: DateTime<Utc>,
}

/// A page of workspaces.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspacePage {
    /// Newest first.
    workspaces: Vec<WorkspaceRow>,
    /// The `before` of the next page; `null` on the last one.
    next: Option<WorkspaceId>,
}

/// Where a room runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Placement {
    /// The node running it (in a cluster: its lease holder; alone: `local`); `null` when
    /// none.
    node: Option<String>,
    /// Set when Redis could not be asked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unknown: bool,
}

/// A workspace with its members and where its room runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceRecordView {
    #[serde(flatten)]
    workspace: WorkspaceRow,
    members: Vec<Member>,
    room: Placement,
}

/// A session as the operator sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionRow {
    id: SessionId,
    title: String,
    status: SessionStatus,
    created_by: Option<UserId>,
    scheduled_at: Option<DateTime<Utc>>,
    capacity: u32,
    created_at: DateTime<Utc>,
}

impl From<&persistence::SessionRecord> for SessionRow {
    fn from(s: &persistence::SessionRecord) -> Self {
        Self {
            id: s.id,
            title: s.title.clone(),
            status: s.status,
            created_by: s.created_by,
            scheduled_at: s.scheduled_at,
            capacity: s.capacity,
            created_at: s.created_at,
        }
    }
}

/// A page of sessions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionRowPage {
    /// Newest first.
    sessions: Vec<SessionRow>,
    /// The `before` of the next page; `null` on the last one.
    next: Option<SessionId>,
}

/// A session with its attendee count and where its room runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionRecordView {
    #[serde(flatten)]
    session: SessionRow,
    /// Everyone who ever joined.
    attendees: usize,
    room: Placement,
}

/// Jobs of the outbox.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    /// Newest first.
    jobs: Vec<persistence::Job>,
}

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
#[utoipa::path(get, path = "/admin/nodes", tag = "admin", security(("operator" = [])), responses((status = 200, description = "The cluster's live nodes.", body = NodeList)))]
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
#[utoipa::path(post, path = "/admin/users/{id}/disable", tag = "admin", security(("operator" = [])), params(("id" = uuid::Uuid, Path, description = "The account.")), responses((status = 204, description = "Tokens refused, refresh tokens revoked, sockets closed.")))]
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
#[utoipa::path(post, path = "/admin/users/{id}/enable", tag = "admin", security(("operator" = [])), params(("id" = uuid::Uuid, Path, description = "The account.")), responses((status = 204, description = "The account may sign in again.")))]
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
#[utoipa::path(delete, path = "/admin/users/{id}", tag = "admin", security(("operator" = [])), params(("id" = uuid::Uuid, Path, description = "The account.")), responses((status = 204, description = "Deleted as by its owner.")))]
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
#[utoipa::path(post, path = "/admin/nodes/{id}/drain", tag = "admin", security(("operator" = [])), params(("id" = String, Path, description = "The node (`local` alone).")), responses((status = 202, description = "The node has begun to drain: it hands its rooms over, closes its clients with 4010 and exits.", body = Draining)))]
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
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomsQuery {
    /// `node`: this node's only (what the node asking the others uses).
    scope: Option<String>,
}

/// `GET /api/v1/admin/rooms`: `{"rooms": [{room, node, epoch, offset, members}]}`, every node's
/// (each asked in turn; a node that does not answer is listed in `unreachable`).
#[utoipa::path(get, path = "/admin/rooms", tag = "admin", security(("operator" = [])), params(RoomsQuery), responses((status = 200, description = "Every node's rooms.", body = RoomList)))]
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
#[utoipa::path(post, path = "/admin/rooms/{room}/move", tag = "admin", security(("operator" = [])), params(("room" = String, Path, description = "`ws:<id>` or `session:<id>`.")), request_body = MoveBody, responses((status = 202, description = "Handed over; its members resync there by offset.", body = Moved)))]
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
#[derive(serde::Deserialize, utoipa::ToSchema)]
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
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The `next` of the previous page.
    before: Option<uuid::Uuid>,
    /// 1–200, 50 by default.
    limit: Option<u32>,
}

/// The query of `GET /admin/users`: a page, or the account with an email.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The `next` of the previous page.
    before: Option<uuid::Uuid>,
    /// 1–200, 50 by default.
    limit: Option<u32>,
    /// The account with this email (then no page).
    email: Option<String>,
}

impl Page {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, 200)
    }
}

/// Where a room runs (the lease holder in a cluster; this node or none alone).
async fn room_place(state: &AppState, room: signaling::RoomKey) -> Placement {
    match &state.cluster {
        Some(cluster) => match cluster.lease_holder(&room.to_string()).await {
            Ok(node) => Placement {
                node,
                unknown: false,
            },
            Err(_) => Placement {
                node: None,
                unknown: true,
            },
        },
        None => Placement {
            node: state.router.runs(room).then(|| "local".to_owned()),
            unknown: false,
        },
    }
}

/// The next page's cursor: the last item's id when the page is full.
fn next_cursor<T, I>(items: &[T], limit: u32, id: impl Fn(&T) -> I) -> Option<I> {
    if items.len() == limit as usize {
        items.last().map(id)
    } else {
        None
    }
}

/// `GET /api/v1/admin/users`: `{"users": [...], "next": id | null}`, newest first; `?email=`
/// finds one account.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("operator" = [])), params(UserQuery), responses((status = 200, description = "Accounts, newest first (or the one with `email`).", body = AccountPage)))]
pub async fn list_users(
    State(state): State<AppState>,
    _: Operator,
    Query(query): Query<UserQuery>,
) -> Result<Json<AccountPage>, ApiError> {
    if let Some(email) = &query.email {
        let found = state
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?;
        let users = found.iter().map(AccountView::from).collect();
        return Ok(Json(AccountPage { users, next: None }));
    }
    let page = Page {
        before: query.before,
        limit: query.limit,
    };
    let limit = page.limit();
    let users: Vec<AccountView> = state
        .store
        .list_users(page.before.map(UserId::from_uuid), limit)
        .await?
        .iter()
        .map(AccountView::from)
        .collect();
    let next = next_cursor(&users, limit, |u| u.id);
    Ok(Json(AccountPage { users, next }))
}

/// `GET /api/v1/admin/users/{id}`: the account and its workspaces with its role in each.
#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin", security(("operator" = [])), params(("id" = uuid::Uuid, Path, description = "The account.")), responses((status = 200, description = "The account and its workspaces.", body = AccountDetail)))]
pub async fn get_user(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<AccountDetail>, ApiError> {
    let record = state
        .store
        .user_by_id(user)
        .await?
        .ok_or_else(no_such_account)?;
    let workspaces = state
        .store
        .workspaces_for_user(user)
        .await?
        .into_iter()
        .map(|(w, role)| AccountWorkspace {
            id: w.id,
            name: w.name,
            role,
        })
        .collect();
    Ok(Json(AccountDetail {
        account: AccountView::from(&record),
        workspaces,
    }))
}

/// `GET /api/v1/admin/workspaces`: `{"workspaces": [...], "next"}`, newest first.
#[utoipa::path(get, path = "/admin/workspaces", tag = "admin", security(("operator" = [])), params(Page), responses((status = 200, description = "Workspaces, newest first.", body = WorkspacePage)))]
pub async fn list_workspaces(
    State(state): State<AppState>,
    _: Operator,
    Query(page): Query<Page>,
) -> Result<Json<WorkspacePage>, ApiError> {
    let limit = page.limit();
    let workspaces: Vec<WorkspaceRow> = state
        .store
        .list_workspaces(page.before.map(WorkspaceId::from_uuid), limit)
        .await?
        .into_iter()
        .map(|w| WorkspaceRow {
            id: w.id,
            name: w.name,
            created_at: w.created_at,
        })
        .collect();
    let next = next_cursor(&workspaces, limit, |w| w.id);
    Ok(Json(WorkspacePage { workspaces, next }))
}

/// `GET /api/v1/admin/workspaces/{id}`: the workspace, its members, and where its room runs.
#[utoipa::path(get, path = "/admin/workspaces/{id}", tag = "admin", security(("operator" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), responses((status = 200, description = "The workspace, its members and where its room runs.", body = WorkspaceRecordView)))]
pub async fn get_workspace(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<WorkspaceId>,
) -> Result<Json<WorkspaceRecordView>, ApiError> {
    let w = state.store.workspace(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such workspace",
        )
    })?;
    let members = state.store.members(id).await?;
    let room = room_place(&state, signaling::RoomKey::Workspace(id)).await;
    Ok(Json(WorkspaceRecordView {
        workspace: WorkspaceRow {
            id: w.id,
            name: w.name,
            created_at: w.created_at,
        },
        members,
        room,
    }))
}

/// `GET /api/v1/admin/sessions`: `{"sessions": [...], "next"}`, newest first.
#[utoipa::path(get, path = "/admin/sessions", tag = "admin", security(("operator" = [])), params(Page), responses((status = 200, description = "Sessions, newest first.", body = SessionRowPage)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    _: Operator,
    Query(page): Query<Page>,
) -> Result<Json<SessionRowPage>, ApiError> {
    let limit = page.limit();
    let sessions: Vec<SessionRow> = state
        .store
        .list_sessions(page.before.map(SessionId::from_uuid), limit)
        .await?
        .iter()
        .map(SessionRow::from)
        .collect();
    let next = next_cursor(&sessions, limit, |s| s.id);
    Ok(Json(SessionRowPage { sessions, next }))
}

/// `GET /api/v1/admin/sessions/{id}`: the session, its attendee count, and where its room runs.
#[utoipa::path(get, path = "/admin/sessions/{id}", tag = "admin", security(("operator" = [])), params(("id" = uuid::Uuid, Path, description = "The session.")), responses((status = 200, description = "The session, its attendee count and where its room runs.", body = SessionRecordView)))]
pub async fn get_session(
    State(state): State<AppState>,
    _: Operator,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Json<SessionRecordView>, ApiError> {
    let s = state.store.session(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such session",
        )
    })?;
    let attendees = state.store.attendees(id).await?.len();
    Ok(Json(SessionRecordView {
        session: SessionRow::from(&s),
        attendees,
        room: room_place(&state, signaling::RoomKey::Session(id)).await,
    }))
}

/// The query of the job list.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// `dead` (the default), `pending` or `sent`.
    #[serde(default)]
    state: Option<String>,
    /// 1–200, 50 by default.
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/admin/jobs?state=dead|pending|sent&limit=<n>`: the outbox's jobs in a state
/// (`dead` by default: the ones that need an operator), newest first.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", security(("operator" = [])), params(JobsQuery), responses((status = 200, description = "The outbox's jobs in that state.", body = JobList)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    _: Operator,
    super::ApiQuery(q): super::ApiQuery<JobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    let wanted = match q.state.as_deref() {
        None | Some("dead") => persistence::JobState::Dead,
        Some("pending") => persistence::JobState::Pending,
        Some("sent") => persistence::JobState::Sent,
        Some(_) => return Err(ApiError::invalid("state: must be dead, pending or sent")),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let jobs = state.store.jobs(wanted, limit).await?;
    Ok(Json(JobList { jobs }))
}

/// `POST /api/v1/admin/jobs/{id}/retry`: a dead job goes back in line with fresh attempts.
#[utoipa::path(post, path = "/admin/jobs/{id}/retry", tag = "admin", security(("operator" = [])), params(("id" = uuid::Uuid, Path, description = "The job.")), responses((status = 202, description = "The dead job is back in line with fresh attempts.")))]
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
