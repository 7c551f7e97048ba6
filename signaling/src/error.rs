//! Stable error codes. A client matches on the code, never on the message; codes are only ever
//! added, never renamed. The same codes are used by the WebSocket `error` frame and by REST error
//! bodies (`{"error": {"code": ..., "message": ...}}`).

use serde::{Deserialize, Serialize};

/// Every error a client can be sent. `docs/protocol.md` lists them with their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    BadJson,
    /// The frame is JSON but not an object with a string `type`, or its `ref` is not a short
    /// string or a non-negative integer.
    BadEnvelope,
    /// `type` names no command this hub knows.
    UnknownType,
    /// The command's fields are missing, of the wrong type or out of range.
    InvalidPayload,
    /// The frame is larger than the hub accepts.
    FrameTooLarge,
    /// A binary frame was sent; the protocol is JSON text frames.
    BinaryNotSupported,
    /// Too many messages or requests; slow down (see `retry_after_ms` or `Retry-After`).
    RateLimited,
    /// A command names a room this connection has not joined.
    NotJoined,
    /// The user is not a member of the workspace (or it does not exist: the two are not told
    /// apart, so that ids cannot be probed).
    NotAMember,
    /// The user's role does not allow this (a viewer writing, a member managing members...).
    Forbidden,
    /// The task does not exist in this workspace.
    TaskNotFound,
    /// The user named does not exist or is not a member.
    UserNotFound,
    /// A write was based on a version that is no longer current; see `conflict_detected`.
    VersionConflict,
    /// Something with this id or key already exists.
    AlreadyExists,
    /// The workspace must keep at least one owner.
    LastOwner,
    /// Missing, expired or invalid credentials.
    Unauthorized,
    /// A refresh token was presented after it had been rotated; its whole family is revoked.
    RefreshTokenReused,
    /// The resource does not exist.
    NotFound,
    /// The room could not be reached or its storage failed; retry later.
    Unavailable,
    /// A bug on the hub's side; the message carries no details.
    Internal,
    /// The JSON nests arrays and objects deeper than the hub accepts.
    NestingTooDeep,
    /// The user or the client's address holds as many open connections as allowed.
    TooManyConnections,
    /// The user has created as many workspaces (or sessions) this hour as allowed.
    QuotaExceeded,
    /// The account was disabled by an operator; its tokens no longer work.
    AccountDisabled,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request body is larger than the hub accepts.
    PayloadTooLarge,
    /// The request took longer than the hub waits (a body that never finished arriving).
    RequestTimeout,
    /// A join of this room is still catching up on this connection.
    JoinInProgress,
    /// The session's lifecycle does not allow this step (start a live session, end a scheduled one).
    InvalidTransition,
    /// The conference session has ended: no joins, questions or votes.
    SessionEnded,
    /// The conference session holds as many attendees as its capacity.
    SessionFull,
    /// Questions are closed in this session.
    QaClosed,
    /// This session does not take anonymous questions.
    AnonymousNotAllowed,
    /// Too many questions from this attendee within the session's window.
    QuestionRateLimited,
    /// This attendee asked the same question already.
    DuplicateQuestion,
    /// The text holds a word on the session's blocklist.
    BlockedContent,
    /// The text holds more links than the session allows.
    TooManyLinks,
    /// No such question (or not visible to the caller).
    QuestionNotFound,
    /// A question can only be edited before it has votes.
    QuestionHasVotes,
    /// The question takes no votes in its state (answered).
    QuestionNotVotable,
    /// The SDP of a signal is malformed or too large; nothing was relayed.
    InvalidSdp,
    /// The ICE candidate of a signal is malformed or too large; nothing was relayed.
    InvalidCandidate,
    /// The target peer is not in this session (or left for good).
    PeerNotFound,
    /// Too many signals are held for a peer that is away.
    SignalBacklogFull,
    /// The category does not exist in this workspace.
    CategoryNotFound,
    /// The workspace holds as many of these (tasks, categories) as allowed.
    LimitReached,
    /// An invitation or password reset link is unknown, used, revoked or expired.
    InvalidToken,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadEnvelope => "bad_envelope",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TaskNotFound => "task_not_found",
            ErrorCode::UserNotFound => "user_not_found",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::LastOwner => "last_owner",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RefreshTokenReused => "refresh_token_reused",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::NestingTooDeep => "nesting_too_deep",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::JoinInProgress => "join_in_progress",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::SessionFull => "session_full",
            ErrorCode::QaClosed => "qa_closed",
            ErrorCode::AnonymousNotAllowed => "anonymous_not_allowed",
            ErrorCode::QuestionRateLimited => "question_rate_limited",
            ErrorCode::DuplicateQuestion => "duplicate_question",
            ErrorCode::BlockedContent => "blocked_content",
            ErrorCode::TooManyLinks => "too_many_links",
            ErrorCode::QuestionNotFound => "question_not_found",
            ErrorCode::QuestionHasVotes => "question_has_votes",
            ErrorCode::QuestionNotVotable => "question_not_votable",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::InvalidCandidate => "invalid_candidate",
            ErrorCode::PeerNotFound => "peer_not_found",
            ErrorCode::SignalBacklogFull => "signal_backlog_full",
            ErrorCode::CategoryNotFound => "category_not_found",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::InvalidToken => "invalid_token",
        }
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [
            ErrorCode::BadJson,
            ErrorCode::UnknownType,
            ErrorCode::RefreshTokenReused,
            ErrorCode::LastOwner,
            ErrorCode::NestingTooDeep,
            ErrorCode::TooManyConnections,
            ErrorCode::QuotaExceeded,
            ErrorCode::AccountDisabled,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::RequestTimeout,
            ErrorCode::JoinInProgress,
            ErrorCode::InvalidTransition,
            ErrorCode::SessionEnded,
            ErrorCode::SessionFull,
            ErrorCode::QaClosed,
            ErrorCode::AnonymousNotAllowed,
            ErrorCode::QuestionRateLimited,
            ErrorCode::DuplicateQuestion,
            ErrorCode::BlockedContent,
            ErrorCode::TooManyLinks,
            ErrorCode::QuestionNotFound,
            ErrorCode::QuestionHasVotes,
            ErrorCode::QuestionNotVotable,
            ErrorCode::InvalidSdp,
            ErrorCode::InvalidCandidate,
            ErrorCode::PeerNotFound,
            ErrorCode::SignalBacklogFull,
            ErrorCode::CategoryNotFound,
            ErrorCode::LimitReached,
            ErrorCode::InvalidToken,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
