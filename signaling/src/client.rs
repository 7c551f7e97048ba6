//! What a client sends: one JSON text frame per command, in the envelope
//! `{"type": "<command>", "ref": "<client's id for the reply>", ...fields}`.
//!
//! [`decode`] tells apart the ways a frame can be wrong, so that each gets its own error code:
//! not JSON ([`ErrorCode::BadJson`]), no `type` or a bad `ref` ([`ErrorCode::BadEnvelope`]), a
//! `type` nobody knows ([`ErrorCode::UnknownType`]), or fields that do not fit the command
//! ([`ErrorCode::InvalidPayload`]). Each command's fields are parsed straight into its own struct
//! (no intermediate `Value`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::category::{CategoryChanges, CategoryDraft};
use crate::conference::{
    BandwidthHint, JoinSession, QualityReport, QuestionAsk, QuestionDelete, QuestionEdit,
    QuestionModerate, QuestionVote, ScreenShare, SessionRef, Signal,
};
use crate::error::ErrorCode;
use crate::ids::{CategoryId, RoomKey, TaskId, WorkspaceId};
use crate::json;
use crate::task::{TaskChanges, TaskDraft};
use crate::text;
use crate::workspace::PresenceStatus;

/// Longest `ref` string a client may send.
pub const MAX_REF_CHARS: usize = 64;
/// Longest app-defined `broadcast` event name.
pub const MAX_EVENT_NAME_CHARS: usize = 64;

/// The client's id for a command, echoed in its `ack` or `error`: a short string or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ref {
    /// A number, echoed as a number.
    Num(u64),
    /// A string of at most [`MAX_REF_CHARS`] characters.
    Str(String),
}

/// A command from a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Enter a workspace's room; with `last_offset`, receive what was missed since.
    JoinWorkspace(JoinWorkspace),
    /// Leave a workspace's room.
    LeaveWorkspace(WorkspaceRef),
    /// Set one's presence in a room.
    PresenceUpdate(PresenceUpdate),
    /// Say one is typing (droppable; not journaled).
    Typing(Typing),
    /// Create a task (boxed: the largest commands, kept off the size of every other one).
    TaskCreate(Box<TaskCreate>),
    /// Change a task, based on the version the client saw.
    TaskUpdate(Box<TaskUpdate>),
    /// Delete a task.
    TaskDelete(TaskDelete),
    /// Create a category.
    CategoryCreate(Box<CategoryCreate>),
    /// Change a category.
    CategoryUpdate(Box<CategoryUpdate>),
    /// Delete a category (its tasks keep existing, with no category).
    CategoryDelete(CategoryDelete),
    /// Push a batch of operations queued offline.
    SyncPush(SyncPush),
    /// Relay an app-defined event to every member of the room (sender included); not journaled.
    Broadcast(Broadcast),
    /// Enter a conference session's room; with `last_offset`, receive what was missed since.
    JoinSession(JoinSession),
    /// Leave a conference session.
    LeaveSession(SessionRef),
    /// Ask a question.
    QuestionAsk(QuestionAsk),
    /// Change one's own question's text.
    QuestionEdit(QuestionEdit),
    /// Vote on a question, or clear one's vote.
    QuestionVote(QuestionVote),
    /// Approve, dismiss, answer, pin or unpin a question (presenters and moderators).
    QuestionModerate(QuestionModerate),
    /// Delete a question (its author, presenters and moderators).
    QuestionDelete(QuestionDelete),
    /// Relay a WebRTC signal to one peer.
    Signal(Signal),
    /// Report one's connection quality.
    QualityReport(QualityReport),
    /// Ask a peer to cap its sending bitrate.
    BandwidthHint(BandwidthHint),
    /// The presenter started or stopped a screen share.
    ScreenShare(ScreenShare),
}

/// `join_workspace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinWorkspace {
    /// The room to join.
    pub workspace_id: WorkspaceId,
    /// The offset of the last durable event this client has; absent for a fresh state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offset: Option<u64>,
}

