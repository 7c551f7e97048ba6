//! `/api/v1/workspaces/{id}/tasks`: the task board over REST. Every write is a room operation,
//! exactly like its WebSocket twin: journaled, then broadcast to the room's members.

use actors::workspace::{Op, Reply};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use persistence::{TaskCursor, TaskQuery, TaskSort};
use serde::Deserialize;
use serde_json::{Map, Value};
use signaling::task::{Task, TaskChanges, TaskDraft};
use signaling::{CategoryId, TaskId, UserId, WorkspaceId};

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

fn task_of(reply: Reply) -> Result<Task, ApiError> {
    match reply {
        Reply::Task(task, _) => Ok(task),
        other => Err(ApiError::internal(&format!("unexpected reply {other:?}"))),
    }
}

/// The query of `GET …/tasks`: filters, order and page. Every parameter is optional.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskParams {
    /// `todo`, `in_progress`, `done`: one or several, comma-separated.
    status: Option<String>,
    /// `low`, `medium`, `high`: one or several, comma-separated.
    priority: Option<String>,
    /// `me`, `none` (unassigned) or an account id.
    assignee: Option<String>,
    /// `none` (no category) or a category id.
    category: Option<String>,
    /// `none` (top-level tasks) or the id of the task whose subtasks to list.
    parent: Option<String>,
    /// Tasks with this tag.
    tag: Option<String>,
    /// Due strictly before this RFC 3339 time.
    due_before: Option<String>,
    /// Due at or after this RFC 3339 time.
    due_after: Option<String>,
    /// `true` or `false`.
    #[param(value_type = Option<bool>)]
    completed: Option<String>,
    /// `true` (with a recurrence rule) or `false`.
    #[param(value_type = Option<bool>)]
    recurring: Option<String>,
    /// Text search over title, description and tags: every word must match, as a prefix (at
    /// most 200 characters, 8 words).
    q: Option<String>,
    /// `position` (the default), `created_at`, `updated_at`, `due_date`, `priority`, `title`.
    sort: Option<String>,
    /// `asc` (the default) or `desc`.
    order: Option<String>,
    /// The `next` of the previous page (same sort and order).
    cursor: Option<String>,
    /// 1–200, 50 by default.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// A page of tasks, as `GET …/tasks` writes it (straight from the stored task documents).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the page `page` writes as text.
pub struct TaskPage {
    /// The tasks, in the order asked for.
    tasks: Vec<Task>,
    /// The cursor of the next page; `null` on the last one.
    next: Option<String>,
}

/// The body of `PUT …/tasks/{task_id}`: the fields of [`TaskChanges`] to change, and optionally
/// `base_version` (when given and stale, the update is refused with `409 version_conflict`;
/// without it, the last writer wins). `update` reads it field by field; its schema is
/// `TaskChanges`'s with `base_version` beside the fields.
pub struct TaskUpdateBody;

impl utoipa::PartialSchema for TaskUpdateBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Object, Schema, Type};
        let mut schema = <TaskChanges as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.description = Some(
                "The fields to change, and optionally `base_version`: when given and stale, \
                 the update is refused with `409 version_conflict`; without it, the last \
                 writer wins."
                    .into(),
            );
            let version = Object::builder()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .description(Some("The version the change was based on."))
                .build();
            object
                .properties
                .insert("base_version".into(), RefOr::T(Schema::Object(version)));
        }
        schema
    }
}

impl utoipa::ToSchema for TaskUpdateBody {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <TaskChanges as utoipa::ToSchema>::schemas(schemas);
    }
}

/// Longest search text, in characters.
const MAX_SEARCH_CHARS: usize = 200;
/// Most words a search matches on.
const MAX_SEARCH_WORDS: usize = 8;
/// Largest page.
const MAX_PAGE: u32 = 200;
/// Page size when none is asked for.
const DEFAULT_PAGE: u32 = 50;

fn bad(param: &str, rule: &str) -> ApiError {
    ApiError::invalid(format!("{param}: {rule}"))
}

fn list_of<T: PartialEq>(
    param: &str,
    raw: Option<&str>,
    rule: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut out: Vec<T> = Vec::new();
    for v in raw.split(',') {
        let v = parse(v.trim()).ok_or_else(|| bad(param, rule))?;
        // Each value once: a list is as short as the values there are.
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// `none` (not set) or an id.
fn id_or_none<T: std::str::FromStr>(
    param: &str,
    raw: Option<&str>,
) -> Result<Option<Option<T>>, ApiError> {
    match raw {
        None => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(v) => v
            .parse()
            .map(|id| Some(Some(id)))
            .map_err(|_| bad(param, "must be an id or `none`")),
    }
}

fn flag(param: &str, raw: Option<&str>) -> Result<Option<bool>, ApiError> {
    match raw {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(bad(param, "must be true or false")),
    }
}

fn instant(param: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|v| {
        DateTime::parse_from_rfc3339(v)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| bad(param, "must be an RFC 3339 time"))
    })
    .transpose()
}

