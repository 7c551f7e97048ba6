//! The task board's relational index: every task and category of every workspace as rows, for
//! filters, text search and paging. A room writes them through the journal
//! ([`crate::SideEffect::PutTask`] and friends), in the same transaction as the events that
//! changed them, so a read after an acknowledged write always sees it. The room's state stays the
//! truth: a room whose index is behind (journaled before the index existed) rebuilds it when it
//! loads ([`Store::rebuild_board`]).

use chrono::{DateTime, Utc};
use signaling::category::Category;
use signaling::task::{Priority, Status, Task};
use signaling::{CategoryId, TaskId, UserId, WorkspaceId};
use uuid::Uuid;

use crate::db::{Store, on_pool};
use crate::error::StoreError;
use crate::rooms::to_i64;

/// A task as the index stores it: the task and its JSON as clients see it.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// Its workspace.
    pub workspace: WorkspaceId,
    /// The task.
    pub task: Task,
    /// `task` as JSON.
    pub doc: String,
    /// Whether its tags may have changed (their rows are rewritten only then).
    pub tags_changed: bool,
    /// The fields an update changed (as named on the wire), when the row exists already: only
    /// their columns are written, so that the indexes of the others are left alone. `None`
    /// writes the whole row.
    pub changed: Option<Vec<&'static str>>,
}

impl TaskRow {
    /// A row for `task` (serialized once, here).
    ///
    /// # Errors
    /// Serializing failed (it cannot for a `Task`).
    pub fn new(workspace: WorkspaceId, task: Task) -> Result<TaskRow, StoreError> {
        let doc = serde_json::to_string(&task).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TaskRow {
            workspace,
            task,
            doc,
            tags_changed: true,
            changed: None,
        })
    }

    /// The same row, written as an update of only the columns of `fields` (plus its document,
    /// version and update time).
    pub fn changing(mut self, fields: Vec<&'static str>) -> TaskRow {
        self.tags_changed = fields.contains(&"tags");
        self.changed = Some(fields);
        self
    }

    /// The `UPDATE` of the changed columns, when the row says which they are.
    pub(crate) fn update_statement(&self) -> Option<Statement> {
        let fields = self.changed.as_ref()?;
        let t = &self.task;
        let mut sets: Vec<(&str, Arg)> = vec![
            ("doc", Arg::Text(self.doc.clone())),
            ("version", Arg::Int(to_i64(t.version))),
            ("updated_ms", Arg::Int(t.updated_at.timestamp_millis())),
        ];
        for field in fields {
            match *field {
                "title" => sets.push(("title", Arg::Text(t.title.clone()))),
                "description" => sets.push(("description", Arg::OptText(t.description.clone()))),
                "completed" | "status" if !sets.iter().any(|(c, _)| *c == "status") => {
                    sets.push(("status", Arg::Text(self.status().into())));
                    sets.push(("completed", Arg::Bool(t.completed)));
                    sets.push((
                        "completed_ms",
                        Arg::OptInt(t.completed_at.map(|d| d.timestamp_millis())),
                    ));
                }
                "priority" => sets.push(("priority", Arg::Int(i64::from(self.priority())))),
                "position" => sets.push(("position", Arg::Text(t.position.as_str().into()))),
                "assignee" => {
                    sets.push(("assignee_id", Arg::OptUuid(t.assignee.map(|u| u.as_uuid()))));
                }
                "due_date" => sets.push(("due_sort", Arg::Int(self.due_sort()))),
                "category_id" => sets.push((
                    "category_id",
                    Arg::OptUuid(t.category_id.map(|c| c.as_uuid())),
                )),
                "parent_id" => {
                    sets.push(("parent_id", Arg::OptUuid(t.parent_id.map(|p| p.as_uuid()))));
                }
                "recurrence" => sets.push(("recurring", Arg::Bool(t.recurrence.is_some()))),
                _ => {}
            }
        }
        let mut args = Vec::with_capacity(sets.len() + 2);
        let mut assignments = Vec::with_capacity(sets.len());
        for (column, arg) in sets {
            args.push(arg);
            assignments.push(format!("{column} = ${}", args.len()));
        }
        args.push(Arg::Uuid(self.workspace.as_uuid()));
        args.push(Arg::Uuid(t.id.as_uuid()));
        let n = args.len();
        let sql = format!(
            "UPDATE tasks SET {} WHERE workspace_id = ${} AND id = ${n}",
            assignments.join(", "),
            n - 1
        );
        Some((sql, args))
    }

    /// The same row, saying its tags did not change (a change of other fields: its tag rows
    /// are left as they are).
    pub fn tags_unchanged(mut self) -> TaskRow {
        self.tags_changed = false;
        self
    }

    pub(crate) fn status(&self) -> &'static str {
        status_str(self.task.status)
    }

    pub(crate) fn priority(&self) -> i16 {
        priority_rank(self.task.priority)
    }

    /// Due time in epoch milliseconds; tasks without one sort last.
    pub(crate) fn due_sort(&self) -> i64 {
        self.task
            .due_date
            .map_or(i64::MAX, |d| d.timestamp_millis())
    }
}