/// A command that names only its room (`leave_workspace`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceRef {
    /// The room.
    pub workspace_id: WorkspaceId,
}

/// `presence_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// `online`, `away` or `busy` (`offline` is the hub's to say).
    pub status: PresenceStatus,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Typing {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The task being typed into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
}

/// `task_create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreate {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The new task.
    pub task: TaskDraft,
}

/// `task_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdate {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The task.
    pub task_id: TaskId,
    /// The task version the client's change was based on.
    pub base_version: u64,
    /// What to change.
    pub changes: TaskChanges,
}

/// `task_delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDelete {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The task.
    pub task_id: TaskId,
}

/// `category_create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryCreate {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The new category.
    pub category: CategoryDraft,
}

/// `category_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryUpdate {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The category.
    pub category_id: CategoryId,
    /// What to change.
    pub changes: CategoryChanges,
}

/// `category_delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryDelete {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The category.
    pub category_id: CategoryId,
}

/// `sync_push`: up to [`crate::sync::MAX_OPS`] operations, each read (and refused) on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncPush {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The operations, as sent.
    pub ops: Vec<Box<RawValue>>,
}

impl PartialEq for SyncPush {
    fn eq(&self, other: &Self) -> bool {
        self.workspace_id == other.workspace_id
            && self.ops.len() == other.ops.len()
            && self
                .ops
                .iter()
                .zip(&other.ops)
                .all(|(a, b)| a.get() == b.get())
    }
}

/// `broadcast`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Broadcast {
    /// The room.
    pub workspace_id: WorkspaceId,
    /// The app's name for the event, 1–64 characters.
    pub event: String,
    /// Any JSON; relayed as sent.
    pub data: Box<RawValue>,
    /// True for events that lose nothing when skipped (cursors, live previews): a member that
    /// falls behind gets them only while its queue has room to spare, and is never disconnected
    /// for them. Default false: the broadcast reaches every member that keeps up, in order.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub droppable: bool,
}

impl PartialEq for Broadcast {
    fn eq(&self, other: &Self) -> bool {
        self.workspace_id == other.workspace_id
            && self.event == other.event
            && self.data.get() == other.data.get()
            && self.droppable == other.droppable
    }
}

impl ClientMsg {
    /// The room the command is for (every command names one).
    pub fn room(&self) -> RoomKey {
        let ws = RoomKey::Workspace;
        let session = RoomKey::Session;
        match self {
            ClientMsg::JoinWorkspace(m) => ws(m.workspace_id),
            ClientMsg::LeaveWorkspace(m) => ws(m.workspace_id),
            ClientMsg::PresenceUpdate(m) => ws(m.workspace_id),
            ClientMsg::Typing(m) => ws(m.workspace_id),
            ClientMsg::TaskCreate(m) => ws(m.workspace_id),
            ClientMsg::TaskUpdate(m) => ws(m.workspace_id),
            ClientMsg::TaskDelete(m) => ws(m.workspace_id),
            ClientMsg::CategoryCreate(m) => ws(m.workspace_id),
            ClientMsg::CategoryUpdate(m) => ws(m.workspace_id),
            ClientMsg::CategoryDelete(m) => ws(m.workspace_id),
            ClientMsg::SyncPush(m) => ws(m.workspace_id),
            ClientMsg::Broadcast(m) => ws(m.workspace_id),
            ClientMsg::JoinSession(m) => session(m.session_id),
            ClientMsg::LeaveSession(m) => session(m.session_id),
            ClientMsg::QuestionAsk(m) => session(m.session_id),
            ClientMsg::QuestionEdit(m) => session(m.session_id),
            ClientMsg::QuestionVote(m) => session(m.session_id),
            ClientMsg::QuestionModerate(m) => session(m.session_id),
            ClientMsg::QuestionDelete(m) => session(m.session_id),
            ClientMsg::Signal(m) => session(m.session_id),
            ClientMsg::QualityReport(m) => session(m.session_id),
            ClientMsg::BandwidthHint(m) => session(m.session_id),
            ClientMsg::ScreenShare(m) => session(m.session_id),
        }
    }

