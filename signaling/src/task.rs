//! The task board's records: a [`Task`], what a client sends to create one ([`TaskDraft`]) and to
//! change one ([`TaskChanges`]), and their validation. Limits follow the product plan: a title of
//! 1–500 characters, a description of at most 2000; at most 20 tags of 1–32 characters.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{CategoryId, TaskId, UserId};
use crate::rank::Rank;
use crate::text;
pub use crate::text::FieldError;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Most tags on one task.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 32;
/// Longest recurrence interval (every 365 days, weeks, ...).
pub const MAX_RECURRENCE_INTERVAL: u16 = 365;

/// How often a recurring task comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Every `interval` days.
    Daily,
    /// Every `interval` weeks.
    Weekly,
    /// Every `interval` months.
    Monthly,
    /// Every `interval` years.
    Yearly,
}

/// A recurring task's rule; stored and returned as given (the hub does not create the
/// occurrences: the app does, from this rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recurrence {
    /// The unit.
    pub frequency: Frequency,
    /// Every how many units, 1–365 (default 1).
    #[serde(default = "one")]
    pub interval: u16,
    /// No occurrence after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

fn one() -> u16 {
    1
}

/// How urgent a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Can wait.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Do first.
    High,
}

/// Where a task stands on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not started (the default).
    #[default]
    Todo,
    /// Someone is on it.
    InProgress,
    /// Finished; `completed` is true exactly when the status is `done`.
    Done,
}

/// A task as the room holds it and as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// Its id (chosen by the hub, or by an offline client that created it).
    pub id: TaskId,
    /// 1–500 characters.
    pub title: String,
    /// At most 2000 characters.
    pub description: Option<String>,
    /// True exactly when `status` is `done`.
    pub completed: bool,
    /// How urgent.
    pub priority: Priority,
    /// Where it stands.
    pub status: Status,
    /// Order on the board: a key compared as text, lower first (see [`crate::rank`]).
    pub position: Rank,
    /// The member it is assigned to.
    pub assignee: Option<UserId>,
    /// When it is due.
    pub due_date: Option<DateTime<Utc>>,
    /// Its category, if any.
    #[serde(default)]
    pub category_id: Option<CategoryId>,
    /// Free labels, each 1–32 characters, at most 20, no duplicates.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The task this one is a subtask of (one level: a subtask has no subtasks).
    #[serde(default)]
    pub parent_id: Option<TaskId>,
    /// When it was last completed; `null` while it is not.
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    /// How it recurs, if it does.
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// Grows by one with every change; a write names the version it was based on.
    pub version: u64,
    /// Who created it.
    pub created_by: UserId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a client sends to create a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDraft {
    /// An id chosen by the client (an offline client names its tasks); the hub picks one if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TaskId>,
    /// 1–500 characters.
    pub title: String,
    /// At most 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Defaults to `medium`.
    #[serde(default)]
    pub priority: Priority,
    /// Defaults to `todo` (or `done` when `completed` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Defaults to false.
    #[serde(default)]
    pub completed: bool,
    /// Defaults to after the last task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Rank>,
    /// A member of the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<UserId>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<DateTime<Utc>>,
    /// A category of the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<CategoryId>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Makes it a subtask of a task that is not itself one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<TaskId>,
    /// Makes it recurring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
}

impl TaskDraft {
    /// A draft with just a title.
    pub fn titled(title: impl Into<String>) -> Self {
        Self {
            id: None,
            title: title.into(),
            description: None,
            priority: Priority::default(),
            status: None,
            completed: false,
            position: None,
            assignee: None,
            due_date: None,
            category_id: None,
            tags: Vec::new(),
            parent_id: None,
            recurrence: None,
        }
    }

    /// Checks the limits that need no room state.
    ///
    /// # Errors
    /// The first field that is out of range.
    pub fn validate(&self) -> Result<(), FieldError> {
        clean_title(&self.title)?;
        clean_description(self.description.as_deref())?;
        clean_tags(&self.tags)?;
        check_recurrence(self.recurrence.as_ref())?;
        check_due_date(self.due_date)
    }

