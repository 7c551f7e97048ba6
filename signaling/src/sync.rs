//! Offline sync: the operations a client queued while offline ([`SyncOp`]), what each came to
//! ([`OpResult`]), and the conflict ledger's entries ([`Conflict`]).
//!
//! A client pushes its queue as a batch (REST `POST …/sync/push` or the `sync_push` command).
//! Every operation carries the client's own id for it: an operation already applied is answered
//! `duplicate` and applies nothing, so a batch can be retried as a whole. An update names the
//! task version it was based on; when the task moved on meanwhile, the hub merges field by field
//! by the rules of [`RULES`] instead of refusing, and records what lost in the ledger.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorCode;
use crate::ids::{TaskId, UserId, WorkspaceId};
use crate::task::{TaskChanges, TaskDraft};

/// Most operations in one push.
pub const MAX_OPS: usize = 100;
/// Longest operation id, in characters.
pub const MAX_OP_ID_CHARS: usize = 64;

/// One queued operation: `{"op_id", "client_ts", "kind", ...the kind's fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "OpWire")]
pub struct SyncOp {
    /// The client's id for this operation: 1–64 visible ASCII characters, unique per user and
    /// workspace (a UUID is the usual choice).
    pub op_id: String,
    /// The workspace the client meant it for; when given, it must be the one pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<WorkspaceId>,
    /// When the user made the change, by the client's clock (a time after the hub's own is taken
    /// as the hub's: a client cannot win every tie by living in the future).
    pub client_ts: DateTime<Utc>,
    /// What to do.
    #[serde(flatten)]
    pub kind: OpKind,
}

/// An operation as sent, before its kind's fields are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpWire {
    op_id: String,
    client_ts: DateTime<Utc>,
    kind: String,
    #[serde(default)]
    workspace_id: Option<WorkspaceId>,
    #[serde(default)]
    task: Option<TaskDraft>,
    #[serde(default)]
    task_id: Option<TaskId>,
    #[serde(default)]
    base_version: Option<u64>,
    #[serde(default)]
    changes: Option<TaskChanges>,
}

impl TryFrom<OpWire> for SyncOp {
    type Error = String;

    fn try_from(w: OpWire) -> Result<SyncOp, String> {
        let need = |what: &str| format!("a {} operation needs `{what}`", w.kind);
        let extra = |what: &str| format!("a {} operation has no `{what}`", w.kind);
        let kind = match w.kind.as_str() {
            "task_create" => {
                if w.task_id.is_some() || w.base_version.is_some() || w.changes.is_some() {
                    return Err(extra("task_id, base_version or changes"));
                }
                OpKind::TaskCreate {
                    task: w.task.ok_or_else(|| need("task"))?,
                }
            }
            "task_update" => {
                if w.task.is_some() {
                    return Err(extra("task"));
                }
                OpKind::TaskUpdate {
                    task_id: w.task_id.ok_or_else(|| need("task_id"))?,
                    base_version: w.base_version.ok_or_else(|| need("base_version"))?,
                    changes: w.changes.ok_or_else(|| need("changes"))?,
                }
            }
            "task_delete" => {
                if w.task.is_some() || w.changes.is_some() {
                    return Err(extra("task or changes"));
                }
                OpKind::TaskDelete {
                    task_id: w.task_id.ok_or_else(|| need("task_id"))?,
                    base_version: w.base_version.ok_or_else(|| need("base_version"))?,
                }
            }
            _ => return Err("kind: must be task_create, task_update or task_delete".into()),
        };
        Ok(SyncOp {
            op_id: w.op_id,
            workspace_id: w.workspace_id,
            client_ts: w.client_ts,
            kind,
        })
    }
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpKind {
    /// Create a task (its `id` chosen by the client, so that later operations can name it).
    TaskCreate {
        /// The task.
        task: TaskDraft,
    },
    /// Change a task.
    TaskUpdate {
        /// Which.
        task_id: TaskId,
        /// The version the client's change was based on.
        base_version: u64,
        /// What it changed.
        changes: TaskChanges,
    },
    /// Delete a task.
    TaskDelete {
        /// Which.
        task_id: TaskId,
        /// The version the client saw when it deleted it.
        base_version: u64,
    },
}

impl SyncOp {
    /// Checks what needs no room state and puts text in its stored form.
    ///
    /// # Errors
    /// Why the operation is malformed.
    pub fn normalize(&mut self) -> Result<(), String> {
        if self.op_id.is_empty()
            || self.op_id.len() > MAX_OP_ID_CHARS
            || !self.op_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("op_id: must be 1-64 visible ASCII characters".into());
        }
        match &mut self.kind {
            OpKind::TaskCreate { task } => {
                if task.id.is_none() {
                    return Err("task.id: an offline create names its task".into());
                }
                task.normalize().map_err(|e| format!("task.{e}"))
            }
            OpKind::TaskUpdate { changes, .. } => {
                changes.normalize().map_err(|e| format!("changes.{e}"))
            }
            OpKind::TaskDelete { .. } => Ok(()),
        }
    }