    /// Whether this command enters a room (the one command allowed before joining it).
    pub fn is_join(&self) -> bool {
        matches!(
            self,
            ClientMsg::JoinWorkspace(_) | ClientMsg::JoinSession(_)
        )
    }
}

/// A frame that could not be decoded: the code and message to answer with, and the `ref` if it
/// could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The client's `ref`, when the envelope was readable.
    pub reference: Option<Ref>,
    /// Why.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

const NOT_AN_OBJECT: &str = "a frame must be a JSON object with a string `type`";

/// The envelope alone: read first so that even a bad command gets its `ref` back.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "ref", borrow, default)]
    reference: Option<&'a RawValue>,
}

/// Decodes one text frame.
///
/// # Errors
/// A [`DecodeError`] saying which of the ways the frame is wrong.
pub fn decode(frame: &[u8]) -> Result<(Option<Ref>, ClientMsg), DecodeError> {
    let unreadable = |e: json::JsonError| DecodeError {
        reference: None,
        code: e.code,
        message: e.message,
    };
    json::check_object(frame, ErrorCode::BadEnvelope, NOT_AN_OBJECT).map_err(unreadable)?;
    let envelope: Envelope<'_> = serde_json::from_slice(frame).map_err(|e| {
        if e.is_data() {
            unreadable(json::JsonError {
                code: ErrorCode::BadEnvelope,
                message: NOT_AN_OBJECT.into(),
            })
        } else {
            unreadable(json::syntax(&e))
        }
    })?;
    let reference = match envelope.reference {
        None => None,
        Some(raw) => Some(parse_ref(raw)?),
    };
    let fail = |code, message: String| DecodeError {
        reference: reference.clone(),
        code,
        message,
    };
    let Some(kind) = envelope.kind else {
        return Err(fail(ErrorCode::BadEnvelope, "missing `type`".into()));
    };
    let msg = match kind.as_ref() {
        "join_workspace" => ClientMsg::JoinWorkspace(payload(frame, &fail)?),
        "leave_workspace" => ClientMsg::LeaveWorkspace(payload(frame, &fail)?),
        "presence_update" => {
            let m: PresenceUpdate = payload(frame, &fail)?;
            if matches!(m.status, PresenceStatus::Offline | PresenceStatus::Suspect) {
                return Err(fail(
                    ErrorCode::InvalidPayload,
                    "status: must be online, away or busy".into(),
                ));
            }
            ClientMsg::PresenceUpdate(m)
        }
        "typing" => ClientMsg::Typing(payload(frame, &fail)?),
        "task_create" => {
            let mut m: Box<TaskCreate> = payload(frame, &fail)?;
            m.task
                .normalize()
                .map_err(|e| fail(ErrorCode::InvalidPayload, format!("task.{e}")))?;
            ClientMsg::TaskCreate(m)
        }
        "task_update" => {
            let mut m: Box<TaskUpdate> = payload(frame, &fail)?;
            m.changes
                .normalize()
                .map_err(|e| fail(ErrorCode::InvalidPayload, prefixed("changes", &e)))?;
            ClientMsg::TaskUpdate(m)
        }
        "task_delete" => ClientMsg::TaskDelete(payload(frame, &fail)?),
        "category_create" => {
            let mut m: Box<CategoryCreate> = payload(frame, &fail)?;
            m.category
                .normalize()
                .map_err(|e| fail(ErrorCode::InvalidPayload, format!("category.{e}")))?;
            ClientMsg::CategoryCreate(m)
        }
        "category_update" => {
            let mut m: Box<CategoryUpdate> = payload(frame, &fail)?;
            m.changes
                .normalize()
                .map_err(|e| fail(ErrorCode::InvalidPayload, prefixed("changes", &e)))?;
            ClientMsg::CategoryUpdate(m)
        }
        "category_delete" => ClientMsg::CategoryDelete(payload(frame, &fail)?),
        "sync_push" => {
            let m: SyncPush = payload(frame, &fail)?;
            if m.ops.is_empty() || m.ops.len() > crate::sync::MAX_OPS {
                return Err(fail(
                    ErrorCode::InvalidPayload,
                    "ops: must hold 1-100 operations".into(),
                ));
            }
            ClientMsg::SyncPush(m)
        }
        "broadcast" => {
            let mut m: Broadcast = payload(frame, &fail)?;
            m.event = text::clean_line(&m.event, "event", MAX_EVENT_NAME_CHARS).map_err(|e| {
                let message = match e.problem {
                    text::problem::EMPTY | text::problem::TOO_LONG => {
                        "event: must be 1-64 characters".into()
                    }
                    _ => e.to_string(),
                };
                fail(ErrorCode::InvalidPayload, message)
            })?;
            ClientMsg::Broadcast(m)
        }
        "join_session" => ClientMsg::JoinSession(payload(frame, &fail)?),
        "leave_session" => ClientMsg::LeaveSession(payload(frame, &fail)?),
        "question_ask" => ClientMsg::QuestionAsk(payload(frame, &fail)?),
        "question_edit" => ClientMsg::QuestionEdit(payload(frame, &fail)?),
        "question_vote" => ClientMsg::QuestionVote(payload(frame, &fail)?),
        "question_moderate" => ClientMsg::QuestionModerate(payload(frame, &fail)?),
        "question_delete" => ClientMsg::QuestionDelete(payload(frame, &fail)?),
        "signal" => {
            let m: Signal = payload(frame, &fail)?;
            m.signal
                .check()
                .map_err(|e| fail(ErrorCode::InvalidPayload, format!("signal.{e}")))?;
            ClientMsg::Signal(m)
        }
        "quality_report" => {
            let m: QualityReport = payload(frame, &fail)?;
            m.check().map_err(|e| fail(ErrorCode::InvalidPayload, e))?;
            ClientMsg::QualityReport(m)
        }
        "bandwidth_hint" => {
            let m: BandwidthHint = payload(frame, &fail)?;
            if m.max_bitrate_kbps > crate::conference::MAX_BITRATE_KBPS {
                return Err(fail(
                    ErrorCode::InvalidPayload,
                    format!(
                        "max_bitrate_kbps: at most {}",
                        crate::conference::MAX_BITRATE_KBPS
                    ),
                ));
            }
            ClientMsg::BandwidthHint(m)
        }
        "screen_share" => {
            let m: ScreenShare = payload(frame, &fail)?;
            if m.stream_id
                .as_ref()
                .is_some_and(|s| s.is_empty() || s.len() > crate::conference::MAX_STREAM_ID_BYTES)
            {
                return Err(fail(
                    ErrorCode::InvalidPayload,
                    "stream_id: must be 1-64 bytes".into(),
                ));
            }
            ClientMsg::ScreenShare(m)
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(fail(
                ErrorCode::UnknownType,
                format!("unknown command type `{shown}`"),
            ));
        }
    };
    Ok((reference, msg))
}