fn status_str(status: Status) -> &'static str {
    match status {
        Status::Todo => "todo",
        Status::InProgress => "in_progress",
        Status::Done => "done",
    }
}

fn priority_rank(priority: Priority) -> i16 {
    match priority {
        Priority::Low => 0,
        Priority::Medium => 1,
        Priority::High => 2,
    }
}

/// Writes a [`TaskRow`] (and its tags) in the transaction `$tx`; `?`s database errors.
macro_rules! put_task {
    ($tx:expr, $row:expr) => {{
        let row: &$crate::board::TaskRow = $row;
        // An update writes only its columns; a row that is not there (never, while the index
        // is in step) is written whole.
        let updated = match row.update_statement() {
            Some((sql, args)) => {
                #[allow(unused_imports)]
                use $crate::board::Arg;
                $crate::board::bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected()
                    > 0
            }
            None => false,
        };
        if !updated {
            sqlx::query($crate::board::UPSERT_TASK)
                .bind(row.workspace.as_uuid())
                .bind(row.task.id.as_uuid())
                .bind(&row.task.title)
                .bind(&row.task.description)
                .bind(row.status())
                .bind(row.priority())
                .bind(row.task.completed)
                .bind(row.task.position.as_str())
                .bind(row.task.assignee.map(|u| u.as_uuid()))
                .bind(row.task.category_id.map(|c| c.as_uuid()))
                .bind(row.task.parent_id.map(|t| t.as_uuid()))
                .bind(row.due_sort())
                .bind(row.task.completed_at.map(|t| t.timestamp_millis()))
                .bind(row.task.created_at.timestamp_millis())
                .bind(row.task.updated_at.timestamp_millis())
                .bind(row.task.recurrence.is_some())
                .bind($crate::rooms::to_i64(row.task.version))
                .bind(&row.doc)
                .execute(&mut *$tx)
                .await?;
        }
        if row.tags_changed {
            sqlx::query("DELETE FROM task_tags WHERE workspace_id = $1 AND task_id = $2")
                .bind(row.workspace.as_uuid())
                .bind(row.task.id.as_uuid())
                .execute(&mut *$tx)
                .await?;
        }
        for tag in row.task.tags.iter().filter(|_| row.tags_changed) {
            sqlx::query("INSERT INTO task_tags (workspace_id, task_id, tag) VALUES ($1, $2, $3)")
                .bind(row.workspace.as_uuid())
                .bind(row.task.id.as_uuid())
                .bind(tag)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use put_task;

pub(crate) const UPSERT_TASK: &str = "INSERT INTO tasks (workspace_id, id, title, description, \
     status, priority, completed, position, assignee_id, category_id, parent_id, due_sort, \
     completed_ms, created_ms, updated_ms, recurring, version, doc) VALUES ($1, $2, $3, $4, $5, \
     $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
     ON CONFLICT (workspace_id, id) DO UPDATE SET title = excluded.title, \
     description = excluded.description, status = excluded.status, priority = excluded.priority, \
     completed = excluded.completed, position = excluded.position, \
     assignee_id = excluded.assignee_id, category_id = excluded.category_id, \
     parent_id = excluded.parent_id, due_sort = excluded.due_sort, \
     completed_ms = excluded.completed_ms, updated_ms = excluded.updated_ms, \
     recurring = excluded.recurring, version = excluded.version, doc = excluded.doc";

/// How a task list is ordered. Every order ends with creation time, then id, so that a page
/// boundary is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskSort {
    /// Board order (the default).
    #[default]
    Position,
    /// Creation time.
    CreatedAt,
    /// Last change.
    UpdatedAt,
    /// Due date; tasks without one last (first when descending).
    DueDate,
    /// Priority, low to high.
    Priority,
    /// Title.
    Title,
}

impl TaskSort {
    /// Reads a `sort` parameter.
    pub fn parse(s: &str) -> Option<TaskSort> {
        Some(match s {
            "position" => TaskSort::Position,
            "created_at" => TaskSort::CreatedAt,
            "updated_at" => TaskSort::UpdatedAt,
            "due_date" => TaskSort::DueDate,
            "priority" => TaskSort::Priority,
            "title" => TaskSort::Title,
            _ => return None,
        })
    }

    /// Its name as a parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskSort::Position => "position",
            TaskSort::CreatedAt => "created_at",
            TaskSort::UpdatedAt => "updated_at",
            TaskSort::DueDate => "due_date",
            TaskSort::Priority => "priority",
            TaskSort::Title => "title",
        }
    }

    fn column(self) -> &'static str {
        match self {
            TaskSort::Position => "position",
            TaskSort::CreatedAt => "created_ms",
            TaskSort::UpdatedAt => "updated_ms",
            TaskSort::DueDate => "due_sort",
            TaskSort::Priority => "priority",
            TaskSort::Title => "title",
        }
    }

    /// The sort key of a task: where a page that ended with it goes on from.
    pub fn key_of(self, task: &Task) -> SortValue {
        match self {
            TaskSort::Position => SortValue::Text(task.position.as_str().to_owned()),
            TaskSort::Title => SortValue::Text(task.title.clone()),
            TaskSort::CreatedAt => SortValue::Int(task.created_at.timestamp_millis()),
            TaskSort::UpdatedAt => SortValue::Int(task.updated_at.timestamp_millis()),
            TaskSort::DueDate => {
                SortValue::Int(task.due_date.map_or(i64::MAX, |d| d.timestamp_millis()))
            }
            TaskSort::Priority => SortValue::Int(i64::from(priority_rank(task.priority))),
        }
    }
}