    /// The task it is about.
    pub fn task_id(&self) -> Option<TaskId> {
        match &self.kind {
            OpKind::TaskCreate { task } => task.id,
            OpKind::TaskUpdate { task_id, .. } | OpKind::TaskDelete { task_id, .. } => {
                Some(*task_id)
            }
        }
    }
}

/// Reads a pushed batch one operation at a time: a malformed operation is refused on its own
/// (`invalid_payload`, naming the field) and the others go on.
pub fn parse_ops(ops: &[Box<serde_json::value::RawValue>]) -> Vec<Result<SyncOp, OpResult>> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        op_id: Option<String>,
    }
    ops.iter()
        .map(|raw| {
            let text = raw.get();
            let refuse = |message: String| {
                let op_id = serde_json::from_str::<IdOnly>(text)
                    .ok()
                    .and_then(|o| o.op_id)
                    .filter(|id| id.len() <= MAX_OP_ID_CHARS)
                    .unwrap_or_default();
                OpResult::refused(&op_id, ErrorCode::InvalidPayload, message)
            };
            let mut op: SyncOp =
                crate::json::from_slice(text.as_bytes()).map_err(|e| refuse(e.message))?;
            op.normalize().map_err(refuse)?;
            Ok(op)
        })
        .collect()
}

/// What became of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    /// Applied as sent.
    Applied,
    /// Applied after a merge: some of its fields lost to newer ones (see `conflicts`).
    Merged,
    /// Nothing of it applied (it lost whole: its task was deleted); see `conflicts`.
    Conflicted,
    /// Applied by an earlier push: nothing done this time.
    Duplicate,
    /// Refused: see `code`.
    Refused,
}

/// The answer to one operation, in the order of the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpResult {
    /// The operation's id as sent (empty when it could not be read).
    pub op_id: String,
    /// What became of it.
    pub status: OpStatus,
    /// The offset of the event it produced (for `duplicate`: of the first time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// With `refused`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// With `refused`: for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The ledger entries the operation made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
}

impl OpResult {
    /// A refusal.
    pub fn refused(op_id: &str, code: ErrorCode, message: impl Into<String>) -> OpResult {
        OpResult {
            op_id: op_id.into(),
            status: OpStatus::Refused,
            offset: None,
            code: Some(code),
            message: Some(message.into()),
            conflicts: Vec::new(),
        }
    }
}

/// Which rule decided a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The later edit (by when the user made it) wins; the other is kept in the ledger.
    LastWriterWins,
    /// A completion is not undone by an edit made before the client saw it; a stale completion
    /// wins over a newer reopen of a task that is not done.
    CompletionWins,
    /// A task's deletion wins over edits made before or after it.
    DeleteWins,
}

/// How a field's concurrent edits are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRule {
    /// The field (`completed` and `status` are one: the task's state).
    pub field: &'static str,
    /// The rule.
    pub rule: Rule,
    /// Whether the losing value is kept in the ledger.
    pub ledger: bool,
}

/// The merge rules, one per field: what happens when an offline edit of a field meets a newer
/// edit of the same field. Fields the other side did not touch never conflict: they merge.
pub const RULES: &[FieldRule] = &[
    FieldRule {
        field: "title",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "description",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "status",
        rule: Rule::CompletionWins,
        ledger: true,
    },
    FieldRule {
        field: "priority",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "assignee",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "due_date",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "category_id",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "tags",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "parent_id",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    FieldRule {
        field: "recurrence",
        rule: Rule::LastWriterWins,
        ledger: true,
    },
    // Moves merge: the later move of a task wins and nothing is worth keeping of the other.
    FieldRule {
        field: "position",
        rule: Rule::LastWriterWins,
        ledger: false,
    },
];

/// The rule of a field.
pub fn rule_of(field: &str) -> Option<&'static FieldRule> {
    RULES.iter().find(|r| r.field == field)
}

