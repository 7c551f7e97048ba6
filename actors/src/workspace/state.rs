//! The workspace room's durable state and every rule about changing it, as plain functions.
//!
//! Writes are event-sourced: `decide_*` checks a command against the state and returns the
//! [`Event`] it would produce without changing anything; the actor journals the event, then
//! [`WorkspaceState::apply`] makes it true. Recovery replays the same `apply` over the journal,
//! so a restarted room ends up exactly where the old one was.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signaling::category::{Category, CategoryChanges, CategoryDraft};
use signaling::rank::Rank;
use signaling::server::{Event, WorkspaceView, changed_fields};
use signaling::task::{Task, TaskChanges, TaskDraft};
use signaling::workspace::{Member, Role};
use signaling::{CategoryId, TaskId, UserId, WorkspaceId};

use signaling::server::SyncMeta;
use signaling::sync::{Choice, Conflict, OpKind, SyncOp};

use super::merge::{self, Clocks, Edit, Stamp};
use super::messages::RoomError;

/// Most tasks one workspace holds (subtasks included).
pub const MAX_TASKS: usize = 10_000;
/// Most categories one workspace holds.
pub const MAX_CATEGORIES: usize = 100;
/// How many applied offline operations a workspace remembers (a retried push within them
/// applies nothing twice).
pub const REMEMBERED_OPS: usize = 2000;

/// An offline operation that was applied: whose, and the offset of its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedOp {
    /// Who pushed it.
    pub user: UserId,
    /// The client's id for it.
    pub op_id: String,
    /// Its event's offset.
    pub offset: u64,
}

/// What an offline operation comes to.
#[derive(Debug)]
pub enum SyncDecision {
    /// An event to journal; `merged` when some field met a newer edit.
    Write {
        /// The event.
        event: Box<Event>,
        /// Whether it was merged.
        merged: bool,
    },
    /// Applied before (at this offset): nothing to do.
    Duplicate(u64),
    /// Nothing to do and nothing to remember (a delete of a task already gone).
    Nothing,
}

/// A workspace room's durable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceState {
    /// The room.
    pub id: WorkspaceId,
    /// The workspace's name.
    pub name: String,
    /// The offset of the last applied event.
    pub offset: u64,
    /// Members by user.
    pub members: HashMap<UserId, Member>,
    /// Tasks by id.
    pub tasks: HashMap<TaskId, Task>,
    /// Categories by id.
    #[serde(default)]
    pub categories: HashMap<CategoryId, Category>,
    /// When each task's fields last changed (fields changed since creation only).
    #[serde(default)]
    pub clocks: HashMap<TaskId, Clocks>,
    /// The latest applied offline operations, oldest first (at most [`REMEMBERED_OPS`]).
    #[serde(default)]
    pub applied_ops: VecDeque<AppliedOp>,
    /// The latest settled conflict ledger entries, oldest first (at most [`REMEMBERED_OPS`]):
    /// a second settlement racing the first is refused here, before the ledger says so.
    #[serde(default)]
    pub settled: VecDeque<uuid::Uuid>,
}

impl WorkspaceState {
    /// An empty room.
    pub fn new(id: WorkspaceId, name: String) -> Self {
        Self {
            id,
            name,
            offset: 0,
            members: HashMap::new(),
            tasks: HashMap::new(),
            categories: HashMap::new(),
            clocks: HashMap::new(),
            applied_ops: VecDeque::new(),
            settled: VecDeque::new(),
        }
    }

    /// `user`'s role.
    ///
    /// # Errors
    /// [`RoomError::NotAMember`].
    pub fn role(&self, user: UserId) -> Result<Role, RoomError> {
        self.members
            .get(&user)
            .map(|m| m.role)
            .ok_or(RoomError::NotAMember)
    }

    fn writer(&self, user: UserId) -> Result<Role, RoomError> {
        let role = self.role(user)?;
        if role.can_write_tasks() {
            Ok(role)
        } else {
            Err(RoomError::Forbidden("viewers cannot change tasks"))
        }
    }

    fn manager(&self, user: UserId) -> Result<Role, RoomError> {
        let role = self.role(user)?;
        if role.can_manage_members() {
            Ok(role)
        } else {
            Err(RoomError::Forbidden(
                "only owners and admins manage the workspace",
            ))
        }
    }

    fn check_assignee(&self, assignee: Option<UserId>) -> Result<(), RoomError> {
        match assignee {
            Some(a) if !self.members.contains_key(&a) => Err(RoomError::Invalid(
                "assignee: not a member of this workspace".into(),
            )),
            _ => Ok(()),
        }
    }

    /// A task.
    ///
    /// # Errors
    /// [`RoomError::TaskNotFound`].
    pub fn task(&self, id: TaskId) -> Result<&Task, RoomError> {
        self.tasks.get(&id).ok_or(RoomError::TaskNotFound)
    }

    /// Tasks in board order (position, then creation).
    pub fn tasks_in_order(&self) -> Vec<&Task> {
        let mut tasks: Vec<&Task> = self.tasks.values().collect();
        // Creation time to the millisecond, as the board's index orders it.
        tasks.sort_by(|a, b| {
            (&a.position, a.created_at.timestamp_millis(), a.id).cmp(&(
                &b.position,
                b.created_at.timestamp_millis(),
                b.id,
            ))
        });
        tasks
    }

    /// Categories in list order (position, then creation).
    pub fn categories_in_order(&self) -> Vec<&Category> {
        let mut categories: Vec<&Category> = self.categories.values().collect();
        categories.sort_by(|a, b| {
            (a.position, a.created_at, a.id).cmp(&(b.position, b.created_at, b.id))
        });
        categories
    }

    /// A category.
    ///
    /// # Errors
    /// [`RoomError::CategoryNotFound`].
    pub fn category(&self, id: CategoryId) -> Result<&Category, RoomError> {
        self.categories.get(&id).ok_or(RoomError::CategoryNotFound)
    }

    fn check_category(&self, category: Option<CategoryId>) -> Result<(), RoomError> {
        match category {
            Some(c) if !self.categories.contains_key(&c) => Err(RoomError::Invalid(
                "category_id: no such category in this workspace".into(),
            )),
            _ => Ok(()),
        }
    }

