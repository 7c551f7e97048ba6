//! What a session room sends: its frames and acks, and the views of a session and a question
//! that members see. `docs/protocol.md` documents each.
//!
//! Every durable frame carries `session_id` and `offset`. What a member sees depends on its role:
//! presenters and moderators see every question; attendees see open and answered ones only (a
//! pending question reaches them when approved). So a member's offsets may skip numbers: an
//! offset is a position to resume from, not a count.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use signaling::conference::SignalBody;
use signaling::server::JoinMode;
use signaling::session::{SessionStatus, Staff, Vote};
use signaling::{AttendeeId, SessionId, UserId};
use uuid::Uuid;

use super::qa::{Question, QuestionStatus, SessionRole};
use super::state::{SessionSettings, SessionState};

/// A question as members see it: the author only when not anonymous.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuestionView<'a> {
    /// Its id.
    pub id: Uuid,
    /// The text.
    pub text: &'a str,
    /// Where it stands.
    pub status: QuestionStatus,
    /// Pinned to the top.
    pub pinned: bool,
    /// Up votes.
    pub up: u32,
    /// Down votes.
    pub down: u32,
    /// `up - down`.
    pub score: i64,
    /// When it was asked.
    pub asked_at: DateTime<Utc>,
    /// Asked without a name.
    pub anonymous: bool,
    /// The author's peer id (absent when anonymous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_id: Option<AttendeeId>,
    /// The author's display name (absent when anonymous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_name: Option<&'a str>,
}

impl<'a> QuestionView<'a> {
    /// The view of `q`.
    pub fn of(q: &'a Question) -> Self {
        Self {
            id: q.id,
            text: &q.text,
            status: q.status,
            pinned: q.pinned,
            up: q.up,
            down: q.down,
            score: q.score(),
            asked_at: q.asked_at,
            anonymous: q.anonymous,
            author_id: (!q.anonymous).then_some(q.author),
            author_name: if q.anonymous {
                None
            } else {
                q.author_name.as_deref()
            },
        }
    }
}

/// Whether attendees (not staff) see a question in this state.
pub fn public(status: QuestionStatus) -> bool {
    matches!(status, QuestionStatus::Open | QuestionStatus::Answered)
}

/// A staff member as members see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StaffView {
    /// The account.
    pub user_id: UserId,
    /// Their role.
    pub role: Staff,
}

/// A session as members see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView<'a> {
    /// The session.
    pub id: SessionId,
    /// Its title.
    pub title: &'a str,
    /// Its description.
    pub description: &'a str,
    /// When it is planned.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Most attendees present at once.
    pub capacity: u32,
    /// Where it stands.
    pub status: SessionStatus,
    /// When it went live.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its switches.
    pub settings: SessionSettings,
    /// Who created it.
    pub created_by: UserId,
    /// Presenters and moderators.
    pub staff: Vec<StaffView>,
    /// The offset of its last event.
    pub offset: u64,
}

impl<'a> SessionView<'a> {
    /// The view of `s`.
    pub fn of(s: &'a SessionState) -> Self {
        let mut staff: Vec<StaffView> = s
            .staff
            .iter()
            .map(|(u, r)| StaffView {
                user_id: *u,
                role: *r,
            })
            .collect();
        staff.sort_by_key(|v| v.user_id.as_uuid());
        Self {
            id: s.id,
            title: &s.info.title,
            description: &s.info.description,
            scheduled_at: s.info.scheduled_at,
            capacity: s.info.capacity,
            status: s.status,
            started_at: s.started_at,
            ended_at: s.ended_at,
            settings: s.settings,
            created_by: s.creator,
            staff,
            offset: s.offset,
        }
    }
}

/// What changed in a `question` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Asked.
    Asked,
    /// Its text changed.
    Edited,
    /// Its totals changed.
    Voted,
    /// A moderator approved it.
    Approved,
    /// A moderator dismissed it.
    Dismissed,
    /// Marked answered.
    Answered,
    /// Pinned.
    Pinned,
    /// Unpinned.
    Unpinned,
}

/// A peer as another peer sees it.
#[derive(Debug, Serialize)]
pub struct PeerView<'a> {
    /// Its id (the attendee id).
    pub peer_id: AttendeeId,
    /// Its display name.
    pub name: &'a str,
    /// Its role.
    pub role: SessionRole,
    /// Whether the receiving side is the polite one of this pair (perfect negotiation).
    pub polite: bool,
}