impl TaskParams {
    /// The store's query, each bad parameter refused by name.
    fn query(&self, me: UserId) -> Result<TaskQuery, ApiError> {
        let status = list_of(
            "status",
            self.status.as_deref(),
            "must be todo, in_progress or done (comma-separated)",
            |v| serde_json::from_value(Value::String(v.into())).ok(),
        )?;
        let priority = list_of(
            "priority",
            self.priority.as_deref(),
            "must be low, medium or high (comma-separated)",
            |v| serde_json::from_value(Value::String(v.into())).ok(),
        )?;
        let assignee = match self.assignee.as_deref() {
            Some("me") => Some(Some(me)),
            other => id_or_none("assignee", other)?,
        };
        let tag = self
            .tag
            .as_deref()
            .map(|t| {
                signaling::text::clean_line(t, "tag", signaling::task::MAX_TAG_CHARS)
                    .map_err(|e| ApiError::invalid(e.to_string()))
            })
            .transpose()?;
        let words = match self.q.as_deref() {
            None => Vec::new(),
            Some(q) if q.chars().count() > MAX_SEARCH_CHARS => {
                return Err(bad("q", "must be at most 200 characters"));
            }
            Some(q) => {
                let words = persistence::search_words(q, MAX_SEARCH_WORDS);
                if words.is_empty() {
                    return Err(bad("q", "must hold a letter or a digit"));
                }
                words
            }
        };
        let sort = match self.sort.as_deref() {
            None => TaskSort::default(),
            Some(s) => TaskSort::parse(s).ok_or_else(|| {
                bad(
                    "sort",
                    "must be position, created_at, updated_at, due_date, priority or title",
                )
            })?,
        };
        let desc = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(bad("order", "must be asc or desc")),
        };
        let after = self
            .cursor
            .as_deref()
            .map(|c| {
                decode_cursor(c)
                    .filter(|c| c.sort == sort.as_str() && c.desc == desc)
                    .filter(|c| {
                        // The key's type is the sort column's.
                        let text = matches!(sort, TaskSort::Position | TaskSort::Title);
                        text == matches!(c.key, persistence::SortValue::Text(_))
                    })
                    .ok_or_else(|| {
                        bad(
                            "cursor",
                            "is not a cursor of this list (same sort and order)",
                        )
                    })
            })
            .transpose()?;
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(l) => l
                .parse()
                .ok()
                .filter(|l| (1..=MAX_PAGE).contains(l))
                .ok_or_else(|| bad("limit", "must be between 1 and 200"))?,
        };
        Ok(TaskQuery {
            status,
            priority,
            assignee,
            category: id_or_none::<CategoryId>("category", self.category.as_deref())?,
            parent: id_or_none::<TaskId>("parent", self.parent.as_deref())?,
            tag,
            due_before: instant("due_before", self.due_before.as_deref())?,
            due_after: instant("due_after", self.due_after.as_deref())?,
            completed: flag("completed", self.completed.as_deref())?,
            recurring: flag("recurring", self.recurring.as_deref())?,
            words,
            sort,
            desc,
            after,
            limit,
        })
    }
}

fn encode_cursor(cursor: &TaskCursor) -> Result<String, ApiError> {
    let json = serde_json::to_vec(cursor).map_err(|e| ApiError::internal(&e))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_cursor(text: &str) -> Option<TaskCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `GET /api/v1/workspaces/{id}/tasks`: a page of the tasks that match the filters, in the asked
/// order (board order by default): `{"tasks": [...], "next": cursor | null}`. Read from the
/// board's index, once the room has said the caller is a member and committed every write it
/// acknowledged.
#[utoipa::path(get, path = "/workspaces/{id}/tasks", tag = "tasks", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), TaskParams), responses((status = 200, description = "A page of the board's tasks.", body = TaskPage)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(params): ApiQuery<TaskParams>,
) -> Result<Response, ApiError> {
    page(&state, user, id, params.query(user)?).await
}

/// `GET /api/v1/workspaces/{id}/tasks/recurring`: [`list`] of the tasks with a recurrence rule.
#[utoipa::path(get, path = "/workspaces/{id}/tasks/recurring", tag = "tasks", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), TaskParams), responses((status = 200, description = "A page of the tasks with a recurrence rule (the other filters apply).", body = TaskPage)))]
pub async fn recurring(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiQuery(params): ApiQuery<TaskParams>,
) -> Result<Response, ApiError> {
    let mut query = params.query(user)?;
    query.recurring = Some(true);
    page(&state, user, id, query).await
}