    /// A task may become a subtask of `parent` when `parent` exists, is not itself a subtask and
    /// is not the task; and the task has no subtasks of its own (one level only).
    fn check_parent(&self, task: Option<TaskId>, parent: Option<TaskId>) -> Result<(), RoomError> {
        let Some(parent) = parent else { return Ok(()) };
        let invalid = |why: &str| Err(RoomError::Invalid(format!("parent_id: {why}")));
        match self.tasks.get(&parent) {
            None => return invalid("no such task in this workspace"),
            Some(p) if p.parent_id.is_some() => return invalid("a subtask cannot have subtasks"),
            Some(_) if Some(parent) == task => return invalid("a task cannot be its own parent"),
            Some(_) => {}
        }
        if let Some(task) = task
            && self.tasks.values().any(|t| t.parent_id == Some(task))
        {
            return invalid("a task with subtasks cannot become a subtask");
        }
        Ok(())
    }

    /// The key after the last task on the board.
    /// The key after the last task on the board; when no longer key fits after it, the last
    /// key itself (equal keys are ordered by creation, so the new task still comes last).
    fn end_of_board(&self) -> Rank {
        let last = self.tasks.values().map(|t| &t.position).max();
        match Rank::between(last, None) {
            Ok(key) => key,
            Err(_) => last.cloned().unwrap_or_else(Rank::first),
        }
    }

    /// Members, owners first, then by name.
    pub fn members_in_order(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by(|a, b| {
            (a.role as u8, &a.name, a.user_id).cmp(&(b.role as u8, &b.name, b.user_id))
        });
        members
    }

