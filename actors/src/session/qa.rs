//! Live Q&A in a conference session: questions, votes, moderation and spam rules.
//!
//! Event-sourced like the workspace board: each `decide_*` checks a command against the state
//! and returns the [`QaEvent`] it would produce without changing anything; the room journals the
//! event, then [`Qa::apply`] makes it true. Replaying the journal through `apply` rebuilds the
//! same state, and every rule that depends on time (the question rate) reads the timestamps
//! carried by earlier events, never a clock, so a replay decides nothing differently.
//!
//! **Votes.** An attendee has at most one vote per question: up, down, or none. Voting the same
//! way twice changes nothing and produces no event (a retried vote is harmless); changing a vote
//! moves the totals by the difference (up to down: `up - 1`, `down + 1`); clearing removes it.
//! The totals are derived from the votes in `apply`, so they are exact after the last one.
//!
//! **Order.** [`Qa::ranked`] lists questions pinned first, then by score (`up - down`, highest
//! first), then oldest first, then by id, so that every member sees the same order.
//!
//! **Moderation.** With moderation on, a new question is `pending` and only presenters and
//! moderators see it until one approves it. Presenters and moderators can dismiss, mark
//! answered, pin, unpin and delete any question; an author can edit their own question only
//! while it is pending or open and has no votes (under moderation, an edited question waits for
//! approval again), and delete it.
//!
//! **Spam.** Each refusal has its own code ([`QaError::code`]): too many questions from one
//! attendee within the rate window, the same text (ignoring case and spacing) asked twice by the
//! same attendee, a blocked word, too many links. What an author asked is remembered when their
//! question is deleted, so deleting and asking again passes neither the rate nor the duplicate
//! rule.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use signaling::ErrorCode;
use signaling::text::clean_text;
use uuid::Uuid;

/// Longest question, in characters.
pub const MAX_QUESTION_CHARS: usize = 500;

/// A question's id.
pub type QuestionId = Uuid;
pub use signaling::AttendeeId;
pub use signaling::session::{Moderation, Vote};

/// What an attendee may do in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionRole {
    /// Runs the session.
    Presenter,
    /// Moderates the Q&A.
    Moderator,
    /// Watches, asks and votes.
    Attendee,
}

impl SessionRole {
    fn moderates(self) -> bool {
        matches!(self, SessionRole::Presenter | SessionRole::Moderator)
    }
}

/// The session's Q&A settings and spam rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaSettings {
    /// Questions may be asked.
    pub open: bool,
    /// New questions wait for approval.
    pub moderation: bool,
    /// Questions may be asked without showing the author.
    pub anonymous_allowed: bool,
    /// At most this many questions per attendee within [`QaSettings::rate_window_secs`].
    pub max_questions_per_window: usize,
    /// The window of the question rate.
    pub rate_window_secs: u32,
    /// At most this many links (`http://`, `https://`, `www.`) in one question.
    pub max_links: usize,
    /// Words refused anywhere in a question, compared case-insensitively.
    pub blocklist: Vec<String>,
}

impl Default for QaSettings {
    fn default() -> Self {
        Self {
            open: true,
            moderation: false,
            anonymous_allowed: true,
            max_questions_per_window: 3,
            rate_window_secs: 60,
            max_links: 1,
            blocklist: Vec::new(),
        }
    }
}

/// Where a question stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuestionStatus {
    /// Waiting for a moderator (moderation on).
    Pending,
    /// Visible to everyone, open for votes.
    Open,
    /// Answered: visible, no more votes.
    Answered,
    /// Dismissed by a moderator: only moderators see it.
    Dismissed,
}

/// A question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// Its id.
    pub id: QuestionId,
    /// Who asked (kept even when anonymous, for the author's own rules; never shown then).
    pub author: AttendeeId,
    /// Whether the author is hidden from others.
    pub anonymous: bool,
    /// The author's display name when they asked (never kept for an anonymous question).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// The text, trimmed.
    pub text: String,
    /// Where it stands.
    pub status: QuestionStatus,
    /// Pinned to the top.
    pub pinned: bool,
    /// Up votes.
    pub up: u32,
    /// Down votes.
    pub down: u32,
    /// When it was asked.
    pub asked_at: DateTime<Utc>,
}

