//! The per-field merge of an offline edit, by the rules of [`signaling::sync::RULES`]: pure
//! functions of the task as it is, when each of its fields last changed, and the edit.
//!
//! An edit based on version `b` of a task now at version `v > b` is not refused: each field it
//! names that nobody changed since `b` is applied as is; a field changed since `b` on both sides
//! is decided by the field's rule, and the value that lost goes to the conflict ledger.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use signaling::sync::{Conflict, Rule, rule_of};
use signaling::task::{Task, TaskChanges};
use signaling::{TaskId, UserId};

/// When a field was last set, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The task version that set it.
    pub version: u64,
    /// When the user made that edit (for an offline edit, by the client's clock).
    pub at: DateTime<Utc>,
    /// Who.
    pub by: UserId,
}

/// A task's field stamps, for the fields changed since it was created (the others carry the
/// creation's stamp). `completed` and `status` share `status`.
pub type Clocks = BTreeMap<String, Stamp>;

/// The name a field's stamp is kept under.
pub fn clock_field(field: &str) -> &str {
    if field == "completed" {
        "status"
    } else {
        field
    }
}

/// What a merge keeps of an edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The changes to apply (possibly none).
    pub apply: TaskChanges,
    /// The ledger entries.
    pub conflicts: Vec<Conflict>,
    /// Whether a field of the edit lost (or won) against a newer one.
    pub contested: bool,
}

/// Who an offline edit is, for the ledger.
#[derive(Debug, Clone)]
pub struct Edit<'a> {
    /// Its author.
    pub by: UserId,
    /// When they made it (already clamped to the hub's clock).
    pub at: DateTime<Utc>,
    /// The operation's id.
    pub op_id: &'a str,
    /// When the hub decides.
    pub now: DateTime<Utc>,
}

fn entry(
    task: TaskId,
    field: &str,
    rule: Rule,
    kept: Value,
    lost: Value,
    lost_by: UserId,
    edit: &Edit<'_>,
) -> Conflict {
    Conflict {
        id: uuid::Uuid::now_v7(),
        task_id: task,
        field: field.to_owned(),
        rule,
        kept,
        lost,
        lost_by,
        op_id: edit.op_id.to_owned(),
        at: edit.now,
    }
}

/// The stamp of `field` on `task`.
pub fn stamp_of(task: &Task, clocks: Option<&Clocks>, field: &str) -> Stamp {
    clocks
        .and_then(|c| c.get(clock_field(field)))
        .copied()
        .unwrap_or(Stamp {
            version: 1,
            at: task.created_at,
            by: task.created_by,
        })
}

/// Merges `changes`, based on version `base`, into `current`.
pub fn merge(
    current: &Task,
    clocks: Option<&Clocks>,
    base: u64,
    changes: &TaskChanges,
    edit: &Edit<'_>,
) -> Merged {
    let now_json = serde_json::to_value(current).unwrap_or(Value::Null);
    let sent = match serde_json::to_value(changes) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut keep = Map::new();
    let mut conflicts = Vec::new();
    let mut contested = false;
    // The task's state is decided once for `completed` and `status` together.
    let mut state_done = false;
    for (field, value) in &sent {
        let key = clock_field(field);
        if key == "status" {
            if state_done {
                continue;
            }
            state_done = true;
        }
        let stamp = stamp_of(current, clocks, field);
        if stamp.version <= base {
            if key == "status" {
                copy_field(&sent, "status", &mut keep);
                copy_field(&sent, "completed", &mut keep);
            } else {
                copy_field(&sent, field, &mut keep);
            }
            continue;
        }
        let Some(rule) = rule_of(key) else {
            copy_field(&sent, field, &mut keep);
            continue;
        };
        if key == "status" {
            let mut wanted = current.clone();
            changes.apply_to(&mut wanted);
            if (wanted.completed, wanted.status) == (current.completed, current.status) {
                continue;
            }
            contested = true;
            let client_wins = match (current.completed, wanted.completed) {
                (true, false) => false,
                (false, true) => true,
                _ => edit.at > stamp.at,
            };
            let (kept, lost, lost_by) = if client_wins {
                copy_field(&sent, "status", &mut keep);
                copy_field(&sent, "completed", &mut keep);
                (status_json(&wanted), status_json(current), stamp.by)
            } else {
                (status_json(current), status_json(&wanted), edit.by)
            };
            let rule = if current.completed != wanted.completed {
                Rule::CompletionWins
            } else {
                Rule::LastWriterWins
            };
            conflicts.push(entry(current.id, "status", rule, kept, lost, lost_by, edit));
            continue;
        }
        let theirs = now_json.get(key).cloned().unwrap_or(Value::Null);
        if &theirs == value {
            continue;
        }
        contested = true;
        let client_wins = edit.at > stamp.at;
        if client_wins {
            copy_field(&sent, field, &mut keep);
        }
        if rule.ledger {
            let (kept, lost, lost_by) = if client_wins {
                (value.clone(), theirs, stamp.by)
            } else {
                (theirs, value.clone(), edit.by)
            };
            conflicts.push(entry(current.id, key, rule.rule, kept, lost, lost_by, edit));
        }
    }
    let apply = serde_json::from_value(Value::Object(keep)).unwrap_or_default();
    Merged {
        apply,
        conflicts,
        contested,
    }
}

