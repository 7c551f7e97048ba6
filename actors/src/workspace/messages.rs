//! What a workspace room is sent, and what it answers.

use ractor::RpcReplyPort;
use signaling::category::{Category, CategoryChanges, CategoryDraft};
use signaling::client::ClientMsg;
use signaling::sync::{Choice, Conflict, OpResult, SyncOp};
use signaling::task::{Task, TaskChanges, TaskDraft};
use signaling::workspace::{Member, Role};
use signaling::{CategoryId, ErrorCode, TaskId, UserId};

pub use crate::room::ReplyTo;
use crate::room::RouterError;

/// A message to a workspace room.
pub enum WorkspaceMsg {
    /// A WebSocket command; the answer goes to the connection's outbox.
    Client {
        /// Who sent it and where to answer.
        reply: ReplyTo,
        /// The command.
        cmd: ClientMsg,
    },
    /// A join handed out to a catch-up task comes back: the client now has every event up to
    /// `after` (`None`: the journal did not reach back, send a snapshot).
    Resume {
        /// The join's answer.
        reply: ReplyTo,
        /// The join's place (no second join of the room on this connection meanwhile).
        pending: crate::room::PendingJoin,
        /// Where the client stands.
        after: Option<u64>,
        /// Events replayed to it so far for this join.
        replayed: u64,
    },
    /// A command from the REST API (or any in-process caller).
    Call {
        /// The authenticated caller.
        user: UserId,
        /// What to do.
        op: Op,
        /// Where the result goes.
        reply: RpcReplyPort<Result<Reply, RoomError>>,
    },
}

/// A room operation shared by the REST API and the WebSocket gateway.
#[derive(Debug)]
pub enum Op {
    /// The workspace as the caller may see it: name, members, caller's role.
    Describe,
    /// All tasks, in board order.
    ListTasks,
    /// The whole state as a `snapshot` frame.
    Snapshot,
    /// One task.
    GetTask(TaskId),
    /// Create a task.
    CreateTask(TaskDraft),
    /// Change a task; `base_version: None` means last-writer-wins.
    UpdateTask {
        /// Which.
        task_id: TaskId,
        /// The version the change is based on.
        base_version: Option<u64>,
        /// What to change.
        changes: TaskChanges,
    },
    /// Delete a task (and its subtasks).
    DeleteTask(TaskId),
    /// All categories, in list order.
    ListCategories,
    /// Create a category.
    CreateCategory(CategoryDraft),
    /// Change a category.
    UpdateCategory {
        /// Which.
        category_id: CategoryId,
        /// What to change.
        changes: CategoryChanges,
    },
    /// Delete a category (its tasks keep existing, with none).
    DeleteCategory(CategoryId),
    /// Apply a batch of offline operations (the malformed ones already refused).
    SyncPush(Vec<Result<SyncOp, OpResult>>),
    /// Settle a conflict ledger entry.
    ResolveConflict {
        /// The entry, as stored.
        conflict: Box<Conflict>,
        /// The choice.
        choice: Choice,
    },
    /// Add a member (resolved by the caller from an email).
    AddMember(Member),
    /// Change a member's role.
    SetRole {
        /// Whose.
        user: UserId,
        /// To what.
        role: Role,
    },
    /// Remove a member (the caller themselves: leave).
    RemoveMember(UserId),
    /// Rename the workspace.
    Rename(String),
    /// Delete the workspace: its members are told and the room closes.
    Delete,
}

/// A room operation's result.
#[derive(Debug)]
pub enum Reply {
    /// For `Describe`.
    Workspace {
        /// Name.
        name: String,
        /// The caller's role.
        role: Role,
        /// Members in order.
        members: Vec<Member>,
        /// Current offset.
        offset: u64,
    },
    /// For `ListTasks`.
    Tasks(Vec<Task>),
    /// For `Snapshot`: the frame's JSON.
    Snapshot(String),
    /// A task as it is after the operation, with the offset of the event if one was written.
    Task(Task, Option<u64>),
    /// For `ListCategories`.
    Categories(Vec<Category>),
    /// A category as it is after the operation, with the offset of the event if one was written.
    Category(Category, Option<u64>),
    /// Done; the event's offset.
    Done(u64),
    /// For `SyncPush`: one result per operation, in order, and the room's offset after them.
    Synced {
        /// The results.
        results: Vec<OpResult>,
        /// The offset.
        offset: u64,
    },
}

/// Why a room refused a command.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RoomError {
    /// The caller is not a member (or the workspace does not exist).
    #[error("not a member of this workspace")]
    NotAMember,
    /// The connection has not joined the room.
    #[error("join the workspace first")]
    NotJoined,
    /// A join of this room is still catching up on this connection.
    #[error("this connection is already joining the workspace; wait for that join's answer")]
    JoinInProgress,
    /// The caller's role forbids it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such task.
    #[error("task not found")]
    TaskNotFound,
    /// No such member.
    #[error("user is not a member of this workspace")]
    UserNotFound,
    /// The id or membership exists already.
    #[error("{0}")]
    AlreadyExists(&'static str),
    /// The workspace must keep an owner.
    #[error("a workspace must keep at least one owner")]
    LastOwner,
    /// A field is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The write was based on a stale version.
    #[error("task changed since version {base_version}")]
    Conflict {
        /// The task now.
        current: Box<Task>,
        /// The version the write was based on.
        base_version: u64,
        /// The fields the write wanted to change.
        fields: Vec<&'static str>,
    },
    /// No such category.
    #[error("category not found")]
    CategoryNotFound,
    /// The conflict ledger entry is settled already.
    #[error("this conflict is settled already")]
    Settled,
    /// The workspace is full of these.
    #[error("{0}")]
    LimitReached(&'static str),
    /// Storage failed or the room stopped before answering. A refused append changed nothing;
    /// a call that timed out, or a room that crashed after journaling, may have applied the
    /// write: re-read (or resume by offset) before retrying a create.
    #[error("the room is unavailable; retry")]
    Unavailable,
}

impl RoomError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            RoomError::NotAMember => ErrorCode::NotAMember,
            RoomError::NotJoined => ErrorCode::NotJoined,
            RoomError::JoinInProgress => ErrorCode::JoinInProgress,
            RoomError::Forbidden(_) => ErrorCode::Forbidden,
            RoomError::TaskNotFound => ErrorCode::TaskNotFound,
            RoomError::UserNotFound => ErrorCode::UserNotFound,
            RoomError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            RoomError::LastOwner => ErrorCode::LastOwner,
            RoomError::Invalid(_) => ErrorCode::InvalidPayload,
            RoomError::Conflict { .. } => ErrorCode::VersionConflict,
            RoomError::CategoryNotFound => ErrorCode::CategoryNotFound,
            RoomError::Settled => ErrorCode::InvalidTransition,
            RoomError::LimitReached(_) => ErrorCode::LimitReached,
            RoomError::Unavailable => ErrorCode::Unavailable,
        }
    }
}

impl crate::room::Refusal for RoomError {
    fn code(&self) -> ErrorCode {
        RoomError::code(self)
    }
}

impl From<RouterError> for RoomError {
    fn from(e: RouterError) -> Self {
        match e {
            RouterError::NotFound => RoomError::NotAMember,
            RouterError::Unavailable(_) => RoomError::Unavailable,
        }
    }
}
