//! A conference session's durable state and its rules, as plain functions: what the session is
//! (title, description, schedule, capacity, settings), where it stands (scheduled, live, ended),
//! who runs it (the presenter, co-presenters, moderators) and its Q&A ([`Qa`]).
//!
//! Event-sourced like the workspace board: `decide_*` returns the [`SessionEvent`] a command
//! would produce without changing anything; [`SessionState::apply`] makes it true, and replaying
//! the journal through `apply` rebuilds the same state.
//!
//! **Lifecycle.** `scheduled -> live -> ended`, each step once, by a presenter. An ended session
//! changes no more: no settings, no staff, no Q&A command ([`SessionState::decide_qa`]), and
//! nobody joins.
//!
//! **Who may do what.** The creator is the presenter; presenters add and remove co-presenters
//! and moderators. Presenters and co-presenters start and end the session and edit it;
//! moderators moderate questions; everyone else present is an attendee.
//!
//! **Capacity** counts the attendees present now (staff do not count), not everyone who ever
//! joined; [`SessionState::admit`] is asked at every join with that count.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signaling::session::{SessionStatus, Staff};
use signaling::text::{clean_line, clean_text};
use signaling::{ErrorCode, SessionId, UserId};

use super::qa::{Qa, QaError, QaEvent, QaSettings, SessionRole};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5000;
/// Most attendees a session can be set to hold.
pub const MAX_CAPACITY: u32 = 100_000;

/// What a session is. Every field is checked by [`SessionState::decide_update`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// One line, 1 to [`MAX_TITLE_CHARS`] characters.
    pub title: String,
    /// Free text, up to [`MAX_DESCRIPTION_CHARS`] characters.
    pub description: String,
    /// When it is planned to start.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Most attendees present at once, 1 to [`MAX_CAPACITY`].
    pub capacity: u32,
}

/// The switches a presenter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionSettings {
    /// New questions wait for a moderator.
    pub moderation: bool,
    /// Questions may hide their author.
    pub anonymous_questions: bool,
    /// Questions may be asked.
    pub qa_open: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            moderation: false,
            anonymous_questions: true,
            qa_open: true,
        }
    }
}

/// A change to a session's info or settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPatch {
    /// A new title.
    pub title: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new schedule (`Some(None)` clears it).
    pub scheduled_at: Option<Option<DateTime<Utc>>>,
    /// A new capacity.
    pub capacity: Option<u32>,
    /// New settings.
    pub settings: Option<SessionSettings>,
}

/// A durable session change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// Info or settings changed (the values now).
    SessionUpdated {
        /// The info now.
        info: SessionInfo,
        /// The settings now.
        settings: SessionSettings,
    },
    /// The session went live.
    SessionStarted {
        /// When.
        at: DateTime<Utc>,
    },
    /// The session ended.
    SessionEnded {
        /// When.
        at: DateTime<Utc>,
    },
    /// Someone joined the staff, or changed role in it.
    StaffSet {
        /// The account.
        user: UserId,
        /// Their role.
        role: Staff,
    },
    /// Someone left the staff.
    StaffRemoved {
        /// The account.
        user: UserId,
    },
    /// A Q&A change, journaled as the Q&A event itself (`{"type": "question_asked", ...}`).
    #[serde(untagged)]
    Qa(QaEvent),
}

/// Why a session command was refused. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The caller's role forbids it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The step does not follow from where the session stands.
    #[error("the session is {from:?}; it cannot be {to}")]
    InvalidTransition {
        /// Where it stands.
        from: SessionStatus,
        /// What was asked.
        to: &'static str,
    },
    /// The session is over.
    #[error("the session has ended")]
    Ended,
    /// As many attendees as it holds are present.
    #[error("the session is full")]
    Full,
    /// A field is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The presenter who created the session stays a presenter.
    #[error("the session's creator stays its presenter")]
    Creator,
    /// A Q&A refusal.
    #[error(transparent)]
    Qa(#[from] QaError),
    /// A signaling refusal.
    #[error(transparent)]
    Signal(#[from] super::signal::SignalError),
    /// The connection has not joined the session.
    #[error("join the session first")]
    NotJoined,
    /// No such session.
    #[error("session not found")]
    NotFound,
    /// Storage failed or the room stopped before answering.
    #[error("the session is unavailable; retry")]
    Unavailable,
    /// Too many of these from this peer just now.
    #[error("too many signals; slow down")]
    RateLimited,
}

impl SessionError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::Forbidden(_) | SessionError::Creator => ErrorCode::Forbidden,
            SessionError::InvalidTransition { .. } => ErrorCode::InvalidTransition,
            SessionError::Ended => ErrorCode::SessionEnded,
            SessionError::Full => ErrorCode::SessionFull,
            SessionError::Invalid(_) => ErrorCode::InvalidPayload,
            SessionError::Qa(e) => e.code(),
            SessionError::Signal(e) => e.code(),
            SessionError::NotJoined => ErrorCode::NotJoined,
            SessionError::NotFound => ErrorCode::NotFound,
            SessionError::Unavailable => ErrorCode::Unavailable,
            SessionError::RateLimited => ErrorCode::RateLimited,
        }
    }
}