/// A value of a sort column.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    /// A number column.
    Int(i64),
    /// A text column.
    Text(String),
}

/// Where a page ends: the last task's sort key, creation time and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskCursor {
    /// The sort it belongs to.
    pub sort: String,
    /// Descending or not.
    pub desc: bool,
    /// The last task's sort key.
    pub key: SortValue,
    /// Its creation time (epoch ms).
    pub created_ms: i64,
    /// Its id.
    pub id: Uuid,
}

impl TaskCursor {
    /// The cursor after `task` in this order.
    pub fn after(sort: TaskSort, desc: bool, task: &Task) -> TaskCursor {
        TaskCursor {
            sort: sort.as_str().to_owned(),
            desc,
            key: sort.key_of(task),
            created_ms: task.created_at.timestamp_millis(),
            id: task.id.as_uuid(),
        }
    }
}

/// A filter: `None` (or empty) is no condition; `Some(None)` asks for "not set".
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Any of these statuses.
    pub status: Vec<Status>,
    /// Any of these priorities.
    pub priority: Vec<Priority>,
    /// Assigned to (or to no one).
    pub assignee: Option<Option<UserId>>,
    /// In this category (or in none).
    pub category: Option<Option<CategoryId>>,
    /// Subtasks of (or top-level tasks).
    pub parent: Option<Option<TaskId>>,
    /// Carrying this tag.
    pub tag: Option<String>,
    /// Due strictly before.
    pub due_before: Option<DateTime<Utc>>,
    /// Due at or after.
    pub due_after: Option<DateTime<Utc>>,
    /// Completed or not.
    pub completed: Option<bool>,
    /// With a recurrence rule or not.
    pub recurring: Option<bool>,
    /// Every one of these words (or word beginnings) in the title or description.
    pub words: Vec<String>,
    /// The order.
    pub sort: TaskSort,
    /// Descending.
    pub desc: bool,
    /// Go on after this.
    pub after: Option<TaskCursor>,
    /// Page size.
    pub limit: u32,
}

