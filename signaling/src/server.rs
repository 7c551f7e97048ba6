//! What the hub sends: replies (`ack`, `error`), live events, and the durable [`Event`]s that
//! rooms journal. Every durable event on the wire carries `workspace_id` and `offset`, the
//! position a client resumes from after a reconnect.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::category::{Category, CategoryChanges};
use crate::client::Ref;
use crate::error::ErrorCode;
use crate::ids::{CategoryId, TaskId, UserId, WorkspaceId};
use crate::sync::{Choice, Conflict};
use crate::task::{Task, TaskChanges};
use crate::workspace::{Member, PresenceStatus, Role};

/// A durable event: it changes a room's state, is journaled before anyone hears of it, and gets
/// the room's next offset. The journal stores exactly this JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A task was created.
    TaskCreated {
        /// The new task.
        task: Task,
        /// Who created it.
        by: UserId,
        /// When it came from an offline client's queue: that operation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sync: Option<SyncMeta>,
    },
    /// A task changed.
    TaskUpdated {
        /// Which task.
        task_id: TaskId,
        /// The fields that changed, as sent.
        changes: TaskChanges,
        /// The task after the change.
        task: Task,
        /// Who changed it.
        by: UserId,
        /// When it came from an offline client's queue: that operation, and what lost in the
        /// merge (`changes` then holds what was applied).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sync: Option<SyncMeta>,
    },
    /// A task was deleted, and its subtasks with it.
    TaskDeleted {
        /// Which task.
        task_id: TaskId,
        /// Its subtasks, deleted with it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        subtasks: Vec<TaskId>,
        /// Who deleted it.
        by: UserId,
        /// When it came from an offline client's queue: that operation (and the edits the
        /// deletion won over).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sync: Option<SyncMeta>,
    },
    /// An offline operation lost whole (an edit of a task deleted meanwhile): nothing changed
    /// but the conflict ledger.
    SyncConflicted {
        /// The task.
        task_id: TaskId,
        /// Who pushed the operation.
        by: UserId,
        /// The operation and its ledger entries.
        sync: SyncMeta,
    },
    /// A conflict ledger entry was settled; with `choice: lost`, the losing value was put back
    /// and `task` is the task after that.
    ConflictResolved {
        /// The entry.
        conflict_id: uuid::Uuid,
        /// The entry's field (`task` for a whole task).
        #[serde(default)]
        field: String,
        /// What was chosen.
        choice: Choice,
        /// The task after the choice was applied (absent for `kept`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<Task>,
        /// Who settled it.
        by: UserId,
    },
    /// A category was created.
    CategoryCreated {
        /// The new category.
        category: Category,
        /// Who created it.
        by: UserId,
    },
    /// A category changed.
    CategoryUpdated {
        /// Which.
        category_id: CategoryId,
        /// The fields that changed, as sent.
        changes: CategoryChanges,
        /// The category after the change.
        category: Category,
        /// Who changed it.
        by: UserId,
    },
    /// A category was deleted; every task in it now has none (each such task's version grows
    /// by one and its `updated_at` becomes `at`).
    CategoryDeleted {
        /// Which.
        category_id: CategoryId,
        /// The tasks that were in it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tasks: Vec<TaskId>,
        /// Who deleted it.
        by: UserId,
        /// When.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// Someone became a member.
    MemberJoined {
        /// The new member.
        member: Member,
        /// Who added them.
        by: UserId,
    },
    /// A member's role changed.
    MemberUpdated {
        /// Whose.
        user_id: UserId,
        /// The new role.
        role: Role,
        /// Who changed it.
        by: UserId,
    },
    /// A member left or was removed.
    MemberLeft {
        /// Who.
        user_id: UserId,
        /// Who removed them (themselves, when they left).
        by: UserId,
    },
    /// The workspace was renamed.
    WorkspaceRenamed {
        /// The new name.
        name: String,
        /// Who renamed it.
        by: UserId,
    },
}

/// What a durable event carries when it came from an offline client's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncMeta {
    /// The client's id for the operation.
    pub op_id: String,
    /// When the user made it (by the client's clock, never after the hub's).
    pub client_ts: chrono::DateTime<chrono::Utc>,
    /// The ledger entries of its merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
}