/// A conference session's durable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// The session.
    pub id: SessionId,
    /// The offset of the last applied event.
    pub offset: u64,
    /// Who created it (always a presenter).
    pub creator: UserId,
    /// What it is.
    pub info: SessionInfo,
    /// Its switches.
    pub settings: SessionSettings,
    /// Where it stands.
    pub status: SessionStatus,
    /// When it went live.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The staff, the creator included.
    pub staff: HashMap<UserId, Staff>,
    /// The questions and votes.
    pub qa: Qa,
}

impl SessionState {
    /// A new scheduled session, its creator the presenter.
    ///
    /// # Errors
    /// A field of `info` is out of range.
    pub fn new(id: SessionId, creator: UserId, info: SessionInfo) -> Result<Self, SessionError> {
        let info = checked_info(info)?;
        Ok(Self {
            id,
            offset: 0,
            creator,
            info,
            settings: SessionSettings::default(),
            status: SessionStatus::Scheduled,
            started_at: None,
            ended_at: None,
            staff: HashMap::from([(creator, Staff::Presenter)]),
            qa: Qa::default(),
        })
    }

    /// What `user` may do here; a guest (no account) is an attendee. A registered user's
    /// attendee id (for votes and signaling) is their user id.
    pub fn role(&self, user: Option<UserId>) -> SessionRole {
        match user.and_then(|u| self.staff.get(&u)) {
            Some(Staff::Presenter) => SessionRole::Presenter,
            Some(Staff::Moderator) => SessionRole::Moderator,
            None => SessionRole::Attendee,
        }
    }

    /// Whether someone with `role` may join now, with `present` attendees already here. Staff
    /// always may (they do not count); attendees while there is room, until the session ends.
    ///
    /// # Errors
    /// [`SessionError::Ended`], [`SessionError::Full`].
    pub fn admit(&self, role: SessionRole, present: u32) -> Result<(), SessionError> {
        if self.status == SessionStatus::Ended {
            return Err(SessionError::Ended);
        }
        if role == SessionRole::Attendee && present >= self.info.capacity {
            return Err(SessionError::Full);
        }
        Ok(())
    }

    /// The Q&A rules in force: the presenter's switches over the hub's spam rules.
    pub fn qa_settings(&self, spam: &QaSettings) -> QaSettings {
        QaSettings {
            open: self.settings.qa_open && self.status != SessionStatus::Ended,
            moderation: self.settings.moderation,
            anonymous_allowed: self.settings.anonymous_questions,
            ..spam.clone()
        }
    }

    /// Checks a Q&A command (ask, vote, edit, moderate, delete: `decide` calls the matching
    /// [`Qa`] rule) while the session has not ended, and wraps what it decides. Every Q&A
    /// command goes through here, so that an ended session takes none.
    ///
    /// # Errors
    /// [`SessionError::Ended`], or the Q&A rule's refusal.
    pub fn decide_qa(
        &self,
        decide: impl FnOnce(&Qa) -> Result<Option<QaEvent>, QaError>,
    ) -> Result<Option<SessionEvent>, SessionError> {
        self.not_ended()?;
        Ok(decide(&self.qa)?.map(SessionEvent::Qa))
    }