/// The `ref` of a frame, if it has a valid one: for answering a frame that is refused before it
/// is decoded (rate-limited, too large).
pub fn peek_ref(frame: &[u8]) -> Option<Ref> {
    json::check_object(frame, ErrorCode::BadEnvelope, NOT_AN_OBJECT).ok()?;
    let envelope: Envelope<'_> = serde_json::from_slice(frame).ok()?;
    parse_ref(envelope.reference?).ok()
}

/// Whether a frame is a command of type `kind` (for charging it to its own budget before it is
/// decoded); false for anything unreadable.
pub fn peek_type_is(frame: &[u8], kind: &str) -> bool {
    if json::check_object(frame, ErrorCode::BadEnvelope, NOT_AN_OBJECT).is_err() {
        return false;
    }
    serde_json::from_slice::<Envelope<'_>>(frame)
        .ok()
        .and_then(|e| e.kind)
        .is_some_and(|k| k == kind)
}

/// `changes.title: ...`, but not `changes.changes: ...`.
fn prefixed(parent: &str, e: &crate::task::FieldError) -> String {
    if e.field == parent {
        e.to_string()
    } else {
        format!("{parent}.{e}")
    }
}

fn parse_ref(raw: &RawValue) -> Result<Ref, DecodeError> {
    let bad = || DecodeError {
        reference: None,
        code: ErrorCode::BadEnvelope,
        message: format!(
            "`ref` must be a string of at most {MAX_REF_CHARS} characters or a non-negative integer"
        ),
    };
    let r: Ref = serde_json::from_str(raw.get()).map_err(|_| bad())?;
    match &r {
        Ref::Str(s) if s.chars().count() > MAX_REF_CHARS => Err(bad()),
        _ => Ok(r),
    }
}