/// Who is sharing a screen.
#[derive(Debug, Clone, Serialize)]
pub struct ScreenView {
    /// The sharing peer.
    pub peer_id: AttendeeId,
    /// The `msid` stream id of the screen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

/// A frame of a session room.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionFrame<'a> {
    /// Info or settings changed (durable).
    SessionUpdated {
        /// The session.
        session_id: SessionId,
        /// The event's offset.
        offset: u64,
        /// The session now.
        session: SessionView<'a>,
    },
    /// The session went live (durable).
    SessionStarted {
        /// The session.
        session_id: SessionId,
        /// The event's offset.
        offset: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// The session ended (durable).
    SessionEnded {
        /// The session.
        session_id: SessionId,
        /// The event's offset.
        offset: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// The staff changed (durable); `role: null` means removed.
    StaffChanged {
        /// The session.
        session_id: SessionId,
        /// The event's offset.
        offset: u64,
        /// Whose role.
        user_id: UserId,
        /// The role now.
        role: Option<Staff>,
    },
    /// A question changed (durable).
    Question {
        /// The session.
        session_id: SessionId,
        /// The event's offset.
        offset: u64,
        /// What changed.
        change: Change,
        /// The question now.
        question: QuestionView<'a>,
    },
    /// A question was deleted (durable).
    QuestionDeleted {
        /// The session.
        session_id: SessionId,
        /// The event's offset.
        offset: u64,
        /// Which.
        question_id: Uuid,
    },
    /// A question the member saw is hidden from it again (edited under moderation: it waits
    /// for approval, and its new text is not shown until then) (durable).
    QuestionHidden {
        /// The session.
        session_id: SessionId,
        /// The event's offset.
        offset: u64,
        /// Which.
        question_id: Uuid,
    },
    /// The whole session as the member may see it.
    SessionSnapshot {
        /// The session.
        session_id: SessionId,
        /// The offset this state is at.
        offset: u64,
        /// The session.
        session: SessionView<'a>,
        /// Its questions in priority order.
        questions: Vec<QuestionView<'a>>,
    },
    /// The room restarted: send `join_session` with your `last_offset`.
    SessionResync {
        /// The session.
        session_id: SessionId,
        /// The room's offset after restarting; absent when the node that ran the room was lost.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// The session was deleted; its room is closed.
    SessionDeleted {
        /// The session.
        session_id: SessionId,
    },
    /// How many attendees are present (conflated: a member behind sees the latest).
    AttendeeCount {
        /// The session.
        session_id: SessionId,
        /// Present attendees (staff not counted).
        count: u32,
    },
    /// A peer arrived.
    PeerJoined {
        /// The session.
        session_id: SessionId,
        /// The peer.
        #[serde(flatten)]
        peer: PeerView<'a>,
    },
    /// A peer left (or stayed away past the grace window): tear its connection down.
    PeerLeft {
        /// The session.
        session_id: SessionId,
        /// The peer.
        peer_id: AttendeeId,
    },
    /// A WebRTC signal from a peer.
    Signal {
        /// The session.
        session_id: SessionId,
        /// The sender.
        from: AttendeeId,
        /// Its number in the (sender, receiver) pair: 1, 2, 3... with no gap or repeat.
        seq: u64,
        /// The signal.
        signal: &'a SignalBody,
    },
    /// A peer asks this one to send it at most this bitrate.
    BandwidthHint {
        /// The session.
        session_id: SessionId,
        /// Who asks.
        from: AttendeeId,
        /// kbit/s.
        max_bitrate_kbps: u32,
    },
    /// A peer's connection quality (to presenters and moderators; conflated per peer).
    QualityReport {
        /// The session.
        session_id: SessionId,
        /// Whose.
        peer_id: AttendeeId,
        /// Round-trip time, ms.
        rtt_ms: u32,
        /// Fraction of packets lost.
        packet_loss: f64,
        /// kbit/s.
        bitrate_kbps: u32,
    },
    /// A presenter started or stopped a screen share.
    ScreenShare {
        /// The session.
        session_id: SessionId,
        /// Who.
        peer_id: AttendeeId,
        /// Sharing now.
        active: bool,
        /// The screen's `msid` stream id.
        #[serde(skip_serializing_if = "Option::is_none")]
        stream_id: Option<&'a str>,
    },
}

impl SessionFrame<'_> {
    /// The frame's JSON. Serializing these types cannot fail (no maps with non-string keys).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(
                r#"{"type":"error","ref":null,"code":"internal","message":"encoding failed"}"#,
            )
        })
    }
}

/// What the `ack` of `join_session` carries: where the member now stands.
#[derive(Debug, Serialize)]
pub struct JoinedAck<'a> {
    /// The session.
    pub session_id: SessionId,
    /// The room's offset: the member has every event it may see up to it.
    pub offset: u64,
    /// `replay` or `snapshot`.
    pub mode: JoinMode,
    /// How many events were replayed.
    pub replayed: u64,
    /// The member's role.
    pub role: SessionRole,
    /// The member's peer id.
    pub peer_id: AttendeeId,
    /// Where the session stands.
    pub status: SessionStatus,
    /// Present attendees.
    pub attendee_count: u32,
    /// The peers this member negotiates with: every peer for staff, the staff for
    /// attendees.
    pub peers: Vec<PeerView<'a>>,
    /// The member's own votes.
    pub my_votes: HashMap<Uuid, Vote>,
    /// The screen being shared, if any.
    pub screen_share: Option<ScreenView>,
}