impl Question {
    /// Up votes minus down votes.
    pub fn score(&self) -> i64 {
        i64::from(self.up) - i64::from(self.down)
    }
}

/// A durable Q&A change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QaEvent {
    /// A question was asked.
    QuestionAsked {
        /// The question as it now stands.
        question: Question,
    },
    /// Its author changed the text.
    QuestionEdited {
        /// The question.
        id: QuestionId,
        /// The new text.
        text: String,
        /// Back to `pending` (moderation is on: an edited question is approved again).
        #[serde(default)]
        pending: bool,
    },
    /// An attendee's vote on a question is now `vote` (`None`: cleared).
    VoteSet {
        /// The question.
        id: QuestionId,
        /// The voter.
        voter: AttendeeId,
        /// The vote now.
        vote: Option<Vote>,
    },
    /// A moderator acted.
    QuestionModerated {
        /// The question.
        id: QuestionId,
        /// What was done.
        action: Moderation,
    },
    /// The question is gone, with its votes.
    QuestionDeleted {
        /// The question.
        id: QuestionId,
    },
}

/// Why a Q&A command was refused. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QaError {
    /// Q&A is closed.
    #[error("questions are closed in this session")]
    Closed,
    /// Empty, too long, or holding control or invisible characters.
    #[error("{0}")]
    InvalidText(String),
    /// Anonymous questions are not allowed here.
    #[error("anonymous questions are not allowed in this session")]
    AnonymousNotAllowed,
    /// Too many questions from this attendee just now.
    #[error("too many questions; wait a moment")]
    RateLimited,
    /// The attendee asked this already.
    #[error("you asked this question already")]
    Duplicate,
    /// The text holds a blocked word.
    #[error("the question contains a blocked word")]
    Blocked,
    /// More links than allowed.
    #[error("the question has too many links")]
    TooManyLinks,
    /// No such question (or not visible to the caller).
    #[error("question not found")]
    NotFound,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Only a question without votes can be edited.
    #[error("a question can only be edited before it has votes")]
    HasVotes,
    /// The question takes no votes in its state.
    #[error("this question is not open for votes")]
    NotVotable,
    /// The question id is taken.
    #[error("a question with this id exists")]
    AlreadyExists,
}

impl QaError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            QaError::Closed => ErrorCode::QaClosed,
            QaError::InvalidText(_) => ErrorCode::InvalidPayload,
            QaError::AnonymousNotAllowed => ErrorCode::AnonymousNotAllowed,
            QaError::RateLimited => ErrorCode::QuestionRateLimited,
            QaError::Duplicate => ErrorCode::DuplicateQuestion,
            QaError::Blocked => ErrorCode::BlockedContent,
            QaError::TooManyLinks => ErrorCode::TooManyLinks,
            QaError::NotFound => ErrorCode::QuestionNotFound,
            QaError::Forbidden(_) => ErrorCode::Forbidden,
            QaError::HasVotes => ErrorCode::QuestionHasVotes,
            QaError::NotVotable => ErrorCode::QuestionNotVotable,
            QaError::AlreadyExists => ErrorCode::AlreadyExists,
        }
    }
}

/// A new question as asked.
#[derive(Debug, Clone)]
pub struct Ask {
    /// Chosen by the client (idempotent retries) or by the hub.
    pub id: QuestionId,
    /// The text as sent.
    pub text: String,
    /// Hide the author.
    pub anonymous: bool,
    /// The author's display name, shown with the question unless it is anonymous.
    pub author_name: Option<String>,
}

/// Most recent question times kept per author (for the rate); more than any sane window needs.
const KEPT_ASKS: usize = 32;
/// Most texts kept per author (for duplicates).
const KEPT_TEXTS: usize = 64;