/// Builds the wire frame of a durable event from its journal JSON without re-serializing it:
/// `{"workspace_id": ..., "offset": ..., "type": ..., ...}`. The event is serialized once, for the
/// journal, and that text is reused for every member and every replay.
pub fn durable_frame(workspace_id: WorkspaceId, offset: u64, event_json: &str) -> String {
    // `event_json` is a serialized `Event`: a JSON object with at least its `type`.
    let fields = event_json.strip_prefix('{').unwrap_or(event_json);
    let mut frame = String::with_capacity(event_json.len() + 72);
    frame.push_str("{\"workspace_id\":\"");
    frame.push_str(&workspace_id.to_string());
    frame.push_str("\",\"offset\":");
    frame.push_str(&offset.to_string());
    frame.push(',');
    frame.push_str(fields);
    frame
}

/// One member's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Who.
    pub user_id: UserId,
    /// Their status.
    pub status: PresenceStatus,
}

/// The full state of a workspace room, sent when a client has nothing or has fallen behind the
/// journal.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceView<'a> {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The offset this state is at.
    pub offset: u64,
    /// Its name.
    pub name: &'a str,
    /// Its members.
    pub members: Vec<&'a Member>,
    /// Its categories, by position.
    pub categories: Vec<&'a Category>,
    /// Its tasks, by position.
    pub tasks: Vec<&'a Task>,
}

/// What an `ack` carries, by command.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum AckResult<'a> {
    /// `join_workspace`: where the client now stands.
    Joined {
        /// The room.
        workspace_id: WorkspaceId,
        /// The room's current offset: the client has every event up to it.
        offset: u64,
        /// `replay` (missed events were sent before this ack) or `snapshot` (a `snapshot` frame was).
        mode: JoinMode,
        /// How many events were replayed.
        replayed: u64,
        /// The caller's role.
        role: Role,
        /// Who is connected now.
        presence: Vec<Presence>,
    },
    /// A task write: the task as it now is and the event's offset.
    Task {
        /// The task after the write.
        task: &'a Task,
        /// The offset of the event the write produced.
        offset: u64,
    },
    /// A category write: the category as it now is and the event's offset.
    Category {
        /// The category after the write.
        category: &'a Category,
        /// The offset of the event the write produced.
        offset: u64,
    },
    /// `sync_push`: one result per operation, and the room's offset after them.
    Synced {
        /// In the order of the batch.
        results: &'a [crate::sync::OpResult],
        /// The room's offset.
        offset: u64,
    },
    /// `auth`: the connection now lasts until the new token expires.
    Auth {
        /// The new token's expiry.
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    /// A delete: the event's offset.
    Offset {
        /// The offset of the event the write produced.
        offset: u64,
    },
}

/// How a join brought the client up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// The events after `last_offset` were sent.
    Replay,
    /// A full `snapshot` frame was sent.
    Snapshot,
}

/// Per-connection limits, told to the client in `hello`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Limits {
    /// Largest text frame the hub answers (larger ones get `frame_too_large`).
    pub max_frame_bytes: usize,
    /// Sustained messages per second.
    pub messages_per_second: u32,
    /// Burst allowance.
    pub burst: u32,
    /// `signal` commands per second on top of `messages_per_second` (a presenter's signaling).
    #[serde(default)]
    pub signals_per_second: u32,
    /// Their burst allowance.
    #[serde(default)]
    pub signal_burst: u32,
}