    /// The whole state as clients see it.
    pub fn view(&self) -> WorkspaceView<'_> {
        WorkspaceView {
            workspace_id: self.id,
            offset: self.offset,
            name: &self.name,
            members: self.members_in_order(),
            categories: self.categories_in_order(),
            tasks: self.tasks_in_order(),
        }
    }

    /// Checks a create.
    ///
    /// # Errors
    /// Not a writer, a taken id, a non-member assignee, an unknown category or parent, a full
    /// board.
    pub fn decide_create(
        &self,
        user: UserId,
        draft: TaskDraft,
        now: DateTime<Utc>,
    ) -> Result<Event, RoomError> {
        self.writer(user)?;
        draft
            .validate()
            .map_err(|e| RoomError::Invalid(format!("task.{e}")))?;
        self.check_assignee(draft.assignee)?;
        self.check_category(draft.category_id)?;
        let id = draft.id.unwrap_or_default();
        if self.tasks.contains_key(&id) {
            return Err(RoomError::AlreadyExists("a task with this id exists"));
        }
        if self.tasks.len() >= MAX_TASKS {
            return Err(RoomError::LimitReached(
                "a workspace holds at most 10000 tasks",
            ));
        }
        self.check_parent(None, draft.parent_id)?;
        let status = match (draft.status, draft.completed) {
            (Some(s), _) => s,
            (None, true) => signaling::task::Status::Done,
            (None, false) => signaling::task::Status::Todo,
        };
        let position = match draft.position {
            Some(p) => p,
            None => self.end_of_board(),
        };
        let completed = status == signaling::task::Status::Done;
        let task = Task {
            id,
            title: draft.title,
            description: draft.description,
            completed,
            priority: draft.priority,
            status,
            position,
            assignee: draft.assignee,
            due_date: draft.due_date,
            category_id: draft.category_id,
            tags: draft.tags,
            parent_id: draft.parent_id,
            completed_at: completed.then_some(now),
            recurrence: draft.recurrence,
            version: 1,
            created_by: user,
            created_at: now,
            updated_at: now,
        };
        Ok(Event::TaskCreated {
            task,
            by: user,
            sync: None,
        })
    }

    /// Checks an update. `base_version: None` (a REST write without a version) means
    /// last-writer-wins.
    ///
    /// # Errors
    /// Not a writer, no such task, a stale `base_version` ([`RoomError::Conflict`]).
    pub fn decide_update(
        &self,
        user: UserId,
        task_id: TaskId,
        base_version: Option<u64>,
        changes: TaskChanges,
        now: DateTime<Utc>,
    ) -> Result<Event, RoomError> {
        self.writer(user)?;
        changes
            .validate()
            .map_err(|e| RoomError::Invalid(format!("changes.{e}")))?;
        let current = self.task(task_id)?;
        if let Some(base) = base_version
            && base != current.version
        {
            return Err(RoomError::Conflict {
                current: Box::new(current.clone()),
                base_version: base,
                fields: changed_fields(&changes),
            });
        }
        if let Some(assignee) = changes.assignee {
            self.check_assignee(assignee)?;
        }
        if let Some(category) = changes.category_id {
            self.check_category(category)?;
        }
        if let Some(parent) = changes.parent_id {
            self.check_parent(Some(task_id), parent)?;
        }
        let mut task = current.clone();
        changes.apply_to(&mut task);
        task.completed_at = match (current.completed, task.completed) {
            (false, true) => Some(now),
            (_, false) => None,
            (true, true) => current.completed_at,
        };
        task.version += 1;
        task.updated_at = now;
        Ok(Event::TaskUpdated {
            task_id,
            changes,
            task,
            by: user,
            sync: None,
        })
    }

    /// Checks a delete (its subtasks go with it).
    ///
    /// # Errors
    /// Not a writer, no such task.
    pub fn decide_delete(&self, user: UserId, task_id: TaskId) -> Result<Event, RoomError> {
        self.writer(user)?;
        self.task(task_id)?;
        let mut subtasks: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.parent_id == Some(task_id))
            .map(|t| t.id)
            .collect();
        subtasks.sort();
        Ok(Event::TaskDeleted {
            task_id,
            subtasks,
            by: user,
            sync: None,
        })
    }

    /// The offset an offline operation of `user` was applied at, if it is remembered.
    pub fn applied_op(&self, user: UserId, op_id: &str) -> Option<u64> {
        self.applied_ops
            .iter()
            .rev()
            .find(|o| o.user == user && o.op_id == op_id)
            .map(|o| o.offset)
    }

    /// Decides one offline operation: applied as is when its base is current, merged field by
    /// field (see [`merge`]) when the task moved on, recorded in the ledger when it lost whole.
    ///
    /// # Errors
    /// Not a writer, a malformed or impossible operation (the same refusals as the live
    /// commands).
    pub fn decide_sync(
        &self,
        user: UserId,
        op: SyncOp,
        now: DateTime<Utc>,
    ) -> Result<SyncDecision, RoomError> {
        self.writer(user)?;
        if let Some(offset) = self.applied_op(user, &op.op_id) {
            return Ok(SyncDecision::Duplicate(offset));
        }
        // A client cannot win every tie by living in the future.
        let client_ts = op.client_ts.min(now);
        let edit = Edit {
            by: user,
            at: client_ts,
            op_id: &op.op_id,
            now,
        };
        let meta = |conflicts: Vec<Conflict>| SyncMeta {
            op_id: op.op_id.clone(),
            client_ts,
            conflicts,
        };
        match &op.kind {
            OpKind::TaskCreate { task } => {
                let event = self.decide_create(user, task.clone(), now)?;
                let Event::TaskCreated { task, by, .. } = event else {
                    return Err(RoomError::Unavailable);
                };
                Ok(SyncDecision::Write {
                    event: Box::new(Event::TaskCreated {
                        task,
                        by,
                        sync: Some(meta(Vec::new())),
                    }),
                    merged: false,
                })
            }
            OpKind::TaskUpdate {
                task_id,
                base_version,
                changes,
            } => {
                let Some(current) = self.tasks.get(task_id) else {
                    let lost = merge::edit_of_deleted(*task_id, changes, &edit);
                    return Ok(SyncDecision::Write {
                        event: Box::new(Event::SyncConflicted {
                            task_id: *task_id,
                            by: user,
                            sync: meta(vec![lost]),
                        }),
                        merged: true,
                    });
                };
                if *base_version > current.version {
                    return Err(RoomError::Invalid(format!(
                        "base_version: the task is at version {}",
                        current.version
                    )));
                }
                let (apply, conflicts, merged) = if *base_version == current.version {
                    (changes.clone(), Vec::new(), false)
                } else {
                    let m = merge::merge(
                        current,
                        self.clocks.get(task_id),
                        *base_version,
                        changes,
                        &edit,
                    );
                    (m.apply, m.conflicts, m.contested)
                };
                if apply.is_empty() && conflicts.is_empty() {
                    // Nothing to change and nothing lost (the same values, or a move that lost).
                    return Ok(SyncDecision::Nothing);
                }
                if apply.is_empty() {
                    return Ok(SyncDecision::Write {
                        event: Box::new(Event::SyncConflicted {
                            task_id: *task_id,
                            by: user,
                            sync: meta(conflicts),
                        }),
                        merged: true,
                    });
                }
                let event = self.decide_update(user, *task_id, None, apply, now)?;
                let Event::TaskUpdated {
                    task_id,
                    changes,
                    task,
                    by,
                    ..
                } = event
                else {
                    return Err(RoomError::Unavailable);
                };
                Ok(SyncDecision::Write {
                    event: Box::new(Event::TaskUpdated {
                        task_id,
                        changes,
                        task,
                        by,
                        sync: Some(meta(conflicts)),
                    }),
                    merged,
                })
            }
            OpKind::TaskDelete {
                task_id,
                base_version,
            } => {
                let Some(current) = self.tasks.get(task_id) else {
                    return Ok(SyncDecision::Nothing);
                };
                let mut conflicts = if *base_version < current.version {
                    vec![merge::deleted_over_edits(
                        current,
                        self.clocks.get(task_id),
                        &edit,
                    )]
                } else {
                    Vec::new()
                };
                // Its subtasks go with it; the offline client may not have seen them (or
                // their edits), so each is kept, restorable.
                let mut subtasks: Vec<&Task> = self
                    .tasks
                    .values()
                    .filter(|t| t.parent_id == Some(*task_id))
                    .collect();
                subtasks.sort_by_key(|t| t.id);
                for sub in subtasks {
                    conflicts.push(merge::deleted_over_edits(
                        sub,
                        self.clocks.get(&sub.id),
                        &edit,
                    ));
                }
                let merged = !conflicts.is_empty();
                let Event::TaskDeleted {
                    task_id, subtasks, ..
                } = self.decide_delete(user, *task_id)?
                else {
                    return Err(RoomError::Unavailable);
                };
                Ok(SyncDecision::Write {
                    event: Box::new(Event::TaskDeleted {
                        task_id,
                        subtasks,
                        by: user,
                        sync: Some(meta(conflicts)),
                    }),
                    merged,
                })
            }
        }
    }

    /// Decides settling a ledger entry: `kept` closes it; `lost` puts the losing value back (a
    /// field of a task that still exists, or a deleted task re-created).
    ///
    /// # Errors
    /// Not a writer; the task the value belongs to is gone (only `kept` is possible then); the
    /// value no longer fits (e.g. its assignee left).
    pub fn decide_resolve(
        &self,
        user: UserId,
        conflict: &Conflict,
        choice: Choice,
        now: DateTime<Utc>,
    ) -> Result<Event, RoomError> {
        self.writer(user)?;
        if self.settled.contains(&conflict.id) {
            return Err(RoomError::Settled);
        }
        let task = match choice {
            Choice::Kept => None,
            Choice::Lost if conflict.field == "task" => {
                if self.tasks.contains_key(&conflict.task_id) {
                    return Err(RoomError::AlreadyExists("the task exists"));
                }
                let mut task: Task = serde_json::from_value(conflict.lost.clone())
                    .map_err(|_| RoomError::TaskNotFound)?;
                self.check_assignee(task.assignee)?;
                self.check_category(task.category_id)?;
                self.check_parent(None, task.parent_id)?;
                if self.tasks.len() >= MAX_TASKS {
                    return Err(RoomError::LimitReached(
                        "a workspace holds at most 10000 tasks",
                    ));
                }
                task.version += 1;
                task.updated_at = now;
                Some(task)
            }
            Choice::Lost => {
                let mut changes = serde_json::Map::new();
                changes.insert(conflict.field.clone(), conflict.lost.clone());
                let mut changes: TaskChanges =
                    serde_json::from_value(serde_json::Value::Object(changes))
                        .map_err(|e| RoomError::Invalid(format!("the lost value: {e}")))?;
                changes
                    .normalize()
                    .map_err(|e| RoomError::Invalid(format!("the lost value: {e}")))?;
                match self.decide_update(user, conflict.task_id, None, changes, now)? {
                    Event::TaskUpdated { task, .. } => Some(task),
                    _ => return Err(RoomError::Unavailable),
                }
            }
        };
        Ok(Event::ConflictResolved {
            conflict_id: conflict.id,
            field: conflict.field.clone(),
            choice,
            task,
            by: user,
        })
    }

    fn name_taken(&self, name: &str, except: Option<CategoryId>) -> Result<(), RoomError> {
        let lower = name.to_lowercase();
        if self
            .categories
            .values()
            .any(|c| Some(c.id) != except && c.name.to_lowercase() == lower)
        {
            return Err(RoomError::AlreadyExists(
                "a category with this name exists in the workspace",
            ));
        }
        Ok(())
    }

    /// Checks creating a category (writers may).
    ///
    /// # Errors
    /// Not a writer, a taken id or name, too many categories.
    pub fn decide_create_category(
        &self,
        user: UserId,
        mut draft: CategoryDraft,
        now: DateTime<Utc>,
    ) -> Result<Event, RoomError> {
        self.writer(user)?;
        draft
            .normalize()
            .map_err(|e| RoomError::Invalid(format!("category.{e}")))?;
        let id = draft.id.unwrap_or_default();
        if self.categories.contains_key(&id) {
            return Err(RoomError::AlreadyExists("a category with this id exists"));
        }
        self.name_taken(&draft.name, None)?;
        if self.categories.len() >= MAX_CATEGORIES {
            return Err(RoomError::LimitReached(
                "a workspace holds at most 100 categories",
            ));
        }
        let position = draft.position.unwrap_or_else(|| {
            self.categories
                .values()
                .map(|c| c.position.saturating_add(1))
                .max()
                .unwrap_or(0)
        });
        let category = Category {
            id,
            name: draft.name,
            color: draft.color,
            position,
            created_by: user,
            created_at: now,
            updated_at: now,
        };
        Ok(Event::CategoryCreated { category, by: user })
    }

    /// Checks changing a category.
    ///
    /// # Errors
    /// Not a writer, no such category, a taken name.
    pub fn decide_update_category(
        &self,
        user: UserId,
        category_id: CategoryId,
        mut changes: CategoryChanges,
        now: DateTime<Utc>,
    ) -> Result<Event, RoomError> {
        self.writer(user)?;
        changes
            .normalize()
            .map_err(|e| RoomError::Invalid(format!("changes.{e}")))?;
        let mut category = self.category(category_id)?.clone();
        if let Some(name) = &changes.name {
            self.name_taken(name, Some(category_id))?;
        }
        changes.apply_to(&mut category);
        category.updated_at = now;
        Ok(Event::CategoryUpdated {
            category_id,
            changes,
            category,
            by: user,
        })
    }

    /// Checks deleting a category: its tasks stay, with no category.
    ///
    /// # Errors
    /// Not a writer, no such category.
    pub fn decide_delete_category(
        &self,
        user: UserId,
        category_id: CategoryId,
        now: DateTime<Utc>,
    ) -> Result<Event, RoomError> {
        self.writer(user)?;
        self.category(category_id)?;
        let mut tasks: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.category_id == Some(category_id))
            .map(|t| t.id)
            .collect();
        tasks.sort();
        Ok(Event::CategoryDeleted {
            category_id,
            tasks,
            by: user,
            at: now,
        })
    }

    /// Checks adding `member` (their role inside). Only an owner may make another owner.
    ///
    /// # Errors
    /// Not a manager, already a member.
    pub fn decide_add_member(&self, by: UserId, member: Member) -> Result<Event, RoomError> {
        let role = self.manager(by)?;
        if member.role == Role::Owner && role != Role::Owner {
            return Err(RoomError::Forbidden("only an owner can add an owner"));
        }
        if self.members.contains_key(&member.user_id) {
            return Err(RoomError::AlreadyExists("already a member"));
        }
        Ok(Event::MemberJoined { member, by })
    }

    /// Checks a role change. Admins cannot touch owners nor make one; the last owner cannot be
    /// demoted.
    ///
    /// # Errors
    /// Not a manager, no such member, the last owner.
    pub fn decide_set_role(
        &self,
        by: UserId,
        user: UserId,
        role: Role,
    ) -> Result<Event, RoomError> {
        let my_role = self.manager(by)?;
        let current = self.members.get(&user).ok_or(RoomError::UserNotFound)?.role;
        if my_role != Role::Owner && (current == Role::Owner || role == Role::Owner) {
            return Err(RoomError::Forbidden(
                "only an owner can change an owner or make one",
            ));
        }
        if current == Role::Owner && role != Role::Owner && self.owners() == 1 {
            return Err(RoomError::LastOwner);
        }
        Ok(Event::MemberUpdated {
            user_id: user,
            role,
            by,
        })
    }

    /// Checks removing `user` (`by == user` is leaving, which anyone may do).
    ///
    /// # Errors
    /// Not a manager, no such member, an admin removing an owner, the last owner.
    pub fn decide_remove_member(&self, by: UserId, user: UserId) -> Result<Event, RoomError> {
        // The caller is checked before the target, so that a stranger (or someone leaving a
        // workspace they are not in) learns nothing about who else is a member.
        let my_role = if by == user {
            self.role(by)?
        } else {
            self.manager(by)?
        };
        let target = self.members.get(&user).ok_or(RoomError::UserNotFound)?.role;
        if by != user && target == Role::Owner && my_role != Role::Owner {
            return Err(RoomError::Forbidden("only an owner can remove an owner"));
        }
        if target == Role::Owner && self.owners() == 1 {
            return Err(RoomError::LastOwner);
        }
        Ok(Event::MemberLeft { user_id: user, by })
    }

    /// Checks a rename.
    ///
    /// # Errors
    /// Not a manager, an empty or overlong name.
    pub fn decide_rename(&self, by: UserId, name: String) -> Result<Event, RoomError> {
        self.manager(by)?;
        let name = validate_name(&name)?;
        Ok(Event::WorkspaceRenamed { name, by })
    }

    /// Checks deleting the workspace (owners only).
    ///
    /// # Errors
    /// Not an owner.
    pub fn check_delete(&self, by: UserId) -> Result<(), RoomError> {
        match self.role(by)? {
            Role::Owner => Ok(()),
            _ => Err(RoomError::Forbidden(
                "only an owner can delete the workspace",
            )),
        }
    }

    fn owners(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count()
    }

    /// Makes a journaled event true and moves the offset to it. Replaying the journal through
    /// this function rebuilds the state.
    pub fn apply(&mut self, offset: u64, event: &Event) {
        match event {
            Event::TaskCreated { task, .. } => {
                self.tasks.insert(task.id, task.clone());
            }
            Event::TaskUpdated {
                changes,
                task,
                by,
                sync,
                ..
            } => {
                let stamp = Stamp {
                    version: task.version,
                    at: sync.as_ref().map_or(task.updated_at, |s| s.client_ts),
                    by: *by,
                };
                let clocks = self.clocks.entry(task.id).or_default();
                for field in changed_fields(changes) {
                    clocks.insert(merge::clock_field(field).to_owned(), stamp);
                }
                self.tasks.insert(task.id, task.clone());
            }
            Event::TaskDeleted {
                task_id, subtasks, ..
            } => {
                for id in std::iter::once(task_id).chain(subtasks) {
                    self.tasks.remove(id);
                    self.clocks.remove(id);
                }
            }
            Event::SyncConflicted { .. } => {}
            Event::ConflictResolved {
                conflict_id,
                field,
                task,
                by,
                ..
            } => {
                if let Some(task) = task {
                    let stamp = Stamp {
                        version: task.version,
                        at: task.updated_at,
                        by: *by,
                    };
                    let clocks = self.clocks.entry(task.id).or_default();
                    if field == "task" {
                        // A task re-created: every field of it is as new as the resolution.
                        for rule in signaling::sync::RULES {
                            clocks.insert(rule.field.to_owned(), stamp);
                        }
                    } else {
                        clocks.insert(merge::clock_field(field).to_owned(), stamp);
                    }
                    self.tasks.insert(task.id, task.clone());
                }
                self.settled.push_back(*conflict_id);
                while self.settled.len() > REMEMBERED_OPS {
                    self.settled.pop_front();
                }
            }
            Event::CategoryCreated { category, .. } | Event::CategoryUpdated { category, .. } => {
                self.categories.insert(category.id, category.clone());
            }
            Event::CategoryDeleted {
                category_id,
                tasks,
                at,
                by,
            } => {
                self.categories.remove(category_id);
                for id in tasks {
                    if let Some(task) = self.tasks.get_mut(id) {
                        task.category_id = None;
                        task.version += 1;
                        task.updated_at = *at;
                        let stamp = Stamp {
                            version: task.version,
                            at: *at,
                            by: *by,
                        };
                        self.clocks
                            .entry(*id)
                            .or_default()
                            .insert("category_id".into(), stamp);
                    }
                }
            }
            Event::MemberJoined { member, .. } => {
                self.members.insert(member.user_id, member.clone());
            }
            Event::MemberUpdated { user_id, role, .. } => {
                if let Some(m) = self.members.get_mut(user_id) {
                    m.role = *role;
                }
            }
            Event::MemberLeft { user_id, .. } => {
                self.members.remove(user_id);
                for task in self.tasks.values_mut() {
                    if task.assignee == Some(*user_id) {
                        task.assignee = None;
                    }
                }
            }
            Event::WorkspaceRenamed { name, .. } => self.name.clone_from(name),
        }
        if let Some((user, op_id)) = sync_op(event) {
            self.applied_ops.push_back(AppliedOp {
                user,
                op_id: op_id.to_owned(),
                offset,
            });
            while self.applied_ops.len() > REMEMBERED_OPS {
                self.applied_ops.pop_front();
            }
        }
        self.offset = offset;
    }
}