pub(crate) enum Arg {
    Uuid(Uuid),
    Text(String),
    Int(i64),
    Bool(bool),
    OptUuid(Option<Uuid>),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

/// Rows per multi-row `INSERT` of a rebuild (18 arguments each: well under both backends'
/// limits on bound arguments).
const REBUILD_CHUNK: usize = 200;

/// A statement and its arguments.
pub(crate) type Statement = (String, Vec<Arg>);

/// One multi-row `INSERT` of task rows, and one of their tags (`None` when they have none).
fn insert_rows(rows: &[TaskRow]) -> (Statement, Option<Statement>) {
    let mut args = Vec::with_capacity(rows.len() * 18);
    let mut values = Vec::with_capacity(rows.len());
    let mut tag_args = Vec::new();
    let mut tag_values = Vec::new();
    for row in rows {
        let t = &row.task;
        let first = args.len() + 1;
        args.extend([
            Arg::Uuid(row.workspace.as_uuid()),
            Arg::Uuid(t.id.as_uuid()),
            Arg::Text(t.title.clone()),
            Arg::OptText(t.description.clone()),
            Arg::Text(row.status().into()),
            Arg::Int(i64::from(row.priority())),
            Arg::Bool(t.completed),
            Arg::Text(t.position.as_str().into()),
            Arg::OptUuid(t.assignee.map(|u| u.as_uuid())),
            Arg::OptUuid(t.category_id.map(|c| c.as_uuid())),
            Arg::OptUuid(t.parent_id.map(|p| p.as_uuid())),
            Arg::Int(row.due_sort()),
            Arg::OptInt(t.completed_at.map(|d| d.timestamp_millis())),
            Arg::Int(t.created_at.timestamp_millis()),
            Arg::Int(t.updated_at.timestamp_millis()),
            Arg::Bool(t.recurrence.is_some()),
            Arg::Int(to_i64(t.version)),
            Arg::Text(row.doc.clone()),
        ]);
        let marks: Vec<String> = (first..first + 18).map(|n| format!("${n}")).collect();
        values.push(format!("({})", marks.join(", ")));
        for tag in &t.tags {
            let n = tag_args.len();
            tag_args.extend([
                Arg::Uuid(row.workspace.as_uuid()),
                Arg::Uuid(t.id.as_uuid()),
                Arg::Text(tag.clone()),
            ]);
            tag_values.push(format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
        }
    }
    let head = UPSERT_TASK.split(" VALUES ").next().unwrap_or_default();
    let tasks = (format!("{head} VALUES {}", values.join(", ")), args);
    let tags = (!tag_values.is_empty()).then(|| {
        (
            format!(
                "INSERT INTO task_tags (workspace_id, task_id, tag) VALUES {}",
                tag_values.join(", ")
            ),
            tag_args,
        )
    });
    (tasks, tags)
}

/// Binds [`Arg`]s in order.
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Uuid(u) => query.bind(u),
                Arg::Text(t) => query.bind(t),
                Arg::Int(n) => query.bind(n),
                Arg::Bool(b) => query.bind(b),
                Arg::OptUuid(u) => query.bind(u),
                Arg::OptText(t) => query.bind(t),
                Arg::OptInt(n) => query.bind(n),
            };
        }
        query
    }};
}
pub(crate) use bind_all;