    /// Checks an edit of the info or settings.
    ///
    /// # Errors
    /// Not a presenter, the session ended, or a field out of range.
    pub fn decide_update(
        &self,
        by: UserId,
        patch: SessionPatch,
    ) -> Result<SessionEvent, SessionError> {
        self.presenter(by)?;
        self.not_ended()?;
        let mut info = self.info.clone();
        if let Some(title) = patch.title {
            info.title = title;
        }
        if let Some(description) = patch.description {
            info.description = description;
        }
        if let Some(at) = patch.scheduled_at {
            info.scheduled_at = at;
        }
        if let Some(capacity) = patch.capacity {
            info.capacity = capacity;
        }
        Ok(SessionEvent::SessionUpdated {
            info: checked_info(info)?,
            settings: patch.settings.unwrap_or(self.settings),
        })
    }

    /// Checks `scheduled -> live`.
    ///
    /// # Errors
    /// Not a presenter, or not scheduled.
    pub fn decide_start(
        &self,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<SessionEvent, SessionError> {
        self.presenter(by)?;
        match self.status {
            SessionStatus::Scheduled => Ok(SessionEvent::SessionStarted { at: now }),
            from => Err(SessionError::InvalidTransition {
                from,
                to: "started",
            }),
        }
    }

    /// Checks `live -> ended`.
    ///
    /// # Errors
    /// Not a presenter, or not live.
    pub fn decide_end(&self, by: UserId, now: DateTime<Utc>) -> Result<SessionEvent, SessionError> {
        self.presenter(by)?;
        match self.status {
            SessionStatus::Live => Ok(SessionEvent::SessionEnded { at: now }),
            from => Err(SessionError::InvalidTransition { from, to: "ended" }),
        }
    }

    /// Checks adding `user` to the staff as `role` (or changing their role).
    ///
    /// # Errors
    /// Not a presenter, the session ended, or the creator demoted.
    pub fn decide_set_staff(
        &self,
        by: UserId,
        user: UserId,
        role: Staff,
    ) -> Result<SessionEvent, SessionError> {
        self.presenter(by)?;
        self.not_ended()?;
        if user == self.creator && role != Staff::Presenter {
            return Err(SessionError::Creator);
        }
        Ok(SessionEvent::StaffSet { user, role })
    }

    /// Checks removing `user` from the staff.
    ///
    /// # Errors
    /// Not a presenter, the session ended, the creator, or not on the staff.
    pub fn decide_remove_staff(
        &self,
        by: UserId,
        user: UserId,
    ) -> Result<SessionEvent, SessionError> {
        self.presenter(by)?;
        self.not_ended()?;
        if user == self.creator {
            return Err(SessionError::Creator);
        }
        if !self.staff.contains_key(&user) {
            return Err(SessionError::Invalid("not on the session's staff".into()));
        }
        Ok(SessionEvent::StaffRemoved { user })
    }

    /// Makes a journaled event true and moves the offset to it.
    pub fn apply(&mut self, offset: u64, event: &SessionEvent) {
        match event {
            SessionEvent::SessionUpdated { info, settings } => {
                self.info = info.clone();
                self.settings = *settings;
            }
            SessionEvent::SessionStarted { at } => {
                self.status = SessionStatus::Live;
                self.started_at = Some(*at);
            }
            SessionEvent::SessionEnded { at } => {
                self.status = SessionStatus::Ended;
                self.ended_at = Some(*at);
            }
            SessionEvent::StaffSet { user, role } => {
                self.staff.insert(*user, *role);
            }
            SessionEvent::StaffRemoved { user } => {
                self.staff.remove(user);
            }
            SessionEvent::Qa(e) => self.qa.apply(e),
        }
        self.offset = offset;
    }

    fn presenter(&self, user: UserId) -> Result<(), SessionError> {
        match self.staff.get(&user) {
            Some(Staff::Presenter) => Ok(()),
            _ => Err(SessionError::Forbidden(
                "only the session's presenters can do this",
            )),
        }
    }

    fn not_ended(&self) -> Result<(), SessionError> {
        if self.status == SessionStatus::Ended {
            return Err(SessionError::Ended);
        }
        Ok(())
    }
}

/// `info` with its text normalized, if every field is in range.
fn checked_info(info: SessionInfo) -> Result<SessionInfo, SessionError> {
    let invalid = |e: signaling::text::FieldError| SessionError::Invalid(e.to_string());
    let title = clean_line(&info.title, "title", MAX_TITLE_CHARS).map_err(invalid)?;
    let description =
        clean_text(&info.description, "description", MAX_DESCRIPTION_CHARS).map_err(invalid)?;
    if !(1..=MAX_CAPACITY).contains(&info.capacity) {
        return Err(SessionError::Invalid(format!(
            "capacity: 1 to {MAX_CAPACITY}"
        )));
    }
    Ok(SessionInfo {
        title,
        description,
        ..info
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::qa::{Ask, AttendeeId, Vote};
    use uuid::Uuid;

    fn info(capacity: u32) -> SessionInfo {
        SessionInfo {
            title: "  Rust in production ".into(),
            description: String::new(),
            scheduled_at: None,
            capacity,
        }
    }

    fn session(capacity: u32) -> (SessionState, UserId) {
        let presenter = UserId::new();
        let s = SessionState::new(SessionId::new(), presenter, info(capacity)).unwrap();
        (s, presenter)
    }

    fn apply(s: &mut SessionState, e: SessionEvent) {
        let next = s.offset + 1;
        s.apply(next, &e);
    }

    /// Decides on `s` and applies what was decided.
    fn step(
        s: &mut SessionState,
        decide: impl FnOnce(&SessionState) -> Result<SessionEvent, SessionError>,
    ) {
        let e = decide(s).unwrap();
        apply(s, e);
    }

    #[test]
    fn a_session_goes_scheduled_live_ended_once_each_by_a_presenter() {
        let (mut s, ada) = session(10);
        assert_eq!(s.info.title, "Rust in production", "trimmed");
        let now = Utc::now();
        let stranger = UserId::new();
        assert!(matches!(
            s.decide_start(stranger, now),
            Err(SessionError::Forbidden(_))
        ));
        assert_eq!(
            s.decide_end(ada, now).unwrap_err().code(),
            "invalid_transition"
        );
        step(&mut s, |s| s.decide_start(ada, now));
        assert_eq!(s.status, SessionStatus::Live);
        assert_eq!(
            s.decide_start(ada, now).unwrap_err().code(),
            "invalid_transition"
        );
        step(&mut s, |s| s.decide_end(ada, now));
        assert_eq!((s.status, s.ended_at), (SessionStatus::Ended, Some(now)));
        assert_eq!(
            s.decide_end(ada, now).unwrap_err().code(),
            "invalid_transition"
        );
        let late = SessionPatch {
            title: Some("again".into()),
            ..SessionPatch::default()
        };
        assert_eq!(s.decide_update(ada, late), Err(SessionError::Ended));
        assert_eq!(
            s.admit(SessionRole::Presenter, 0),
            Err(SessionError::Ended),
            "an ended session refuses every join"
        );
    }

    #[test]
    fn capacity_counts_attendees_present_and_not_staff() {
        let (s, _) = session(2);
        assert_eq!(s.admit(SessionRole::Attendee, 1), Ok(()));
        assert_eq!(
            s.admit(SessionRole::Attendee, 2).unwrap_err().code(),
            "session_full"
        );
        assert_eq!(s.admit(SessionRole::Moderator, 2), Ok(()));
        assert_eq!(s.admit(SessionRole::Presenter, 2), Ok(()));
    }

    #[test]
    fn presenters_manage_the_staff_and_the_creator_stays() {
        let (mut s, ada) = session(10);
        let (bob, cy) = (UserId::new(), UserId::new());
        assert!(matches!(
            s.decide_set_staff(bob, cy, Staff::Moderator),
            Err(SessionError::Forbidden(_))
        ));
        step(&mut s, |s| s.decide_set_staff(ada, bob, Staff::Presenter));
        step(&mut s, |s| s.decide_set_staff(bob, cy, Staff::Moderator));
        assert_eq!(s.role(Some(bob)), SessionRole::Presenter);
        assert_eq!(s.role(Some(cy)), SessionRole::Moderator);
        assert_eq!(s.role(None), SessionRole::Attendee, "a guest");
        assert!(
            s.decide_start(cy, Utc::now()).is_err(),
            "a moderator does not run the session"
        );
        assert_eq!(
            s.decide_set_staff(bob, ada, Staff::Moderator),
            Err(SessionError::Creator)
        );
        assert_eq!(s.decide_remove_staff(bob, ada), Err(SessionError::Creator));
        step(&mut s, |s| s.decide_remove_staff(ada, cy));
        assert_eq!(s.role(Some(cy)), SessionRole::Attendee);
        assert!(s.decide_remove_staff(ada, cy).is_err(), "not on the staff");
    }

    #[test]
    fn updates_are_checked_and_settings_reach_the_qa_rules() {
        let (mut s, ada) = session(10);
        let bad = |patch: SessionPatch| s.decide_update(ada, patch).unwrap_err().code();
        assert_eq!(
            bad(SessionPatch {
                title: Some("  ".into()),
                ..SessionPatch::default()
            }),
            "invalid_payload"
        );
        assert_eq!(
            bad(SessionPatch {
                title: Some("two\nlines".into()),
                ..SessionPatch::default()
            }),
            "invalid_payload"
        );
        assert_eq!(
            bad(SessionPatch {
                capacity: Some(0),
                ..SessionPatch::default()
            }),
            "invalid_payload"
        );
        let closed = SessionSettings {
            moderation: true,
            anonymous_questions: false,
            qa_open: false,
        };
        let e = s
            .decide_update(
                ada,
                SessionPatch {
                    capacity: Some(500),
                    settings: Some(closed),
                    ..SessionPatch::default()
                },
            )
            .unwrap();
        apply(&mut s, e);
        assert_eq!(s.info.capacity, 500);
        assert_eq!(s.info.title, "Rust in production", "left as it was");
        let rules = s.qa_settings(&QaSettings::default());
        assert!(!rules.open && rules.moderation && !rules.anonymous_allowed);
        let ask = Ask {
            id: Uuid::now_v7(),
            text: "anyone?".into(),
            anonymous: false,
            author_name: None,
        };
        assert_eq!(
            s.qa.decide_ask(&rules, AttendeeId::new(), ask, Utc::now())
                .unwrap_err()
                .code(),
            "qa_closed"
        );
    }

    #[test]
    fn replaying_the_journal_rebuilds_the_session_and_its_questions() {
        let (mut s, ada) = session(10);
        let start = s.clone();
        let mut journal = Vec::new();
        let now = Utc::now();
        let started = s.decide_start(ada, now).unwrap();
        journal.push(started);
        apply(&mut s, journal[0].clone());
        let rules = s.qa_settings(&QaSettings::default());
        let guest = AttendeeId::new();
        let ask = Ask {
            id: Uuid::now_v7(),
            text: "Will the talk be recorded?".into(),
            anonymous: true,
            author_name: None,
        };
        let q = ask.id;
        let asked = SessionEvent::Qa(s.qa.decide_ask(&rules, guest, ask, now).unwrap());
        apply(&mut s, asked.clone());
        journal.push(asked);
        let voted =
            s.qa.decide_vote(AttendeeId::from_uuid(ada.as_uuid()), q, Some(Vote::Up))
                .unwrap();
        let voted = SessionEvent::Qa(voted.unwrap());
        apply(&mut s, voted.clone());
        journal.push(voted);
        let ended = s.decide_end(ada, now).unwrap();
        apply(&mut s, ended.clone());
        journal.push(ended);
        let mut again = start;
        for e in &journal {
            apply(&mut again, e.clone());
        }
        assert_eq!(again, s);
        assert_eq!(again.qa.questions[&q].up, 1);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SessionState>(&json).unwrap(), s);
        assert!(
            !s.qa_settings(&QaSettings::default()).open,
            "no questions once it ended"
        );
        let late_vote = s.decide_qa(|qa| qa.decide_vote(guest, q, Some(Vote::Down)));
        assert_eq!(late_vote, Err(SessionError::Ended), "no votes either");
    }
}

#[cfg(test)]
mod journal_format {
    use super::*;
    use crate::session::qa::{Ask, AttendeeId, QaSettings};

    #[test]
    fn a_qa_event_survives_the_journal() {
        let ada = UserId::new();
        let info = SessionInfo {
            title: "Talk".into(),
            description: String::new(),
            scheduled_at: None,
            capacity: 10,
        };
        let mut s = SessionState::new(SessionId::new(), ada, info).unwrap();
        s.apply(1, &SessionEvent::SessionStarted { at: Utc::now() });
        let ask = Ask {
            id: uuid::Uuid::now_v7(),
            text: "Why?".into(),
            anonymous: false,
            author_name: Some("Ada".into()),
        };
        let rules = s.qa_settings(&QaSettings::default());
        let event = SessionEvent::Qa(
            s.qa.decide_ask(&rules, AttendeeId::new(), ask, Utc::now())
                .unwrap(),
        );
        let json = serde_json::to_string(&event).unwrap();
        let back: SessionEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }
}