async fn page(
    state: &AppState,
    user: UserId,
    id: WorkspaceId,
    mut query: TaskQuery,
) -> Result<Response, ApiError> {
    // The room says whether the caller is a member, loads (and so indexes) the board if it was
    // not running, and answers only once its appends in flight are committed.
    super::workspaces::describe(state, id, user).await?;
    let limit = query.limit as usize;
    // One more than the page, to know whether another follows.
    query.limit += 1;
    let mut docs = state.store.board_tasks(id, &query).await?;
    let next = if docs.len() > limit {
        docs.truncate(limit);
        let last: Task = docs
            .last()
            .map(|d| serde_json::from_str(d))
            .transpose()
            .map_err(|e| ApiError::internal(&e))?
            .ok_or_else(|| ApiError::internal(&"an empty page has no last task"))?;
        Value::String(encode_cursor(&TaskCursor::after(
            query.sort, query.desc, &last,
        ))?)
    } else {
        Value::Null
    };
    let mut body = String::with_capacity(docs.iter().map(|d| d.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"tasks\":[");
    body.push_str(&docs.join(","));
    body.push_str("],\"next\":");
    body.push_str(&next.to_string());
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /api/v1/workspaces/{id}/tasks`.
#[utoipa::path(post, path = "/workspaces/{id}/tasks", tag = "tasks", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace.")), request_body = TaskDraft, responses((status = 201, description = "Created; the room's members see `task_created`.", body = Task)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<WorkspaceId>,
    ApiJson(mut draft): ApiJson<TaskDraft>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    draft.normalize()?;
    let task = task_of(state.router.call(id, user, Op::CreateTask(draft)).await?)?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// `GET /api/v1/workspaces/{id}/tasks/{task_id}`.
#[utoipa::path(get, path = "/workspaces/{id}/tasks/{task_id}", tag = "tasks", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("task_id" = uuid::Uuid, Path, description = "The task.")), responses((status = 200, description = "The task.", body = Task)))]
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(task_of(
        state.router.call(id, user, Op::GetTask(task_id)).await?,
    )?))
}

/// `PUT /api/v1/workspaces/{id}/tasks/{task_id}`: the fields to change, and optionally
/// `base_version` (refused with 409 `version_conflict` when stale; without it, last writer wins).
#[utoipa::path(put, path = "/workspaces/{id}/tasks/{task_id}", tag = "tasks", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("task_id" = uuid::Uuid, Path, description = "The task.")), request_body = TaskUpdateBody, responses((status = 200, description = "The task as changed.", body = Task)))]
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
    ApiJson(mut body): ApiJson<Map<String, Value>>,
) -> Result<Json<Task>, ApiError> {
    let base_version = match body.remove("base_version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ApiError::invalid("base_version: must be a non-negative integer"))?,
        ),
    };
    // Parsed again from the rest of the body so that a bad field is named like everywhere else.
    let rest = serde_json::to_vec(&Value::Object(body)).map_err(|e| ApiError::internal(&e))?;
    let mut changes: TaskChanges = signaling::json::from_slice(&rest)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message))?;
    changes.normalize()?;
    let op = Op::UpdateTask {
        task_id,
        base_version,
        changes,
    };
    Ok(Json(task_of(state.router.call(id, user, op).await?)?))
}

/// `POST /api/v1/workspaces/{id}/tasks/{task_id}/complete`.
#[utoipa::path(post, path = "/workspaces/{id}/tasks/{task_id}/complete", tag = "tasks", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("task_id" = uuid::Uuid, Path, description = "The task.")), responses((status = 200, description = "The task, completed.", body = Task)))]
pub async fn complete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
) -> Result<Json<Task>, ApiError> {
    let op = Op::UpdateTask {
        task_id,
        base_version: None,
        changes: TaskChanges {
            completed: Some(true),
            ..TaskChanges::default()
        },
    };
    Ok(Json(task_of(state.router.call(id, user, op).await?)?))
}

/// `DELETE /api/v1/workspaces/{id}/tasks/{task_id}`.
#[utoipa::path(delete, path = "/workspaces/{id}/tasks/{task_id}", tag = "tasks", security(("user" = [])), params(("id" = uuid::Uuid, Path, description = "The workspace."), ("task_id" = uuid::Uuid, Path, description = "The task.")), responses((status = 204, description = "Deleted, with its subtasks.")))]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath((id, task_id)): ApiPath<(WorkspaceId, TaskId)>,
) -> Result<StatusCode, ApiError> {
    state.router.call(id, user, Op::DeleteTask(task_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
