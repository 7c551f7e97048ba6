//! What a session room is sent, and what it answers.

use ractor::RpcReplyPort;
use signaling::client::ClientMsg;
use signaling::session::{Moderation, Staff, Vote};
use signaling::{AttendeeId, ErrorCode, UserId};

use super::qa::{Ask, QuestionId};
use super::state::{SessionError, SessionPatch};
use crate::room::{Refusal, ReplyTo, RouterError};

/// A message to a session room.
pub enum SessionMsg {
    /// A WebSocket command; the answer goes to the connection's outbox.
    Client {
        /// Who sent it and where to answer.
        reply: ReplyTo,
        /// The command.
        cmd: ClientMsg,
    },
    /// A command from the REST API.
    Call {
        /// Who asks.
        caller: Caller,
        /// What to do.
        op: SessionOp,
        /// Where the result goes.
        reply: RpcReplyPort<Result<SessionReply, SessionError>>,
    },
    /// Internal: fan out the vote totals waiting (sent by the room to itself).
    FlushVotes,
}

/// A REST caller, by ids that can cross a process boundary.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Their attendee id in the session.
    pub attendee: AttendeeId,
    /// Their account (none for a guest).
    pub user: Option<UserId>,
    /// Their display name (for a question they ask).
    pub name: Option<String>,
}

/// A session operation from the REST API.
#[derive(Debug)]
pub enum SessionOp {
    /// The session as the caller may see it.
    Describe,
    /// Change info or settings (presenters).
    Update(SessionPatch),
    /// `scheduled -> live` (presenters).
    Start,
    /// `live -> ended` (presenters).
    End,
    /// Add someone to the staff, or change their role (presenters).
    SetStaff {
        /// The account.
        user: UserId,
        /// Their role.
        role: Staff,
    },
    /// Remove someone from the staff (presenters).
    RemoveStaff(UserId),
    /// May the caller join now (not ended, not full)?
    Admit,
    /// The caller leaves the session: its connections leave the room at once.
    Leave,
    /// The questions the caller may see, in priority order.
    Questions,
    /// Ask a question.
    Ask(Ask),
    /// Edit one's question.
    Edit {
        /// Which.
        id: QuestionId,
        /// The new text.
        text: String,
    },
    /// Vote.
    Vote {
        /// Which.
        id: QuestionId,
        /// The vote (`None` clears).
        vote: Option<Vote>,
    },
    /// Moderate.
    Moderate {
        /// Which.
        id: QuestionId,
        /// What to do.
        action: Moderation,
    },
    /// Delete a question.
    DeleteQuestion(QuestionId),
    /// Delete the session (its creator or a presenter).
    Delete,
}

/// A session operation's result, ready for a REST body.
#[derive(Debug)]
pub enum SessionReply {
    /// A JSON body.
    Json(serde_json::Value),
    /// Done, at this offset (`None`: nothing changed).
    Done(Option<u64>),
}

impl Refusal for SessionError {
    fn code(&self) -> ErrorCode {
        SessionError::code(self)
    }
}

impl From<RouterError> for SessionError {
    fn from(e: RouterError) -> Self {
        match e {
            RouterError::NotFound => SessionError::NotFound,
            RouterError::Unavailable(_) => SessionError::Unavailable,
        }
    }
}