    /// Checks the limits and puts the text in its stored form (title trimmed, both in Unicode
    /// NFC; control and invisible characters refused, see [`crate::text`]).
    ///
    /// # Errors
    /// The first field that is out of range.
    pub fn normalize(&mut self) -> Result<(), FieldError> {
        self.title = clean_title(&self.title)?;
        self.description = clean_description(self.description.as_deref())?;
        self.tags = clean_tags(&self.tags)?;
        check_recurrence(self.recurrence.as_ref())?;
        check_due_date(self.due_date)
    }
}

/// A partial update: only the fields present change. For the nullable fields (`description`,
/// `assignee`, `due_date`) an explicit `null` clears the value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskChanges {
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New description, or `null` to clear.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<Option<String>>,
    /// Completed or not (moves `status` to `done`, or back to `todo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    /// New priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// New status (moves `completed` with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// New position (a key between the new neighbours' keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Rank>,
    /// New assignee, or `null` to unassign.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub assignee: Option<Option<UserId>>,
    /// New due date, or `null` to clear.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub due_date: Option<Option<DateTime<Utc>>>,
    /// New category, or `null` to clear.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub category_id: Option<Option<CategoryId>>,
    /// The new set of tags (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// New parent, or `null` to make it a top-level task.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_id: Option<Option<TaskId>>,
    /// New recurrence rule, or `null` to stop recurring.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub recurrence: Option<Option<Recurrence>>,
}

/// Tells an absent field (`None`, through `default`) from an explicit `null` (`Some(None)`).
pub(crate) fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

impl TaskChanges {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == TaskChanges::default()
    }

    /// Checks the limits that need no room state.
    ///
    /// # Errors
    /// The first field that is out of range.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.is_empty() {
            return Err(FieldError {
                field: "changes",
                problem: "names no field to change",
            });
        }
        if let Some(title) = &self.title {
            clean_title(title)?;
        }
        if let Some(description) = &self.description {
            clean_description(description.as_deref())?;
        }
        if let Some(due_date) = self.due_date {
            check_due_date(due_date)?;
        }
        if let Some(tags) = &self.tags {
            clean_tags(tags)?;
        }
        if let Some(recurrence) = &self.recurrence {
            check_recurrence(recurrence.as_ref())?;
        }
        Ok(())
    }

    /// [`TaskChanges::validate`], and puts the text in its stored form.
    ///
    /// # Errors
    /// The first field that is out of range.
    pub fn normalize(&mut self) -> Result<(), FieldError> {
        if self.is_empty() {
            return self.validate();
        }
        if let Some(title) = &mut self.title {
            *title = clean_title(title)?;
        }
        if let Some(Some(description)) = &self.description {
            self.description = Some(clean_description(Some(description))?);
        }
        if let Some(due_date) = self.due_date {
            check_due_date(due_date)?;
        }
        if let Some(tags) = &self.tags {
            self.tags = Some(clean_tags(tags)?);
        }
        if let Some(recurrence) = &self.recurrence {
            check_recurrence(recurrence.as_ref())?;
        }
        Ok(())
    }

    /// Applies the changes to `task`, keeping `completed` and `status` in step. Does not touch
    /// the version or timestamps: the room does.
    pub fn apply_to(&self, task: &mut Task) {
        if let Some(title) = &self.title {
            task.title.clone_from(title);
        }
        if let Some(description) = &self.description {
            task.description.clone_from(description);
        }
        if let Some(priority) = self.priority {
            task.priority = priority;
        }
        if let Some(position) = &self.position {
            task.position.clone_from(position);
        }
        if let Some(category) = self.category_id {
            task.category_id = category;
        }
        if let Some(tags) = &self.tags {
            task.tags.clone_from(tags);
        }
        if let Some(parent) = self.parent_id {
            task.parent_id = parent;
        }
        if let Some(recurrence) = &self.recurrence {
            task.recurrence.clone_from(recurrence);
        }
        if let Some(assignee) = self.assignee {
            task.assignee = assignee;
        }
        if let Some(due_date) = self.due_date {
            task.due_date = due_date;
        }
        if let Some(status) = self.status {
            task.status = status;
            task.completed = status == Status::Done;
        }
        if let Some(completed) = self.completed {
            task.completed = completed;
            if completed {
                task.status = Status::Done;
            } else if task.status == Status::Done {
                task.status = Status::Todo;
            }
        }
    }
}