/// A frame from the hub that is not a durable event.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    /// First frame on every connection.
    Hello {
        /// Who the token says the client is.
        user_id: UserId,
        /// This connection's id (for logs and support).
        connection_id: u64,
        /// The connection's limits.
        limits: Limits,
    },
    /// A command succeeded.
    Ack {
        /// The command's `ref`.
        #[serde(rename = "ref")]
        reference: Option<&'a Ref>,
        /// What the command produced, if anything.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<AckResult<'a>>,
    },
    /// A command failed; the connection stays open.
    Error {
        /// The command's `ref`, when it could be read.
        #[serde(rename = "ref")]
        reference: Option<&'a Ref>,
        /// Stable code.
        code: ErrorCode,
        /// For humans.
        message: &'a str,
        /// With `rate_limited`: when a retry will be accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// A member's presence changed.
    UserPresence {
        /// The room.
        workspace_id: WorkspaceId,
        /// Who.
        user_id: UserId,
        /// New status.
        status: PresenceStatus,
    },
    /// A member is typing.
    Typing {
        /// The room.
        workspace_id: WorkspaceId,
        /// Who.
        user_id: UserId,
        /// Where.
        #[serde(skip_serializing_if = "Option::is_none")]
        task_id: Option<TaskId>,
    },
    /// An app-defined event relayed to the room.
    Broadcast {
        /// The room.
        workspace_id: WorkspaceId,
        /// The sender.
        from: UserId,
        /// The app's name for it.
        event: &'a str,
        /// As sent.
        data: &'a RawValue,
    },
    /// A write was refused because the task changed since `base_version`.
    ConflictDetected {
        /// The room.
        workspace_id: WorkspaceId,
        /// The task.
        task_id: TaskId,
        /// The version the write was based on.
        base_version: u64,
        /// The task as it is now.
        current: &'a Task,
        /// The fields the refused write wanted to change.
        fields: Vec<&'static str>,
    },
    /// The full state of a room.
    Snapshot(WorkspaceView<'a>),
    /// The room restarted; send `join_workspace` with your `last_offset` to catch up.
    Resync {
        /// The room.
        workspace_id: WorkspaceId,
        /// The room's offset after restarting; absent when the node that ran the room was lost
        /// (its offset is unknown until the room starts again).
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// The connection's access token expires soon: send `auth` with a fresh one, or the
    /// connection closes with 4002 at `expires_at`.
    TokenExpiring {
        /// When.
        expires_at: chrono::DateTime<chrono::Utc>,
        /// In how long, in milliseconds.
        in_ms: u64,
    },
    /// The workspace was deleted; the room is closed.
    WorkspaceDeleted {
        /// The room.
        workspace_id: WorkspaceId,
    },
}

impl ServerMsg<'_> {
    /// Serializes the frame. Serializing these types cannot fail (no maps with non-string keys).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(
                r#"{"type":"error","ref":null,"code":"internal","message":"encoding failed"}"#,
            )
        })
    }
}

/// The names of the fields a change touches, for `conflict_detected`.
pub fn changed_fields(changes: &TaskChanges) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut add = |present: bool, name| {
        if present {
            fields.push(name);
        }
    };
    add(changes.title.is_some(), "title");
    add(changes.description.is_some(), "description");
    add(changes.completed.is_some(), "completed");
    add(changes.priority.is_some(), "priority");
    add(changes.status.is_some(), "status");
    add(changes.position.is_some(), "position");
    add(changes.assignee.is_some(), "assignee");
    add(changes.due_date.is_some(), "due_date");
    add(changes.category_id.is_some(), "category_id");
    add(changes.tags.is_some(), "tags");
    add(changes.parent_id.is_some(), "parent_id");
    add(changes.recurrence.is_some(), "recurrence");
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_frames_carry_room_offset_and_type() {
        let ws = WorkspaceId::new();
        let ev = Event::TaskDeleted {
            task_id: TaskId::new(),
            subtasks: Vec::new(),
            by: UserId::new(),
            sync: None,
        };
        let json = serde_json::to_string(&ev).unwrap();
        let v: serde_json::Value = serde_json::from_str(&durable_frame(ws, 7, &json)).unwrap();
        assert_eq!(v["type"], "task_deleted");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["workspace_id"], ws.to_string());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn events_round_trip_through_the_journal_format() {
        let ev = Event::WorkspaceRenamed {
            name: "Ops".into(),
            by: UserId::new(),
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), ev);
    }

    #[test]
    fn errors_echo_the_ref() {
        let r = Ref::Str("a1".into());
        let text = ServerMsg::Error {
            reference: Some(&r),
            code: ErrorCode::NotJoined,
            message: "join first",
            retry_after_ms: None,
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ref"], "a1");
        assert_eq!(v["code"], "not_joined");
    }
}