/// The ledger entry of a deletion that won over edits made since the deleting client's version:
/// the task as edited is kept, to be restored if the user chooses so.
pub fn deleted_over_edits(current: &Task, clocks: Option<&Clocks>, edit: &Edit<'_>) -> Conflict {
    let last_editor = clocks
        .and_then(|c| c.values().max_by_key(|s| s.version))
        .map_or(current.created_by, |s| s.by);
    let lost = serde_json::to_value(current).unwrap_or(Value::Null);
    entry(
        current.id,
        "task",
        Rule::DeleteWins,
        Value::Null,
        lost,
        last_editor,
        edit,
    )
}

/// The ledger entry of an edit of a task that is gone: the edit is kept.
pub fn edit_of_deleted(task: TaskId, changes: &TaskChanges, edit: &Edit<'_>) -> Conflict {
    let lost = serde_json::to_value(changes).unwrap_or(Value::Null);
    entry(
        task,
        "task",
        Rule::DeleteWins,
        Value::Null,
        lost,
        edit.by,
        edit,
    )
}

fn copy_field(from: &Map<String, Value>, field: &str, to: &mut Map<String, Value>) {
    if let Some(v) = from.get(field) {
        to.insert(field.to_owned(), v.clone());
    }
}

fn status_json(task: &Task) -> Value {
    serde_json::to_value(task.status).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use signaling::rank::Rank;
    use signaling::task::{Priority, Status};

    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn task() -> Task {
        Task {
            id: TaskId::new(),
            title: "title".into(),
            description: Some("desc".into()),
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
            version: 3,
            created_by: UserId::new(),
            created_at: t0(),
            updated_at: t0(),
        }
    }

    /// The server set `field` at version 3, `minutes` after t0.
    fn clocks(fields: &[&str], minutes: i64, by: UserId) -> Clocks {
        fields
            .iter()
            .map(|f| {
                let stamp = Stamp {
                    version: 3,
                    at: t0() + Duration::minutes(minutes),
                    by,
                };
                ((*f).to_owned(), stamp)
            })
            .collect()
    }

    fn edit(minutes: i64, by: UserId) -> Edit<'static> {
        Edit {
            by,
            at: t0() + Duration::minutes(minutes),
            op_id: "op",
            now: t0() + Duration::hours(1),
        }
    }

    fn changes(json: Value) -> TaskChanges {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fields_nobody_else_touched_merge_without_conflict() {
        let (server, me) = (UserId::new(), UserId::new());
        let c = clocks(&["title"], 10, server);
        let m = merge(
            &task(),
            Some(&c),
            2,
            &changes(serde_json::json!({"description": "mine", "priority": "high"})),
            &edit(5, me),
        );
        assert!(m.conflicts.is_empty() && !m.contested);
        assert_eq!(m.apply.description, Some(Some("mine".into())));
        assert_eq!(m.apply.priority, Some(Priority::High));
    }

    #[test]
    fn title_and_description_go_to_the_later_writer_and_the_loser_to_the_ledger() {
        let (server, me) = (UserId::new(), UserId::new());
        let mut current = task();
        current.title = "server title".into();
        let c = clocks(&["title", "description"], 10, server);
        // Mine is older: the server's title stays, mine is in the ledger.
        let m = merge(
            &current,
            Some(&c),
            2,
            &changes(serde_json::json!({"title": "my title"})),
            &edit(5, me),
        );
        assert_eq!(m.apply, TaskChanges::default());
        assert_eq!(m.conflicts.len(), 1);
        let e = &m.conflicts[0];
        assert_eq!((e.field.as_str(), e.rule), ("title", Rule::LastWriterWins));
        assert_eq!(
            (e.kept.clone(), e.lost.clone(), e.lost_by),
            ("server title".into(), "my title".into(), me)
        );
        // Mine is newer: it wins, and the server's value is the one kept in the ledger.
        let m = merge(
            &current,
            Some(&c),
            2,
            &changes(serde_json::json!({"description": null})),
            &edit(15, me),
        );
        assert_eq!(m.apply.description, Some(None));
        let e = &m.conflicts[0];
        assert_eq!(
            (e.kept.clone(), e.lost.clone(), e.lost_by),
            (Value::Null, "desc".into(), server)
        );
    }

    #[test]
    fn a_completion_is_not_undone_by_a_stale_edit_and_a_stale_completion_wins() {
        let (server, me) = (UserId::new(), UserId::new());
        let mut done = task();
        done.completed = true;
        done.status = Status::Done;
        let c = clocks(&["status"], 10, server);
        // Reopened offline after (by the clock) the completion: the completion still stands.
        for reopen in [
            serde_json::json!({"completed": false}),
            serde_json::json!({"status": "in_progress"}),
        ] {
            let m = merge(&done, Some(&c), 2, &changes(reopen), &edit(30, me));
            assert_eq!(m.apply, TaskChanges::default());
            assert_eq!(m.conflicts[0].rule, Rule::CompletionWins);
            assert_eq!(m.conflicts[0].kept, "done");
        }
        // Completed offline before a newer "in progress": the completion wins anyway.
        let mut going = task();
        going.status = Status::InProgress;
        let m = merge(
            &going,
            Some(&c),
            2,
            &changes(serde_json::json!({"completed": true})),
            &edit(1, me),
        );
        assert_eq!(m.apply.completed, Some(true));
        assert_eq!(
            (m.conflicts[0].kept.clone(), m.conflicts[0].lost.clone()),
            ("done".into(), "in_progress".into())
        );
        // Neither side completes: the later writer wins.
        let m = merge(
            &going,
            Some(&c),
            2,
            &changes(serde_json::json!({"status": "todo"})),
            &edit(1, me),
        );
        assert_eq!(m.apply, TaskChanges::default());
        assert_eq!(m.conflicts[0].rule, Rule::LastWriterWins);
    }

    #[test]
    fn moves_merge_without_a_ledger_entry() {
        let (server, me) = (UserId::new(), UserId::new());
        let mut current = task();
        current.position = Rank::parse("a5").unwrap();
        let c = clocks(&["position"], 10, server);
        let newer = merge(
            &current,
            Some(&c),
            2,
            &changes(serde_json::json!({"position": "a2"})),
            &edit(20, me),
        );
        assert_eq!(newer.apply.position, Some(Rank::parse("a2").unwrap()));
        assert!(newer.conflicts.is_empty() && newer.contested);
        let older = merge(
            &current,
            Some(&c),
            2,
            &changes(serde_json::json!({"position": "a2"})),
            &edit(1, me),
        );
        assert_eq!(older.apply, TaskChanges::default());
        assert!(older.conflicts.is_empty());
    }

    #[test]
    fn the_same_value_on_both_sides_is_no_conflict() {
        let server = UserId::new();
        let mut current = task();
        current.title = "same".into();
        let c = clocks(&["title"], 10, server);
        let m = merge(
            &current,
            Some(&c),
            2,
            &changes(serde_json::json!({"title": "same"})),
            &edit(1, UserId::new()),
        );
        assert!(m.conflicts.is_empty() && !m.contested);
    }

    #[test]
    fn a_deletion_keeps_the_edits_it_won_over() {
        let (server, me) = (UserId::new(), UserId::new());
        let current = task();
        let c = clocks(&["title"], 10, server);
        let e = deleted_over_edits(&current, Some(&c), &edit(1, me));
        assert_eq!(
            (e.field.as_str(), e.rule, e.lost_by),
            ("task", Rule::DeleteWins, server)
        );
        assert_eq!(e.lost["title"], "title");
        let lost = edit_of_deleted(
            current.id,
            &changes(serde_json::json!({"title": "x"})),
            &edit(1, me),
        );
        assert_eq!((lost.lost["title"].clone(), lost.lost_by), ("x".into(), me));
    }
}