fn payload<T: DeserializeOwned>(
    frame: &[u8],
    fail: &impl Fn(ErrorCode, String) -> DecodeError,
) -> Result<T, DecodeError> {
    // The envelope parsed, so any error here is the command's fields: `invalid_payload`.
    json::from_slice(frame).map_err(|e| fail(ErrorCode::InvalidPayload, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(frame: &str) -> ErrorCode {
        decode(frame.as_bytes()).unwrap_err().code
    }

    #[test]
    fn each_kind_of_bad_frame_has_its_own_code() {
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadEnvelope);
        assert_eq!(code(r#"{"ref":"1"}"#), ErrorCode::BadEnvelope);
        assert_eq!(
            code(r#"{"type":"x","ref":{"a":1}}"#),
            ErrorCode::BadEnvelope
        );
        assert_eq!(code(r#"{"type":"fly","ref":"1"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"join_workspace","workspace_id":"nope"}"#),
            ErrorCode::InvalidPayload
        );
    }

    // Regressions found by the `client_frame` fuzz target (signaling/fuzz/regressions/).

    #[test]
    fn an_array_is_never_read_as_an_envelope() {
        for frame in [&br#"["typing", "r1"]"#[..], br#"["typing", "", "r1"]"#] {
            let err = decode(frame).unwrap_err();
            assert_eq!((err.code, err.reference), (ErrorCode::BadEnvelope, None));
            assert_eq!(peek_ref(frame), None);
        }
    }

    #[test]
    fn a_wrong_type_for_an_enum_field_is_not_called_invalid_json() {
        let ws = WorkspaceId::new();
        let frame =
            format!(r#"{{"type":"presence_update","ref":1,"workspace_id":"{ws}","status":1}}"#);
        let err = decode(frame.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPayload);
        assert_eq!(err.message, "status: not one of the allowed values");
    }

    #[test]
    fn a_long_unknown_field_name_is_not_echoed_whole() {
        let frame = format!(
            r#"{{"type":"task_create","task":{{"{}":1}}}}"#,
            "k".repeat(300)
        );
        let err = decode(frame.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPayload);
        assert!(err.message.chars().count() <= 201, "{}", err.message);
    }

    #[test]
    fn the_ref_comes_back_even_when_the_command_is_bad() {
        let err = decode(br#"{"type":"fly","ref":"abc"}"#).unwrap_err();
        assert_eq!(err.reference, Some(Ref::Str("abc".into())));
        let err = decode(br#"{"type":"typing","ref":7}"#).unwrap_err();
        assert_eq!(err.reference, Some(Ref::Num(7)));
    }

    #[test]
    fn refs_can_be_peeked_without_decoding_the_command() {
        assert_eq!(
            peek_ref(br#"{"type":"anything","ref":"x9","junk":[1]}"#),
            Some(Ref::Str("x9".into()))
        );
        assert_eq!(peek_ref(br#"{"type":"typing"}"#), None);
        assert_eq!(peek_ref(b"nope"), None);
    }

    #[test]
    fn commands_decode_and_encode_symmetrically() {
        let ws = WorkspaceId::new();
        let msg = ClientMsg::TaskCreate(Box::new(TaskCreate {
            workspace_id: ws,
            task: TaskDraft::titled("write the docs"),
        }));
        let text = serde_json::to_string(&msg).unwrap();
        let (r, back) = decode(text.as_bytes()).unwrap();
        assert_eq!(r, None);
        assert_eq!(back, msg);
        assert_eq!(back.room(), RoomKey::Workspace(ws));
    }

    #[test]
    fn validation_failures_are_invalid_payload() {
        let ws = WorkspaceId::new();
        let frame =
            format!(r#"{{"type":"task_create","workspace_id":"{ws}","task":{{"title":""}}}}"#);
        let err = decode(frame.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPayload);
        assert!(err.message.contains("title"), "{}", err.message);
        let frame =
            format!(r#"{{"type":"presence_update","workspace_id":"{ws}","status":"offline"}}"#);
        assert_eq!(code(&frame), ErrorCode::InvalidPayload);
    }

    #[test]
    fn broadcast_data_is_kept_verbatim() {
        let ws = WorkspaceId::new();
        let frame = format!(
            r#"{{"type":"broadcast","workspace_id":"{ws}","event":"cursor","data":{{"x": 1.5}}}}"#
        );
        let (_, msg) = decode(frame.as_bytes()).unwrap();
        let ClientMsg::Broadcast(b) = msg else {
            panic!("not a broadcast")
        };
        assert_eq!(b.data.get(), r#"{"x": 1.5}"#);
        assert!(!b.droppable, "must-deliver unless marked");
        let frame = format!(
            r#"{{"type":"broadcast","workspace_id":"{ws}","event":"cursor","data":1,"droppable":true}}"#
        );
        let (_, msg) = decode(frame.as_bytes()).unwrap();
        assert!(matches!(msg, ClientMsg::Broadcast(b) if b.droppable));
        let frame = format!(
            r#"{{"type":"broadcast","workspace_id":"{ws}","event":"cursor","data":1,"droppable":"yes"}}"#
        );
        assert_eq!(code(&frame), ErrorCode::InvalidPayload);
    }
}

#[cfg(test)]
mod session_commands {
    use super::*;
    use crate::ids::{AttendeeId, SessionId};

    fn code(frame: &str) -> ErrorCode {
        decode(frame.as_bytes()).unwrap_err().code
    }

    #[test]
    fn session_commands_name_their_session_room() {
        let s = SessionId::new();
        let to = AttendeeId::new();
        let frame = format!(
            r#"{{"type":"signal","session_id":"{s}","to":"{to}","signal":{{"kind":"candidate","candidate":""}}}}"#
        );
        let (_, msg) = decode(frame.as_bytes()).unwrap();
        assert_eq!(msg.room(), RoomKey::Session(s));
        assert!(!msg.is_join());
        let join = format!(r#"{{"type":"join_session","session_id":"{s}","last_offset":3}}"#);
        let (_, msg) = decode(join.as_bytes()).unwrap();
        assert!(msg.is_join());
    }

    #[test]
    fn out_of_range_reports_and_signals_are_invalid_payload() {
        let s = SessionId::new();
        let to = AttendeeId::new();
        let loss = format!(
            r#"{{"type":"quality_report","session_id":"{s}","rtt_ms":20,"packet_loss":1.5,"bitrate_kbps":900}}"#
        );
        assert_eq!(code(&loss), ErrorCode::InvalidPayload);
        let streams: Vec<String> = (0..9)
            .map(|i| format!(r#"{{"id":"s{i}","kind":"camera"}}"#))
            .collect();
        let offer = format!(
            r#"{{"type":"signal","session_id":"{s}","to":"{to}","signal":{{"kind":"offer","sdp":"v=0","streams":[{}]}}}}"#,
            streams.join(",")
        );
        assert_eq!(code(&offer), ErrorCode::InvalidPayload);
        let vote = format!(
            r#"{{"type":"question_vote","session_id":"{s}","question_id":"{to}","vote":"sideways"}}"#
        );
        assert_eq!(code(&vote), ErrorCode::InvalidPayload);
    }
}