/// What an author asked, kept when their questions are deleted, so that deleting and asking
/// again passes neither the rate nor the duplicate rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct AuthorHistory {
    /// When they asked, oldest first (the latest [`KEPT_ASKS`]).
    asked: VecDeque<DateTime<Utc>>,
    /// Their texts, normalized (the latest [`KEPT_TEXTS`]).
    texts: VecDeque<String>,
}

impl AuthorHistory {
    fn wrote(&mut self, text: &str) {
        self.texts.push_back(normalized(text));
        if self.texts.len() > KEPT_TEXTS {
            self.texts.pop_front();
        }
    }
}

/// A session's Q&A: its questions and every attendee's votes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Qa {
    /// Questions by id.
    pub questions: HashMap<QuestionId, Question>,
    /// Each attendee's vote on each question.
    votes: HashMap<QuestionId, HashMap<AttendeeId, Vote>>,
    /// What each author asked.
    #[serde(default)]
    authors: HashMap<AttendeeId, AuthorHistory>,
}

impl Qa {
    /// Checks a new question.
    ///
    /// # Errors
    /// Closed, bad text, anonymity refused, or one of the spam rules.
    pub fn decide_ask(
        &self,
        settings: &QaSettings,
        author: AttendeeId,
        ask: Ask,
        now: DateTime<Utc>,
    ) -> Result<QaEvent, QaError> {
        if !settings.open {
            return Err(QaError::Closed);
        }
        if ask.anonymous && !settings.anonymous_allowed {
            return Err(QaError::AnonymousNotAllowed);
        }
        if self.questions.contains_key(&ask.id) {
            return Err(QaError::AlreadyExists);
        }
        let text = checked_text(settings, &ask.text)?;
        if let Some(history) = self.authors.get(&author) {
            let key = normalized(&text);
            if history.texts.contains(&key) {
                return Err(QaError::Duplicate);
            }
            let window = Duration::seconds(i64::from(settings.rate_window_secs));
            let recent = history.asked.iter().filter(|t| **t > now - window).count();
            if recent >= settings.max_questions_per_window {
                return Err(QaError::RateLimited);
            }
        }
        let status = if settings.moderation {
            QuestionStatus::Pending
        } else {
            QuestionStatus::Open
        };
        Ok(QaEvent::QuestionAsked {
            question: Question {
                id: ask.id,
                author,
                anonymous: ask.anonymous,
                author_name: if ask.anonymous { None } else { ask.author_name },
                text,
                status,
                pinned: false,
                up: 0,
                down: 0,
                asked_at: now,
            },
        })
    }

    /// Checks an edit by the question's author: while Q&A is open, of a question pending or
    /// open that has no votes yet. Under moderation an open question goes back to `pending`, so
    /// that an approved question cannot be edited into something else.
    ///
    /// # Errors
    /// Closed, not found, not the author, answered or dismissed, votes already cast, bad text,
    /// or a text the author asked already.
    pub fn decide_edit(
        &self,
        settings: &QaSettings,
        editor: AttendeeId,
        id: QuestionId,
        text: &str,
    ) -> Result<QaEvent, QaError> {
        if !settings.open {
            return Err(QaError::Closed);
        }
        let q = self.questions.get(&id).ok_or(QaError::NotFound)?;
        if q.author != editor {
            return Err(QaError::Forbidden("only its author can edit a question"));
        }
        if !matches!(q.status, QuestionStatus::Pending | QuestionStatus::Open) {
            return Err(QaError::Forbidden(
                "an answered or dismissed question cannot be edited",
            ));
        }
        if q.up + q.down > 0 {
            return Err(QaError::HasVotes);
        }
        let text = checked_text(settings, text)?;
        let key = normalized(&text);
        let unchanged = key == normalized(&q.text);
        let asked_before = self
            .authors
            .get(&editor)
            .is_some_and(|h| h.texts.contains(&key));
        if asked_before && !unchanged {
            return Err(QaError::Duplicate);
        }
        let pending = settings.moderation && q.status == QuestionStatus::Open && !unchanged;
        Ok(QaEvent::QuestionEdited { id, text, pending })
    }