/// The SQL and its arguments for a task query (placeholders `$1…`, accepted by both backends).
fn task_sql(backend: crate::Backend, workspace: WorkspaceId, q: &TaskQuery) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Uuid(workspace.as_uuid())];
    let mut sql = String::from("SELECT doc FROM tasks WHERE workspace_id = $1");
    let push = |args: &mut Vec<Arg>, arg: Arg| {
        args.push(arg);
        format!("${}", args.len())
    };
    let any_of = |sql: &mut String, args: &mut Vec<Arg>, column: &str, values: Vec<Arg>| {
        if values.is_empty() {
            return;
        }
        let marks: Vec<String> = values.into_iter().map(|v| push(args, v)).collect();
        sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
    };
    any_of(
        &mut sql,
        &mut args,
        "status",
        q.status
            .iter()
            .map(|s| Arg::Text(status_str(*s).into()))
            .collect(),
    );
    any_of(
        &mut sql,
        &mut args,
        "priority",
        q.priority
            .iter()
            .map(|p| Arg::Int(i64::from(priority_rank(*p))))
            .collect(),
    );
    let is = |sql: &mut String, args: &mut Vec<Arg>, column: &str, value: Option<Option<Uuid>>| {
        match value {
            None => {}
            Some(None) => sql.push_str(&format!(" AND {column} IS NULL")),
            Some(Some(id)) => {
                let mark = push(args, Arg::Uuid(id));
                sql.push_str(&format!(" AND {column} = {mark}"));
            }
        }
    };
    is(
        &mut sql,
        &mut args,
        "assignee_id",
        q.assignee.map(|a| a.map(|u| u.as_uuid())),
    );
    is(
        &mut sql,
        &mut args,
        "category_id",
        q.category.map(|c| c.map(|c| c.as_uuid())),
    );
    is(
        &mut sql,
        &mut args,
        "parent_id",
        q.parent.map(|p| p.map(|t| t.as_uuid())),
    );
    if let Some(tag) = &q.tag {
        let mark = push(&mut args, Arg::Text(tag.clone()));
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM task_tags g WHERE g.workspace_id = tasks.workspace_id \
             AND g.task_id = tasks.id AND g.tag = {mark})"
        ));
    }
    if let Some(before) = q.due_before {
        let mark = push(&mut args, Arg::Int(before.timestamp_millis()));
        sql.push_str(&format!(" AND due_sort < {mark}"));
    }
    if let Some(after) = q.due_after {
        let mark = push(&mut args, Arg::Int(after.timestamp_millis()));
        let none = push(&mut args, Arg::Int(i64::MAX));
        sql.push_str(&format!(" AND due_sort >= {mark} AND due_sort < {none}"));
    }
    if let Some(done) = q.completed {
        let mark = push(&mut args, Arg::Bool(done));
        sql.push_str(&format!(" AND completed = {mark}"));
    }
    if let Some(recurring) = q.recurring {
        let mark = push(&mut args, Arg::Bool(recurring));
        sql.push_str(&format!(" AND recurring = {mark}"));
    }
    if !q.words.is_empty() {
        match backend {
            crate::Backend::Postgres => {
                let query: Vec<String> = q.words.iter().map(|w| format!("{w}:*")).collect();
                let mark = push(&mut args, Arg::Text(query.join(" & ")));
                sql.push_str(&format!(" AND search @@ to_tsquery('simple', {mark})"));
            }
            crate::Backend::Sqlite => {
                let query: Vec<String> = q.words.iter().map(|w| format!("\"{w}\"*")).collect();
                let mark = push(&mut args, Arg::Text(query.join(" ")));
                sql.push_str(&format!(
                    " AND rid IN (SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH {mark})"
                ));
            }
        }
    }
    let column = q.sort.column();
    let (cmp, dir) = if q.desc { ("<", "DESC") } else { (">", "ASC") };
    if let Some(cursor) = &q.after {
        let key = match &cursor.key {
            SortValue::Int(n) => Arg::Int(*n),
            SortValue::Text(t) => Arg::Text(t.clone()),
        };
        let k = push(&mut args, key);
        let c = push(&mut args, Arg::Int(cursor.created_ms));
        let i = push(&mut args, Arg::Uuid(cursor.id));
        sql.push_str(&format!(
            " AND ({column}, created_ms, id) {cmp} ({k}, {c}, {i})"
        ));
    }
    let limit = push(&mut args, Arg::Int(i64::from(q.limit)));
    sql.push_str(&format!(
        " ORDER BY {column} {dir}, created_ms {dir}, id {dir} LIMIT {limit}"
    ));
    (sql, args)
}

/// The words of a search, as the index matches them: runs of letters and digits, lower case, at
/// most `max` of them, each cut to 64 characters.
pub fn search_words(text: &str, max: usize) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(max)
        .map(|w| w.chars().take(64).collect::<String>().to_lowercase())
        .collect()
}