/// The offline operation an event applied, if any.
fn sync_op(event: &Event) -> Option<(UserId, &str)> {
    match event {
        Event::TaskCreated {
            by, sync: Some(s), ..
        }
        | Event::TaskUpdated {
            by, sync: Some(s), ..
        }
        | Event::TaskDeleted {
            by, sync: Some(s), ..
        } => Some((*by, &s.op_id)),
        Event::SyncConflicted { by, sync, .. } => Some((*by, &sync.op_id)),
        _ => None,
    }
}

/// Validates a workspace name: trimmed, 1–100 characters, no control or invisible characters
/// (see `signaling::rest::clean_name`).
///
/// # Errors
/// [`RoomError::Invalid`].
pub fn validate_name(name: &str) -> Result<String, RoomError> {
    signaling::rest::clean_name(name).map_err(|e| RoomError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        state: WorkspaceState,
        owner: UserId,
        member: UserId,
        viewer: UserId,
    }

    fn member(role: Role) -> Member {
        let user_id = UserId::new();
        Member {
            user_id,
            role,
            name: format!("{role:?}"),
            email: format!("{user_id}@example.com"),
        }
    }

    fn fixture() -> Fixture {
        let mut state = WorkspaceState::new(WorkspaceId::new(), "Team".into());
        let (o, m, v) = (
            member(Role::Owner),
            member(Role::Member),
            member(Role::Viewer),
        );
        let ids = (o.user_id, m.user_id, v.user_id);
        for x in [o, m, v] {
            state.members.insert(x.user_id, x);
        }
        Fixture {
            state,
            owner: ids.0,
            member: ids.1,
            viewer: ids.2,
        }
    }

    fn commit(
        state: &mut WorkspaceState,
        decide: impl FnOnce(&WorkspaceState) -> Result<Event, RoomError>,
    ) -> Event {
        let event = decide(state).expect("decision");
        state.apply(state.offset + 1, &event);
        event
    }

    fn created_task(state: &mut WorkspaceState, by: UserId, title: &str) -> Task {
        match commit(state, |s| {
            s.decide_create(by, TaskDraft::titled(title), Utc::now())
        }) {
            Event::TaskCreated { task, .. } => task,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn members_create_tasks_at_the_end_of_the_board() {
        let mut f = fixture();
        let a = created_task(&mut f.state, f.member, "a");
        let b = created_task(&mut f.state, f.owner, "b");
        assert_eq!((a.position.as_str(), b.position.as_str()), ("a0", "a1"));
        assert_eq!(a.version, 1);
        assert_eq!(f.state.offset, 2);
        let order: Vec<_> = f
            .state
            .tasks_in_order()
            .iter()
            .map(|t| t.title.clone())
            .collect();
        assert_eq!(order, ["a", "b"]);
    }

    #[test]
    fn viewer_cannot_write_tasks() {
        let mut f = fixture();
        let t = created_task(&mut f.state, f.owner, "x");
        let err = f
            .state
            .decide_create(f.viewer, TaskDraft::titled("no"), Utc::now())
            .unwrap_err();
        assert!(matches!(err, RoomError::Forbidden(_)));
        assert!(matches!(
            f.state.decide_delete(f.viewer, t.id),
            Err(RoomError::Forbidden(_))
        ));
    }

    #[test]
    fn strangers_are_not_members() {
        let f = fixture();
        let err = f
            .state
            .decide_create(UserId::new(), TaskDraft::titled("x"), Utc::now())
            .unwrap_err();
        assert!(matches!(err, RoomError::NotAMember));
    }

    #[test]
    fn stale_base_version_is_a_conflict_naming_the_fields() {
        let mut f = fixture();
        let t = created_task(&mut f.state, f.owner, "x");
        let rename = |title: &str| TaskChanges {
            title: Some(title.into()),
            ..Default::default()
        };
        commit(&mut f.state, |s| {
            s.decide_update(f.member, t.id, Some(1), rename("y"), Utc::now())
        });
        assert_eq!(f.state.tasks[&t.id].version, 2);
        let err = f
            .state
            .decide_update(f.owner, t.id, Some(1), rename("z"), Utc::now())
            .unwrap_err();
        match err {
            RoomError::Conflict {
                current,
                base_version,
                fields,
            } => {
                assert_eq!((current.version, base_version), (2, 1));
                assert_eq!(current.title, "y");
                assert_eq!(fields, ["title"]);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Without a base version the write wins.
        commit(&mut f.state, |s| {
            s.decide_update(f.owner, t.id, None, rename("z"), Utc::now())
        });
        assert_eq!(f.state.tasks[&t.id].title, "z");
    }

    #[test]
    fn missing_tasks_are_reported() {
        let f = fixture();
        let err = f.state.decide_delete(f.owner, TaskId::new()).unwrap_err();
        assert!(matches!(err, RoomError::TaskNotFound));
    }

    #[test]
    fn assignees_must_be_members() {
        let f = fixture();
        let mut draft = TaskDraft::titled("x");
        draft.assignee = Some(UserId::new());
        assert!(matches!(
            f.state.decide_create(f.owner, draft, Utc::now()),
            Err(RoomError::Invalid(_))
        ));
    }

    #[test]
    fn the_last_owner_can_neither_leave_nor_be_demoted() {
        let mut f = fixture();
        assert!(matches!(
            f.state.decide_remove_member(f.owner, f.owner),
            Err(RoomError::LastOwner)
        ));
        assert!(matches!(
            f.state.decide_set_role(f.owner, f.owner, Role::Admin),
            Err(RoomError::LastOwner)
        ));
        // With a second owner, the first may go.
        commit(&mut f.state, |s| {
            s.decide_set_role(f.owner, f.member, Role::Owner)
        });
        commit(&mut f.state, |s| s.decide_remove_member(f.owner, f.owner));
        assert!(!f.state.members.contains_key(&f.owner));
    }

    #[test]
    fn admins_manage_members_but_not_owners() {
        let mut f = fixture();
        commit(&mut f.state, |s| {
            s.decide_set_role(f.owner, f.member, Role::Admin)
        });
        let admin = f.member;
        assert!(matches!(
            f.state.decide_set_role(admin, f.owner, Role::Member),
            Err(RoomError::Forbidden(_))
        ));
        assert!(matches!(
            f.state.decide_remove_member(admin, f.owner),
            Err(RoomError::Forbidden(_))
        ));
        assert!(matches!(
            f.state.decide_add_member(admin, member(Role::Owner)),
            Err(RoomError::Forbidden(_))
        ));
        commit(&mut f.state, |s| {
            s.decide_add_member(admin, member(Role::Member))
        });
        commit(&mut f.state, |s| s.decide_remove_member(admin, f.viewer));
        assert_eq!(f.state.members.len(), 3);
        // Plain members cannot manage.
        let plain = f
            .state
            .members
            .values()
            .find(|m| m.role == Role::Member)
            .unwrap()
            .user_id;
        assert!(matches!(
            f.state.decide_rename(plain, "x".into()),
            Err(RoomError::Forbidden(_))
        ));
    }

    #[test]
    fn leaving_unassigns_tasks() {
        let mut f = fixture();
        let mut draft = TaskDraft::titled("x");
        draft.assignee = Some(f.member);
        let Event::TaskCreated { task, .. } = commit(&mut f.state, |s| {
            s.decide_create(f.owner, draft, Utc::now())
        }) else {
            panic!()
        };
        commit(&mut f.state, |s| s.decide_remove_member(f.member, f.member));
        assert_eq!(f.state.tasks[&task.id].assignee, None);
    }

    fn category(state: &mut WorkspaceState, by: UserId, name: &str) -> Category {
        let draft = CategoryDraft {
            id: None,
            name: name.into(),
            color: None,
            position: None,
        };
        match commit(state, |s| s.decide_create_category(by, draft, Utc::now())) {
            Event::CategoryCreated { category, .. } => category,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn category_names_are_unique_ignoring_case_and_deleting_one_unsets_its_tasks() {
        let mut f = fixture();
        let work = category(&mut f.state, f.member, "Work");
        let home = category(&mut f.state, f.member, "Home");
        assert_eq!((work.position, home.position), (0, 1));
        let again = CategoryDraft {
            id: None,
            name: "WORK".into(),
            color: None,
            position: None,
        };
        assert!(matches!(
            f.state.decide_create_category(f.owner, again, Utc::now()),
            Err(RoomError::AlreadyExists(_))
        ));
        let rename = CategoryChanges {
            name: Some("home".into()),
            ..Default::default()
        };
        assert!(matches!(
            f.state
                .decide_update_category(f.owner, work.id, rename, Utc::now()),
            Err(RoomError::AlreadyExists(_))
        ));
        assert!(matches!(
            f.state
                .decide_delete_category(f.viewer, work.id, Utc::now()),
            Err(RoomError::Forbidden(_))
        ));
        let mut draft = TaskDraft::titled("in work");
        draft.category_id = Some(work.id);
        let Event::TaskCreated { task, .. } = commit(&mut f.state, |s| {
            s.decide_create(f.owner, draft, Utc::now())
        }) else {
            panic!()
        };
        let other = created_task(&mut f.state, f.owner, "no category");
        let Event::CategoryDeleted { tasks, .. } = commit(&mut f.state, |s| {
            s.decide_delete_category(f.owner, work.id, Utc::now())
        }) else {
            panic!()
        };
        assert_eq!(tasks, [task.id]);
        let after = &f.state.tasks[&task.id];
        assert_eq!((after.category_id, after.version), (None, 2));
        assert_eq!(f.state.tasks[&other.id].version, 1);
        let mut stale = TaskDraft::titled("x");
        stale.category_id = Some(work.id);
        assert!(matches!(
            f.state.decide_create(f.owner, stale, Utc::now()),
            Err(RoomError::Invalid(_))
        ));
    }

    #[test]
    fn subtasks_are_one_level_deep_and_go_with_their_parent() {
        let mut f = fixture();
        let parent = created_task(&mut f.state, f.owner, "parent");
        let mut draft = TaskDraft::titled("child");
        draft.parent_id = Some(parent.id);
        let Event::TaskCreated { task: child, .. } = commit(&mut f.state, |s| {
            s.decide_create(f.owner, draft, Utc::now())
        }) else {
            panic!()
        };
        let mut grandchild = TaskDraft::titled("grandchild");
        grandchild.parent_id = Some(child.id);
        assert!(matches!(
            f.state.decide_create(f.owner, grandchild, Utc::now()),
            Err(RoomError::Invalid(m)) if m.contains("subtask cannot have subtasks")
        ));
        let other = created_task(&mut f.state, f.owner, "other");
        let adopt = |p| TaskChanges {
            parent_id: Some(Some(p)),
            ..Default::default()
        };
        // A task with subtasks cannot become one; a task cannot be its own parent.
        assert!(
            f.state
                .decide_update(f.owner, parent.id, None, adopt(other.id), Utc::now())
                .is_err()
        );
        assert!(
            f.state
                .decide_update(f.owner, other.id, None, adopt(other.id), Utc::now())
                .is_err()
        );
        let Event::TaskDeleted { subtasks, .. } =
            commit(&mut f.state, |s| s.decide_delete(f.owner, parent.id))
        else {
            panic!()
        };
        assert_eq!(subtasks, [child.id]);
        assert_eq!(f.state.tasks.len(), 1);
    }

    #[test]
    fn completed_at_is_set_on_completion_and_cleared_on_reopening() {
        let mut f = fixture();
        let t = created_task(&mut f.state, f.owner, "x");
        assert_eq!(t.completed_at, None);
        let done_at = Utc::now();
        let complete = TaskChanges {
            completed: Some(true),
            ..Default::default()
        };
        commit(&mut f.state, |s| {
            s.decide_update(f.owner, t.id, None, complete.clone(), done_at)
        });
        assert_eq!(f.state.tasks[&t.id].completed_at, Some(done_at));
        // Completing again keeps the first time; a title edit keeps it too.
        commit(&mut f.state, |s| {
            s.decide_update(f.owner, t.id, None, complete, Utc::now())
        });
        assert_eq!(f.state.tasks[&t.id].completed_at, Some(done_at));
        let reopen = TaskChanges {
            status: Some(signaling::task::Status::InProgress),
            ..Default::default()
        };
        commit(&mut f.state, |s| {
            s.decide_update(f.owner, t.id, None, reopen, Utc::now())
        });
        assert_eq!(f.state.tasks[&t.id].completed_at, None);
    }

    #[test]
    fn a_full_workspace_refuses_more_tasks_and_categories() {
        let mut f = fixture();
        for n in 0..MAX_CATEGORIES {
            category(&mut f.state, f.owner, &format!("c{n}"));
        }
        let draft = CategoryDraft {
            id: None,
            name: "one more".into(),
            color: None,
            position: None,
        };
        assert!(matches!(
            f.state.decide_create_category(f.owner, draft, Utc::now()),
            Err(RoomError::LimitReached(_))
        ));
        let template = created_task(&mut f.state, f.owner, "t");
        while f.state.tasks.len() < MAX_TASKS {
            let mut t = template.clone();
            t.id = TaskId::new();
            f.state.tasks.insert(t.id, t);
        }
        assert!(matches!(
            f.state
                .decide_create(f.owner, TaskDraft::titled("one more"), Utc::now()),
            Err(RoomError::LimitReached(_))
        ));
    }

    fn sync_op(op_id: &str, minutes_ago: i64, kind: OpKind) -> SyncOp {
        SyncOp {
            op_id: op_id.into(),
            workspace_id: None,
            client_ts: Utc::now() - chrono::Duration::minutes(minutes_ago),
            kind,
        }
    }

    /// Offline operations through the rules, then the journal replayed: the same state, field
    /// clocks and remembered operations included, and a retried operation is a duplicate.
    #[test]
    fn offline_operations_merge_replay_and_apply_once() {
        let mut f = fixture();
        let start = f.state.clone();
        let mut log = Vec::new();
        let t = created_task(&mut f.state, f.owner, "t");
        log.push(Event::TaskCreated {
            task: t.clone(),
            by: f.owner,
            sync: None,
        });
        let rename = TaskChanges {
            title: Some("owner's".into()),
            ..Default::default()
        };
        log.push(commit(&mut f.state, |s| {
            s.decide_update(f.owner, t.id, Some(1), rename, Utc::now())
        }));
        let stale = OpKind::TaskUpdate {
            task_id: t.id,
            base_version: 1,
            changes: TaskChanges {
                title: Some("member's".into()),
                priority: Some(signaling::task::Priority::High),
                ..Default::default()
            },
        };
        let decided = f
            .state
            .decide_sync(f.member, sync_op("m1", 60, stale.clone()), Utc::now())
            .unwrap();
        let SyncDecision::Write { event, merged } = decided else {
            panic!("{decided:?}")
        };
        assert!(merged);
        let Event::TaskUpdated { changes, sync, .. } = event.as_ref() else {
            panic!("{event:?}")
        };
        assert_eq!(changes.title, None, "the owner's newer title stays");
        assert_eq!(changes.priority, Some(signaling::task::Priority::High));
        assert_eq!(sync.as_ref().unwrap().conflicts.len(), 1);
        f.state.apply(f.state.offset + 1, &event);
        log.push(*event);
        let offset = f.state.offset;
        assert!(matches!(
            f.state
                .decide_sync(f.member, sync_op("m1", 60, stale.clone()), Utc::now()),
            Ok(SyncDecision::Duplicate(o)) if o == offset
        ));
        // Another user's op with the same id is theirs.
        assert!(matches!(
            f.state
                .decide_sync(f.owner, sync_op("m1", 0, stale), Utc::now()),
            Ok(SyncDecision::Write { .. })
        ));
        assert!(matches!(
            f.state.decide_sync(
                f.viewer,
                sync_op(
                    "v1",
                    0,
                    OpKind::TaskDelete {
                        task_id: t.id,
                        base_version: 3
                    }
                ),
                Utc::now()
            ),
            Err(RoomError::Forbidden(_))
        ));
        let mut replayed = start;
        for (i, e) in log.iter().enumerate() {
            let e: Event = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
            replayed.apply(i as u64 + 1, &e);
        }
        assert_eq!(replayed, f.state);
        assert_eq!(replayed.applied_op(f.member, "m1"), Some(offset));
    }

    /// Regression (review): one task at the largest key a client may send made every create
    /// without a position fail; it now goes after it, with the same key.
    #[test]
    fn a_board_whose_last_key_is_full_still_takes_tasks_at_the_end() {
        let mut f = fixture();
        let mut draft = TaskDraft::titled("at the very end");
        let full = format!("{}{}", "z".repeat(27), "z".repeat(101));
        draft.position = Some(Rank::parse(&full).unwrap());
        commit(&mut f.state, |s| {
            s.decide_create(f.owner, draft, Utc::now())
        });
        let t = created_task(&mut f.state, f.owner, "after it");
        assert_eq!(t.position.as_str(), full);
        assert_eq!(f.state.tasks_in_order().last().map(|x| x.id), Some(t.id));
    }

    /// Regression (review): a ledger entry settled twice at once; the second settlement is
    /// refused by the room, whatever the ledger table says yet.
    #[test]
    fn a_conflict_is_settled_once() {
        let mut f = fixture();
        let t = created_task(&mut f.state, f.owner, "t");
        let conflict = Conflict {
            id: uuid::Uuid::now_v7(),
            task_id: t.id,
            field: "title".into(),
            rule: signaling::sync::Rule::LastWriterWins,
            kept: "t".into(),
            lost: "theirs".into(),
            lost_by: f.member,
            op_id: "o".into(),
            at: Utc::now(),
        };
        commit(&mut f.state, |s| {
            s.decide_resolve(f.owner, &conflict, Choice::Lost, Utc::now())
        });
        assert_eq!(f.state.tasks[&t.id].title, "theirs");
        assert!(matches!(
            f.state
                .decide_resolve(f.owner, &conflict, Choice::Kept, Utc::now()),
            Err(RoomError::Settled)
        ));
        // Only the title's clock moved: an offline edit of another field based on the version
        // before still applies whole.
        let priority = OpKind::TaskUpdate {
            task_id: t.id,
            base_version: 1,
            changes: TaskChanges {
                priority: Some(signaling::task::Priority::Low),
                ..Default::default()
            },
        };
        let decided = f
            .state
            .decide_sync(f.member, sync_op("p", 1, priority), Utc::now())
            .unwrap();
        assert!(
            matches!(decided, SyncDecision::Write { merged: false, .. }),
            "{decided:?}"
        );
    }

    /// Regression (review): an offline delete of a parent took its subtasks without a trace.
    #[test]
    fn an_offline_parent_delete_keeps_its_subtasks_in_the_ledger() {
        let mut f = fixture();
        let parent = created_task(&mut f.state, f.owner, "parent");
        let mut draft = TaskDraft::titled("child");
        draft.parent_id = Some(parent.id);
        commit(&mut f.state, |s| {
            s.decide_create(f.owner, draft, Utc::now())
        });
        let delete = OpKind::TaskDelete {
            task_id: parent.id,
            base_version: 1,
        };
        let SyncDecision::Write { event, .. } = f
            .state
            .decide_sync(f.member, sync_op("d", 1, delete), Utc::now())
            .unwrap()
        else {
            panic!()
        };
        let Event::TaskDeleted { subtasks, sync, .. } = *event else {
            panic!()
        };
        assert_eq!(subtasks.len(), 1);
        let kept = &sync.unwrap().conflicts;
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].lost["title"], "child");
    }

    /// Regression (review): an update that changes nothing was reported `conflicted`.
    #[test]
    fn an_offline_update_to_the_same_values_is_nothing() {
        let mut f = fixture();
        let t = created_task(&mut f.state, f.owner, "same");
        let rename = TaskChanges {
            title: Some("same".into()),
            ..Default::default()
        };
        commit(&mut f.state, |s| {
            s.decide_update(f.owner, t.id, None, rename.clone(), Utc::now())
        });
        let op = OpKind::TaskUpdate {
            task_id: t.id,
            base_version: 1,
            changes: rename,
        };
        assert!(matches!(
            f.state
                .decide_sync(f.member, sync_op("s", 1, op), Utc::now()),
            Ok(SyncDecision::Nothing)
        ));
    }

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let mut f = fixture();
        let start = f.state.clone();
        let mut log = Vec::new();
        let t = created_task(&mut f.state, f.owner, "a");
        log.push(Event::TaskCreated {
            task: t.clone(),
            by: f.owner,
            sync: None,
        });
        let e = commit(&mut f.state, |s| {
            s.decide_update(
                f.member,
                t.id,
                Some(1),
                TaskChanges {
                    completed: Some(true),
                    ..Default::default()
                },
                Utc::now(),
            )
        });
        log.push(e);
        let t2 = created_task(&mut f.state, f.owner, "b");
        log.push(Event::TaskCreated {
            task: t2.clone(),
            by: f.owner,
            sync: None,
        });
        log.push(commit(&mut f.state, |s| s.decide_delete(f.owner, t2.id)));
        log.push(commit(&mut f.state, |s| {
            s.decide_rename(f.owner, " Ops ".into())
        }));

        let mut replayed = start;
        for (i, e) in log.iter().enumerate() {
            // Through JSON, as the journal stores them.
            let e: Event = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
            replayed.apply(i as u64 + 1, &e);
        }
        assert_eq!(replayed, f.state);
        assert_eq!(replayed.name, "Ops");
        assert!(replayed.tasks[&t.id].completed);
    }
}