    /// Checks a vote (`None` clears the voter's vote). `Ok(None)`: the vote is already so,
    /// nothing to record.
    ///
    /// # Errors
    /// Not found or not open for votes.
    pub fn decide_vote(
        &self,
        voter: AttendeeId,
        id: QuestionId,
        vote: Option<Vote>,
    ) -> Result<Option<QaEvent>, QaError> {
        let q = self.questions.get(&id).ok_or(QaError::NotFound)?;
        match q.status {
            QuestionStatus::Open => {}
            QuestionStatus::Pending | QuestionStatus::Dismissed => return Err(QaError::NotFound),
            QuestionStatus::Answered => return Err(QaError::NotVotable),
        }
        if self.vote_of(id, voter) == vote {
            return Ok(None);
        }
        Ok(Some(QaEvent::VoteSet { id, voter, vote }))
    }

    /// Checks a moderator's action.
    ///
    /// # Errors
    /// Not a presenter or moderator, not found, or an action that does not fit the question's
    /// state (approving what is not pending).
    pub fn decide_moderate(
        &self,
        role: SessionRole,
        id: QuestionId,
        action: Moderation,
    ) -> Result<QaEvent, QaError> {
        if !role.moderates() {
            return Err(QaError::Forbidden(
                "only presenters and moderators moderate questions",
            ));
        }
        let q = self.questions.get(&id).ok_or(QaError::NotFound)?;
        if action == Moderation::Approve && q.status != QuestionStatus::Pending {
            return Err(QaError::Forbidden(
                "only a pending question can be approved",
            ));
        }
        Ok(QaEvent::QuestionModerated { id, action })
    }

    /// Checks a deletion: by a presenter or moderator, or by the author.
    ///
    /// # Errors
    /// Not found or not allowed.
    pub fn decide_delete(
        &self,
        who: AttendeeId,
        role: SessionRole,
        id: QuestionId,
    ) -> Result<QaEvent, QaError> {
        let q = self.questions.get(&id).ok_or(QaError::NotFound)?;
        if !role.moderates() && q.author != who {
            return Err(QaError::Forbidden(
                "only its author or a moderator can delete a question",
            ));
        }
        Ok(QaEvent::QuestionDeleted { id })
    }

    /// Makes an event true.
    pub fn apply(&mut self, event: &QaEvent) {
        match event {
            QaEvent::QuestionAsked { question } => {
                let history = self.authors.entry(question.author).or_default();
                history.asked.push_back(question.asked_at);
                if history.asked.len() > KEPT_ASKS {
                    history.asked.pop_front();
                }
                history.wrote(&question.text);
                self.questions.insert(question.id, question.clone());
            }
            QaEvent::QuestionEdited { id, text, pending } => {
                if let Some(q) = self.questions.get_mut(id) {
                    q.text.clone_from(text);
                    if *pending {
                        q.status = QuestionStatus::Pending;
                    }
                    self.authors.entry(q.author).or_default().wrote(text);
                }
            }
            QaEvent::VoteSet { id, voter, vote } => self.set_vote(*id, *voter, *vote),
            QaEvent::QuestionModerated { id, action } => {
                if let Some(q) = self.questions.get_mut(id) {
                    match action {
                        Moderation::Approve => q.status = QuestionStatus::Open,
                        Moderation::Dismiss => q.status = QuestionStatus::Dismissed,
                        Moderation::Answer => q.status = QuestionStatus::Answered,
                        Moderation::Pin => q.pinned = true,
                        Moderation::Unpin => q.pinned = false,
                    }
                }
            }
            QaEvent::QuestionDeleted { id } => {
                self.questions.remove(id);
                self.votes.remove(id);
            }
        }
    }

    /// `voter`'s vote on question `id`.
    pub fn vote_of(&self, id: QuestionId, voter: AttendeeId) -> Option<Vote> {
        self.votes.get(&id)?.get(&voter).copied()
    }

    /// Every vote `voter` holds, by question.
    pub fn votes_of(&self, voter: AttendeeId) -> HashMap<QuestionId, Vote> {
        self.votes
            .iter()
            .filter_map(|(q, votes)| votes.get(&voter).map(|v| (*q, *v)))
            .collect()
    }