impl Store {
    /// Tasks of `workspace` matching `q`, as JSON, at most `q.limit` of them.
    ///
    /// # Errors
    /// The database failed.
    pub async fn board_tasks(
        &self,
        workspace: WorkspaceId,
        q: &TaskQuery,
    ) -> Result<Vec<String>, StoreError> {
        let (sql, args) = task_sql(self.backend(), workspace, q);
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), args)
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(|(doc,)| doc).collect())
    }

    /// The categories of `workspace` in list order, as JSON.
    ///
    /// # Errors
    /// The database failed.
    pub async fn board_categories(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT doc FROM categories WHERE workspace_id = $1 ORDER BY position, id",
            )
            .bind(workspace.as_uuid())
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().map(|(doc,)| doc).collect())
    }

    /// Whether the board index of `room` reflects offset `head`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn board_in_step(&self, room: &str, head: u64) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT indexed_seq FROM rooms WHERE room_key = $1")
                .bind(room)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.is_some_and(|(seq,)| seq == to_i64(head)))
    }

    /// Marks the board index of `room` stale, to be rebuilt from the room's state when it next
    /// loads (after its journal was written by other means, or to repair the rows by hand).
    ///
    /// # Errors
    /// The database failed.
    pub async fn invalidate_board(&self, room: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query("UPDATE rooms SET indexed_seq = -1 WHERE room_key = $1")
                .bind(room)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Rewrites the board index of a workspace from its room's state at offset `head`, under the
    /// room's epoch.
    ///
    /// # Errors
    /// [`StoreError::StaleEpoch`] when the room has a newer owner; or the database failed.
    pub async fn rebuild_board(
        &self,
        room: &str,
        epoch: u64,
        head: u64,
        workspace: WorkspaceId,
        tasks: &[TaskRow],
        categories: &[(Category, String)],
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let fenced = sqlx::query(
                "UPDATE rooms SET indexed_seq = $3 WHERE room_key = $1 AND epoch = $2 \
                 AND last_seq = $3",
            )
            .bind(room)
            .bind(to_i64(epoch))
            .bind(to_i64(head))
            .execute(&mut *tx)
            .await?;
            if fenced.rows_affected() == 0 {
                return Err(StoreError::StaleEpoch);
            }
            for table in ["tasks", "categories"] {
                let sql = format!("DELETE FROM {table} WHERE workspace_id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(workspace.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            for chunk in tasks.chunks(REBUILD_CHUNK) {
                let ((sql, args), tags) = insert_rows(chunk);
                bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                    .execute(&mut *tx)
                    .await?;
                if let Some((sql, args)) = tags {
                    bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for (category, doc) in categories {
                sqlx::query(
                    "INSERT INTO categories (workspace_id, id, name, position, doc) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(workspace.as_uuid())
                .bind(category.id.as_uuid())
                .bind(&category.name)
                .bind(category.position)
                .bind(doc)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// A conflict ledger entry as stored, with how it was settled.
#[derive(Debug, Clone)]
pub struct ConflictRecord {
    /// The entry.
    pub conflict: signaling::sync::Conflict,
    /// `(choice, by, when)` once settled.
    pub resolved: Option<(String, UserId, DateTime<Utc>)>,
}

type ConflictRow = (String, Option<i64>, Option<Uuid>, Option<String>);

fn conflict_record(row: ConflictRow) -> Result<ConflictRecord, StoreError> {
    let (doc, resolved_ms, by, choice) = row;
    let conflict = serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let resolved = match (resolved_ms, by, choice) {
        (Some(ms), Some(by), Some(choice)) => Some((
            choice,
            UserId::from_uuid(by),
            DateTime::from_timestamp_millis(ms).unwrap_or_default(),
        )),
        _ => None,
    };
    Ok(ConflictRecord { conflict, resolved })
}

impl Store {
    /// A workspace's ledger entries, newest first: `open` only those not settled (or only those
    /// settled), `before` an entry's id to page.
    ///
    /// # Errors
    /// The database failed, or an entry does not read.
    pub async fn conflicts(
        &self,
        workspace: WorkspaceId,
        open: Option<bool>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ConflictRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT doc, resolved_ms, resolved_by, resolution FROM sync_conflicts \
             WHERE workspace_id = $1",
        );
        match open {
            Some(true) => sql.push_str(" AND resolved_ms IS NULL"),
            Some(false) => sql.push_str(" AND resolved_ms IS NOT NULL"),
            None => {}
        }
        let mut args = vec![Arg::Uuid(workspace.as_uuid())];
        if let Some(before) = before {
            args.push(Arg::Uuid(before));
            sql.push_str(" AND id < $2");
        }
        args.push(Arg::Int(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
        let rows: Vec<ConflictRow> = on_pool!(self, |pool| {
            bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), args)
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(conflict_record).collect()
    }

    /// One ledger entry.
    ///
    /// # Errors
    /// The database failed, or the entry does not read.
    pub async fn conflict(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
    ) -> Result<Option<ConflictRecord>, StoreError> {
        let row: Option<ConflictRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT doc, resolved_ms, resolved_by, resolution FROM sync_conflicts \
                 WHERE workspace_id = $1 AND id = $2",
            )
            .bind(workspace.as_uuid())
            .bind(id)
            .fetch_optional(pool)
            .await
        })?;
        row.map(conflict_record).transpose()
    }

    /// How many ledger entries of a workspace are not settled.
    ///
    /// # Errors
    /// The database failed.
    pub async fn open_conflicts(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM sync_conflicts WHERE workspace_id = $1 \
                 AND resolved_ms IS NULL",
            )
            .bind(workspace.as_uuid())
            .fetch_one(pool)
            .await
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