/// A conflict ledger entry: a value that lost, and the one that was kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conflict {
    /// Its id.
    pub id: uuid::Uuid,
    /// The task.
    pub task_id: TaskId,
    /// The field (`status` for the task's state, `task` for a whole task against a deletion).
    pub field: String,
    /// The rule that decided.
    pub rule: Rule,
    /// The value now in place (`null` when the task is gone).
    pub kept: Value,
    /// The value that lost (for a task deleted over edits: the task as edited).
    pub lost: Value,
    /// Who made the losing edit.
    pub lost_by: UserId,
    /// The operation that met the conflict.
    pub op_id: String,
    /// When the hub decided.
    pub at: DateTime<Utc>,
}

/// How a ledger entry is settled (`POST …/conflicts/{id}/resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// Keep what is in place: the entry is closed.
    Kept,
    /// Put the losing value back (a field, or a deleted task re-created).
    Lost,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_read_their_kind_and_refuse_what_they_do_not_know() {
        let task = TaskId::new();
        let text = format!(
            r#"{{"op_id":"a1","client_ts":"2026-01-01T00:00:00Z","kind":"task_update",
                "task_id":"{task}","base_version":3,"changes":{{"title":" t "}}}}"#
        );
        let mut op: SyncOp = serde_json::from_str(&text).unwrap();
        op.normalize().unwrap();
        match &op.kind {
            OpKind::TaskUpdate { changes, .. } => assert_eq!(changes.title.as_deref(), Some("t")),
            other => panic!("{other:?}"),
        }
        assert_eq!(op.task_id(), Some(task));
        assert!(
            serde_json::from_str::<SyncOp>(&text.replace("task_update", "task_rename")).is_err()
        );
        let mut bad = op.clone();
        bad.op_id = "has space".into();
        assert!(bad.normalize().unwrap_err().starts_with("op_id"));
        bad.op_id = "x".repeat(65);
        assert!(bad.normalize().is_err());
        assert!(
            serde_json::from_str::<SyncOp>(&text.replace("\"base_version\":3,", ""))
                .unwrap_err()
                .to_string()
                .contains("needs `base_version`")
        );
        assert!(
            serde_json::from_str::<SyncOp>(&text.replace("\"base_version\"", "\"bass\"")).is_err()
        );
        let mut create = SyncOp {
            op_id: "c".into(),
            workspace_id: None,
            client_ts: Utc::now(),
            kind: OpKind::TaskCreate {
                task: TaskDraft::titled("t"),
            },
        };
        assert!(create.normalize().unwrap_err().contains("task.id"));
    }

    #[test]
    fn a_malformed_op_is_refused_alone() {
        let task = TaskId::new();
        let batch: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(&format!(
            r#"[{{"op_id":"ok","client_ts":"2026-01-01T00:00:00Z","kind":"task_delete",
                  "task_id":"{task}","base_version":1}},
                {{"op_id":"bad","client_ts":"yesterday","kind":"task_delete"}},
                {{"op_id":"no spaces please","client_ts":"2026-01-01T00:00:00Z",
                  "kind":"task_delete","task_id":"{task}","base_version":1}},
                7]"#
        ))
        .unwrap();
        let parsed = parse_ops(&batch);
        assert!(parsed[0].is_ok());
        let refused: Vec<(String, Option<ErrorCode>)> = parsed[1..]
            .iter()
            .map(|r| {
                let r = r.as_ref().unwrap_err();
                (r.op_id.clone(), r.code)
            })
            .collect();
        assert_eq!(
            refused,
            [
                ("bad".into(), Some(ErrorCode::InvalidPayload)),
                ("no spaces please".into(), Some(ErrorCode::InvalidPayload)),
                (String::new(), Some(ErrorCode::InvalidPayload)),
            ]
        );
    }

    #[test]
    fn every_field_a_change_can_name_has_one_rule() {
        let names = [
            "title",
            "description",
            "status",
            "priority",
            "assignee",
            "due_date",
            "category_id",
            "tags",
            "parent_id",
            "recurrence",
            "position",
        ];
        for name in names {
            assert_eq!(
                RULES.iter().filter(|r| r.field == name).count(),
                1,
                "{name}"
            );
        }
        assert_eq!(RULES.len(), names.len());
        assert_eq!(
            rule_of("status").map(|r| r.rule),
            Some(Rule::CompletionWins)
        );
        assert_eq!(rule_of("position").map(|r| r.ledger), Some(false));
    }
}