    /// The questions `role` sees, in priority order (see the module docs): moderators see
    /// pending and dismissed ones too.
    pub fn ranked(&self, role: SessionRole) -> Vec<&Question> {
        let mut list: Vec<&Question> = self
            .questions
            .values()
            .filter(|q| {
                role.moderates()
                    || matches!(q.status, QuestionStatus::Open | QuestionStatus::Answered)
            })
            .collect();
        list.sort_by(|a, b| {
            b.pinned
                .cmp(&a.pinned)
                .then(b.score().cmp(&a.score()))
                .then(a.asked_at.cmp(&b.asked_at))
                .then(a.id.cmp(&b.id))
        });
        list
    }

    fn set_vote(&mut self, id: QuestionId, voter: AttendeeId, vote: Option<Vote>) {
        let Some(q) = self.questions.get_mut(&id) else {
            return;
        };
        let votes = self.votes.entry(id).or_default();
        let before = match vote {
            Some(v) => votes.insert(voter, v),
            None => votes.remove(&voter),
        };
        for (v, delta) in [(before, -1i64), (vote, 1)] {
            let total = match v {
                Some(Vote::Up) => &mut q.up,
                Some(Vote::Down) => &mut q.down,
                None => continue,
            };
            *total = u32::try_from(i64::from(*total) + delta).unwrap_or(0);
        }
    }
}

/// The text trimmed and normalized (as every human text the hub keeps, see
/// [`signaling::text::clean_text`]), if its length and content pass the rules.
fn checked_text(settings: &QaSettings, text: &str) -> Result<String, QaError> {
    let text = clean_text(text.trim(), "text", MAX_QUESTION_CHARS)
        .map_err(|e| QaError::InvalidText(e.to_string()))?;
    if text.is_empty() {
        return Err(QaError::InvalidText(format!(
            "a question has 1 to {MAX_QUESTION_CHARS} characters"
        )));
    }
    let lower = text.to_lowercase();
    if settings
        .blocklist
        .iter()
        .map(|w| w.trim().to_lowercase())
        .any(|w| !w.is_empty() && lower.contains(&w))
    {
        return Err(QaError::Blocked);
    }
    let links = ["http://", "https://", "www."]
        .iter()
        .map(|p| lower.matches(p).count())
        .sum::<usize>();
    // `https://www.` is one link, not two.
    let links = links - lower.matches("://www.").count();
    if links > settings.max_links {
        return Err(QaError::TooManyLinks);
    }
    Ok(text)
}