fn clean_title(title: &str) -> Result<String, FieldError> {
    text::clean_line(title, "title", MAX_TITLE_CHARS)
        .map_err(|e| with_limit(e, "must be at most 500 characters"))
}

fn clean_description(description: Option<&str>) -> Result<Option<String>, FieldError> {
    description
        .map(|d| {
            text::clean_text(d, "description", MAX_DESCRIPTION_CHARS)
                .map_err(|e| with_limit(e, "must be at most 2000 characters"))
        })
        .transpose()
}

/// Tags in their stored form: each a clean line of 1–32 characters, duplicates dropped (first
/// kept), at most 20.
fn clean_tags(tags: &[String]) -> Result<Vec<String>, FieldError> {
    if tags.len() > MAX_TAGS {
        return Err(FieldError {
            field: "tags",
            problem: "must hold at most 20 tags",
        });
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = text::clean_line(tag, "tags", MAX_TAG_CHARS)
            .map_err(|e| with_limit(e, "each must be 1-32 characters"))?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

fn check_recurrence(rule: Option<&Recurrence>) -> Result<(), FieldError> {
    let Some(rule) = rule else { return Ok(()) };
    if !(1..=MAX_RECURRENCE_INTERVAL).contains(&rule.interval) {
        return Err(FieldError {
            field: "recurrence.interval",
            problem: "must be between 1 and 365",
        });
    }
    check_due_date(rule.until).map_err(|_| FieldError {
        field: "recurrence.until",
        problem: "must be between the years 1 and 9999 (UTC)",
    })
}

/// A due date must be one RFC 3339 can write: years 1 to 9999 in UTC (`0000-01-01T00:30:00+01:00`
/// is year −1 in UTC, and year 10000 has five digits).
fn check_due_date(due: Option<DateTime<Utc>>) -> Result<(), FieldError> {
    match due {
        Some(d) if !(1..=9999).contains(&d.year()) => Err(FieldError {
            field: "due_date",
            problem: "must be between the years 1 and 9999 (UTC)",
        }),
        _ => Ok(()),
    }
}

/// The text checks say "too long"; the task fields say by how much.
fn with_limit(e: FieldError, limit: &'static str) -> FieldError {
    if e.problem == text::problem::TOO_LONG {
        FieldError {
            field: e.field,
            problem: limit,
        }
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        let now = Utc::now();
        Task {
            id: TaskId::new(),
            title: "t".into(),
            description: Some("d".into()),
            completed: false,
            priority: Priority::Medium,
            status: Status::Todo,
            position: Rank::first(),
            assignee: None,
            due_date: None,
            category_id: None,
            tags: Vec::new(),
            parent_id: None,
            completed_at: None,
            recurrence: None,
            version: 1,
            created_by: UserId::new(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn explicit_null_clears_but_absent_keeps() {
        let clear: TaskChanges = serde_json::from_str(r#"{"description":null}"#).unwrap();
        assert_eq!(clear.description, Some(None));
        let keep: TaskChanges = serde_json::from_str(r#"{"title":"x"}"#).unwrap();
        assert_eq!(keep.description, None);
        let mut t = task();
        clear.apply_to(&mut t);
        assert_eq!(t.description, None);
    }

    #[test]
    fn changes_round_trip_with_null_preserved() {
        let clear: TaskChanges = serde_json::from_str(r#"{"assignee":null}"#).unwrap();
        let text = serde_json::to_string(&clear).unwrap();
        assert_eq!(text, r#"{"assignee":null}"#);
        assert_eq!(serde_json::from_str::<TaskChanges>(&text).unwrap(), clear);
    }

    #[test]
    fn completing_moves_status_and_back() {
        let mut t = task();
        TaskChanges {
            completed: Some(true),
            ..Default::default()
        }
        .apply_to(&mut t);
        assert_eq!((t.completed, t.status), (true, Status::Done));
        TaskChanges {
            status: Some(Status::InProgress),
            ..Default::default()
        }
        .apply_to(&mut t);
        assert_eq!((t.completed, t.status), (false, Status::InProgress));
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(
            TaskDraft::titled("  ").validate().unwrap_err().field,
            "title"
        );
        assert!(TaskDraft::titled("x".repeat(500)).validate().is_ok());
        assert!(TaskDraft::titled("x".repeat(501)).validate().is_err());
        let mut d = TaskDraft::titled("ok");
        d.description = Some("é".repeat(2001));
        assert_eq!(d.validate().unwrap_err().field, "description");
        assert!(TaskChanges::default().validate().is_err());
    }

    #[test]
    fn text_is_stored_normalized_and_controls_are_refused() {
        let mut d = TaskDraft::titled("  Write the docs  ");
        d.description = Some("line one\n\tline two".into());
        d.normalize().unwrap();
        assert_eq!(d.title, "Write the docs");
        assert_eq!(d.description.as_deref(), Some("line one\n\tline two"));
        for bad in [
            "a\u{0}b",
            "two\nlines",
            "rtl\u{202e}override",
            "zero\u{200b}width",
        ] {
            assert!(TaskDraft::titled(bad).validate().is_err(), "{bad:?}");
        }
        let mut c = TaskChanges {
            description: Some(Some("nul\u{0}".into())),
            ..Default::default()
        };
        assert_eq!(c.normalize().unwrap_err().field, "description");
    }

    /// Regression found by the fuzz targets: these were accepted and written back as
    /// `-0001-12-31T23:30:00Z` and `+10000-01-01T00:59:59Z`, which are not RFC 3339.
    #[test]
    fn due_dates_outside_years_1_to_9999_are_refused() {
        for due in ["0000-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00"] {
            let mut d = TaskDraft::titled("x");
            d.due_date = Some(due.parse().unwrap());
            assert_eq!(d.normalize().unwrap_err().field, "due_date", "{due}");
            let c = TaskChanges {
                due_date: Some(d.due_date),
                ..Default::default()
            };
            assert_eq!(c.validate().unwrap_err().field, "due_date", "{due}");
        }
        let mut d = TaskDraft::titled("x");
        d.due_date = Some("0001-01-01T00:00:00Z".parse().unwrap());
        assert!(d.normalize().is_ok());
    }

    #[test]
    fn tags_are_cleaned_deduplicated_and_bounded() {
        let mut d = TaskDraft::titled("x");
        d.tags = vec![" urgent ".into(), "urgent".into(), "home".into()];
        d.normalize().unwrap();
        assert_eq!(d.tags, ["urgent", "home"]);
        d.tags = (0..21).map(|i| format!("t{i}")).collect();
        assert_eq!(d.validate().unwrap_err().field, "tags");
        d.tags = vec!["x".repeat(33)];
        assert_eq!(
            d.validate().unwrap_err().to_string(),
            "tags: each must be 1-32 characters"
        );
        d.tags = vec!["  ".into()];
        assert!(d.validate().is_err());
    }

    #[test]
    fn recurrence_rules_are_bounded() {
        let rule: Recurrence = serde_json::from_str(r#"{"frequency":"weekly"}"#).unwrap();
        assert_eq!(rule.interval, 1);
        let mut d = TaskDraft::titled("x");
        d.recurrence = Some(Recurrence {
            interval: 0,
            ..rule.clone()
        });
        assert_eq!(d.validate().unwrap_err().field, "recurrence.interval");
        d.recurrence = Some(Recurrence {
            interval: 365,
            ..rule
        });
        assert!(d.validate().is_ok());
        assert!(serde_json::from_str::<Recurrence>(r#"{"frequency":"hourly"}"#).is_err());
        assert!(serde_json::from_str::<Recurrence>(r#"{"frequency":"daily","count":3}"#).is_err());
    }

    /// Journals and snapshots written before categories, tags and string positions still read.
    #[test]
    fn tasks_stored_before_the_new_fields_still_read() {
        let old = r#"{"id":"0190b8a2-7c1e-7000-8000-000000000001","title":"t","description":null,
            "completed":false,"priority":"medium","status":"todo","position":4,"assignee":null,
            "due_date":null,"version":1,"created_by":"0190b8a2-7c1e-7000-8000-000000000002",
            "created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;
        let t: Task = serde_json::from_str(old).unwrap();
        assert_eq!(t.position, Rank::from_i64(4));
        assert!(t.tags.is_empty() && t.category_id.is_none() && t.completed_at.is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<TaskChanges>(r#"{"titel":"x"}"#).is_err());
    }
}