/// The text as compared for duplicates: lower case, runs of whitespace as one space.
fn normalized(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn ask(text: &str) -> Ask {
        Ask {
            id: Uuid::now_v7(),
            text: text.into(),
            anonymous: false,
            author_name: None,
        }
    }

    /// Decides and applies a question, returning its id.
    fn asked(qa: &mut Qa, s: &QaSettings, who: AttendeeId, text: &str, t: i64) -> QuestionId {
        let e = qa.decide_ask(s, who, ask(text), at(t)).unwrap();
        qa.apply(&e);
        match e {
            QaEvent::QuestionAsked { question } => question.id,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn moderate(qa: &mut Qa, role: SessionRole, id: QuestionId, action: Moderation) {
        let e = qa.decide_moderate(role, id, action).unwrap();
        qa.apply(&e);
    }

    fn vote(qa: &mut Qa, who: AttendeeId, id: QuestionId, v: Option<Vote>) -> bool {
        match qa.decide_vote(who, id, v).unwrap() {
            Some(e) => {
                qa.apply(&e);
                true
            }
            None => false,
        }
    }

    #[test]
    fn votes_are_one_per_attendee_idempotent_and_move_totals_by_the_difference() {
        let s = QaSettings::default();
        let mut qa = Qa::default();
        let (ada, bob) = (AttendeeId::new(), AttendeeId::new());
        let q = asked(&mut qa, &s, ada, "Will there be slides?", 0);
        assert!(vote(&mut qa, bob, q, Some(Vote::Up)));
        assert!(
            !vote(&mut qa, bob, q, Some(Vote::Up)),
            "the same vote again records nothing"
        );
        assert_eq!((qa.questions[&q].up, qa.questions[&q].down), (1, 0));
        assert!(vote(&mut qa, bob, q, Some(Vote::Down)));
        assert_eq!((qa.questions[&q].up, qa.questions[&q].down), (0, 1));
        assert!(vote(&mut qa, ada, q, Some(Vote::Up)));
        assert_eq!(qa.questions[&q].score(), 0);
        assert!(vote(&mut qa, bob, q, None));
        assert!(
            !vote(&mut qa, bob, q, None),
            "clearing twice records nothing"
        );
        assert_eq!((qa.questions[&q].up, qa.questions[&q].down), (1, 0));
        assert_eq!(qa.vote_of(q, ada), Some(Vote::Up));
        assert_eq!(qa.vote_of(q, bob), None);
    }

    #[test]
    fn questions_rank_pinned_then_by_score_then_oldest() {
        let s = QaSettings::default();
        let mut qa = Qa::default();
        let (ada, bob, cy) = (AttendeeId::new(), AttendeeId::new(), AttendeeId::new());
        let old = asked(&mut qa, &s, ada, "first", 0);
        let popular = asked(&mut qa, &s, bob, "second", 1);
        let young = asked(&mut qa, &s, cy, "third", 2);
        let pinned = asked(&mut qa, &s, cy, "fourth", 3);
        vote(&mut qa, ada, popular, Some(Vote::Up));
        vote(&mut qa, cy, popular, Some(Vote::Up));
        vote(&mut qa, ada, pinned, Some(Vote::Down));
        moderate(&mut qa, SessionRole::Moderator, pinned, Moderation::Pin);
        let order: Vec<QuestionId> = qa
            .ranked(SessionRole::Attendee)
            .iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(order, vec![pinned, popular, old, young]);
    }

    #[test]
    fn with_moderation_a_question_waits_for_approval_and_only_moderators_see_it() {
        let s = QaSettings {
            moderation: true,
            ..QaSettings::default()
        };
        let mut qa = Qa::default();
        let (ada, bob) = (AttendeeId::new(), AttendeeId::new());
        let q = asked(&mut qa, &s, ada, "Is this recorded?", 0);
        assert!(qa.ranked(SessionRole::Attendee).is_empty());
        assert_eq!(qa.ranked(SessionRole::Moderator).len(), 1);
        assert_eq!(
            qa.decide_vote(bob, q, Some(Vote::Up)),
            Err(QaError::NotFound)
        );
        assert!(matches!(
            qa.decide_moderate(SessionRole::Attendee, q, Moderation::Approve),
            Err(QaError::Forbidden(_))
        ));
        moderate(&mut qa, SessionRole::Presenter, q, Moderation::Approve);
        assert_eq!(qa.ranked(SessionRole::Attendee).len(), 1);
        assert!(matches!(
            qa.decide_moderate(SessionRole::Presenter, q, Moderation::Approve),
            Err(QaError::Forbidden(_))
        ));
        moderate(&mut qa, SessionRole::Moderator, q, Moderation::Answer);
        assert_eq!(
            qa.decide_vote(bob, q, Some(Vote::Up)),
            Err(QaError::NotVotable)
        );
        moderate(&mut qa, SessionRole::Moderator, q, Moderation::Dismiss);
        assert!(qa.ranked(SessionRole::Attendee).is_empty());
    }

    #[test]
    fn only_the_author_edits_and_only_before_votes() {
        let s = QaSettings::default();
        let mut qa = Qa::default();
        let (ada, bob) = (AttendeeId::new(), AttendeeId::new());
        let q = asked(&mut qa, &s, ada, "Waht about pricing?", 0);
        assert!(matches!(
            qa.decide_edit(&s, bob, q, "hijacked"),
            Err(QaError::Forbidden(_))
        ));
        let e = qa
            .decide_edit(&s, ada, q, "  What about pricing?  ")
            .unwrap();
        qa.apply(&e);
        assert_eq!(qa.questions[&q].text, "What about pricing?");
        vote(&mut qa, bob, q, Some(Vote::Up));
        assert_eq!(
            qa.decide_edit(&s, ada, q, "changed"),
            Err(QaError::HasVotes)
        );
        assert!(matches!(
            qa.decide_delete(bob, SessionRole::Attendee, q),
            Err(QaError::Forbidden(_))
        ));
        let gone = qa.decide_delete(ada, SessionRole::Attendee, q).unwrap();
        qa.apply(&gone);
        assert_eq!(qa.decide_vote(bob, q, None), Err(QaError::NotFound));
        assert_eq!(qa.vote_of(q, bob), None, "its votes went with it");
    }

    #[test]
    fn deleting_and_asking_again_passes_neither_spam_rule() {
        let s = QaSettings::default();
        let mut qa = Qa::default();
        let ada = AttendeeId::new();
        let first = asked(&mut qa, &s, ada, "Buy my course", 0);
        let gone = qa.decide_delete(ada, SessionRole::Attendee, first).unwrap();
        qa.apply(&gone);
        let again = qa.decide_ask(&s, ada, ask("buy my  COURSE"), at(1));
        assert_eq!(again.unwrap_err().code(), "duplicate_question");
        for (n, t) in [(2, 2), (3, 3)] {
            let id = asked(&mut qa, &s, ada, &format!("question {n}"), t);
            let gone = qa.decide_delete(ada, SessionRole::Attendee, id).unwrap();
            qa.apply(&gone);
        }
        let fourth = qa.decide_ask(&s, ada, ask("question 4"), at(4));
        assert_eq!(fourth.unwrap_err().code(), "question_rate_limited");
    }

    #[test]
    fn an_edit_is_checked_like_a_question_and_approved_again_under_moderation() {
        let s = QaSettings {
            moderation: true,
            ..QaSettings::default()
        };
        let mut qa = Qa::default();
        let ada = AttendeeId::new();
        let q = asked(&mut qa, &s, ada, "Harmless question", 0);
        moderate(&mut qa, SessionRole::Moderator, q, Moderation::Approve);
        let e = qa
            .decide_edit(&s, ada, q, "Something else entirely")
            .unwrap();
        qa.apply(&e);
        assert_eq!(qa.questions[&q].status, QuestionStatus::Pending);
        assert!(
            qa.ranked(SessionRole::Attendee).is_empty(),
            "hidden until approved"
        );
        let other = asked(&mut qa, &s, ada, "Second one", 1);
        assert_eq!(
            qa.decide_edit(&s, ada, other, "harmless  question")
                .unwrap_err()
                .code(),
            "duplicate_question",
            "a text asked before"
        );
        moderate(&mut qa, SessionRole::Moderator, other, Moderation::Approve);
        moderate(&mut qa, SessionRole::Moderator, other, Moderation::Answer);
        assert!(matches!(
            qa.decide_edit(&s, ada, other, "late change"),
            Err(QaError::Forbidden(_))
        ));
        let closed = QaSettings {
            open: false,
            ..s.clone()
        };
        assert_eq!(qa.decide_edit(&closed, ada, q, "x"), Err(QaError::Closed));
    }

    #[test]
    fn spam_rules_refuse_with_their_own_codes() {
        let s = QaSettings {
            blocklist: vec!["Casino".into()],
            ..QaSettings::default()
        };
        let mut qa = Qa::default();
        let ada = AttendeeId::new();
        let refused = |qa: &Qa, text: &str, t: i64| {
            qa.decide_ask(&s, ada, ask(text), at(t)).unwrap_err().code()
        };
        assert_eq!(refused(&qa, "   ", 0), "invalid_payload");
        assert_eq!(refused(&qa, &"x".repeat(501), 0), "invalid_payload");
        assert_eq!(refused(&qa, "hidden\u{202e}txet", 0), "invalid_payload");
        assert!(qa.decide_ask(&s, ada, ask(&"é".repeat(500)), at(0)).is_ok());
        assert_eq!(refused(&qa, "Best CASINO bonus", 0), "blocked_content");
        assert_eq!(
            refused(&qa, "see http://a.example and www.b.example", 0),
            "too_many_links"
        );
        assert!(
            qa.decide_ask(&s, ada, ask("slides at https://www.example.com/x"), at(0))
                .is_ok(),
            "one link, written with both a scheme and www."
        );
        asked(&mut qa, &s, ada, "Where are  the slides?", 0);
        assert_eq!(
            refused(&qa, "where are the SLIDES?", 1),
            "duplicate_question"
        );
        asked(&mut qa, &s, ada, "second", 10);
        asked(&mut qa, &s, ada, "third", 20);
        assert_eq!(refused(&qa, "fourth", 30), "question_rate_limited");
        assert!(
            qa.decide_ask(&s, ada, ask("fourth"), at(61)).is_ok(),
            "the first one left the window"
        );
        let other = AttendeeId::new();
        assert!(
            qa.decide_ask(&s, other, ask("where are the slides?"), at(1))
                .is_ok(),
            "someone else may ask the same"
        );
        let closed = QaSettings {
            open: false,
            anonymous_allowed: false,
            ..QaSettings::default()
        };
        assert_eq!(
            qa.decide_ask(&closed, other, ask("late"), at(1)),
            Err(QaError::Closed)
        );
        let named_only = QaSettings {
            anonymous_allowed: false,
            ..QaSettings::default()
        };
        let hidden = Ask {
            anonymous: true,
            author_name: None,
            ..ask("who am I")
        };
        assert_eq!(
            qa.decide_ask(&named_only, other, hidden, at(1)),
            Err(QaError::AnonymousNotAllowed)
        );
    }

    #[test]
    fn replaying_the_events_rebuilds_the_same_state() {
        let s = QaSettings::default();
        let mut qa = Qa::default();
        let mut journal = Vec::new();
        let voters: Vec<AttendeeId> = (0..5).map(|_| AttendeeId::new()).collect();
        let e = qa
            .decide_ask(&s, voters[0], ask("replay me"), at(0))
            .unwrap();
        qa.apply(&e);
        let QaEvent::QuestionAsked { question } = &e else {
            panic!("asked")
        };
        let q = question.id;
        journal.push(e);
        for (i, v) in voters.iter().enumerate() {
            let choice = [Some(Vote::Up), Some(Vote::Down), None][i % 3];
            for c in [Some(Vote::Up), choice] {
                if let Some(e) = qa.decide_vote(*v, q, c).unwrap() {
                    qa.apply(&e);
                    journal.push(e);
                }
            }
        }
        let mut again = Qa::default();
        for e in &journal {
            again.apply(e);
        }
        assert_eq!(again, qa);
        let json = serde_json::to_string(&qa).unwrap();
        assert_eq!(
            serde_json::from_str::<Qa>(&json).unwrap(),
            qa,
            "snapshot round trip"
        );
    }

    proptest::proptest! {
        /// Whatever order attendees vote, change and clear their votes in, the totals equal the
        /// count of the final votes.
        #[test]
        fn totals_equal_the_final_votes(
            steps in proptest::collection::vec((0usize..8, 0u8..3), 0..200)
        ) {
            let s = QaSettings::default();
            let mut qa = Qa::default();
            let voters: Vec<AttendeeId> = (0..8).map(|_| AttendeeId::new()).collect();
            let q = asked(&mut qa, &s, voters[0], "vote on me", 0);
            let mut last: HashMap<usize, Option<Vote>> = HashMap::new();
            for (who, choice) in steps {
                let v = [Some(Vote::Up), Some(Vote::Down), None][usize::from(choice)];
                vote(&mut qa, voters[who], q, v);
                last.insert(who, v);
            }
            let ups = last.values().filter(|v| **v == Some(Vote::Up)).count();
            let downs = last.values().filter(|v| **v == Some(Vote::Down)).count();
            proptest::prop_assert_eq!(qa.questions[&q].up as usize, ups);
            proptest::prop_assert_eq!(qa.questions[&q].down as usize, downs);
        }
    }
}
