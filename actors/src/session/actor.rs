//! The conference session room: a [`RoomKind`] that wires [`SessionMsg`]s to the pure
//! [`SessionState`], the signal [`Relay`], and the fan-out to members by role, with the journal,
//! snapshots and the pipeline of appends from [`Core`]. This file holds the room's state, its
//! messages and commands; `peers.rs` who is in the room and how frames reach them; `writes.rs`
//! what it writes and answers.
//!
//! A durable write goes decide -> apply -> journal append (queued) -> once committed, in offset
//! order: fan-out -> reply, as in every room. Presenters and moderators ("staff") and attendees are kept apart: staff see every
//! question, attendees the open and answered ones, so each audience has its own tail of recent
//! frames and its own snapshot. A join within the tail is replayed from memory; anything older
//! gets a snapshot (a session's state is small and bounded, and its frames are views of the
//! state after each event, which the journal alone cannot rebuild).
//!
//! Every member is a peer (its attendee id). A peer whose last connection drops is away for
//! [`SIGNAL_GRACE`]: its seat and its signals are kept, and it is not announced as gone; when it
//! comes back, held signals follow its join's ack in order. After the grace it is gone: the
//! others get `peer_left` once and the attendee count drops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use persistence::{
    Activity, AttendeeRecord, QualitySample, SessionFact, SessionRecord, SideEffect,
};
use ractor::RpcReplyPort;
use signaling::client::ClientMsg;
use signaling::conference::SignalBody;
use signaling::server::JoinMode;
use signaling::{AttendeeId, RoomKey, UserId};
use tokio::sync::mpsc;

use super::messages::{Caller, SessionMsg, SessionOp, SessionReply};
use super::qa::{Ask, QaEvent, QaSettings, SessionRole};
use super::signal::{Relay, Relayed, SIGNAL_GRACE, check_candidate, check_sdp, polite};
use super::state::{SessionError, SessionEvent, SessionInfo, SessionState};
use super::wire::{
    Change, JoinedAck, PeerView, QuestionView, ScreenView, SessionFrame, SessionView, public,
};
use crate::conn::{Class, ConflationKey, ConnHandle, ConnId, WireFrame};
use crate::room::core::{Core, Outcome, Refused, Release, RoomKind, RoomMsg, Stop, in_order};
use crate::room::durable::Durable;
use crate::room::{ReplyTo, RoomContext, Roster, Sessions, StartError, Tail};

mod peers;
mod writes;

/// How long new vote totals may wait to be fanned out (coalesced per question).
pub const VOTE_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

/// Most questions a session holds (asked ones, deleted ones not counted).
pub const MAX_QUESTIONS: usize = 5_000;

/// A running session room's state (the rest is in its [`Core`]).
pub struct Room {
    state: SessionState,
    spam: QaSettings,
    /// Connections of presenters and moderators.
    staff: Sessions,
    /// Connections of attendees.
    audience: Sessions,
    peers: HashMap<AttendeeId, Peer>,
    relay: Relay<SignalBody>,
    staff_tail: Tail,
    public_tail: Tail,
    screen: Option<ScreenView>,
    /// Peers whose role changed since they last joined: their next join gets a snapshot.
    resnapshot: std::collections::HashSet<AttendeeId>,
    /// The latest vote totals of each question, committed and not fanned out yet.
    pending_votes: HashMap<uuid::Uuid, (u64, Frames)>,
    /// A flush of `pending_votes` is on its way.
    flush_scheduled: bool,
    /// What happens, for analytics: written off the room, in batches.
    facts: mpsc::UnboundedSender<SessionFact>,
    /// The room's roster (the same one its core holds).
    roster: Roster,
    ctx: Arc<RoomContext>,
}

/// A peer: an attendee with its connections in this room.
struct Peer {
    name: String,
    role: SessionRole,
    /// The user id its connections carry (a guest's is its attendee id).
    conn_user: UserId,
    conns: u32,
    away_since: Option<Instant>,
    /// When its last quality sample was kept.
    sampled: Option<Instant>,
    /// Its signal allowance (for peers that are not presenters).
    signals: Allowance,
}

/// A token bucket: `rate` per second, at most `burst`.
struct Allowance {
    tokens: f64,
    at: Instant,
}

/// Signals per second a peer that is not a presenter may send, and its burst.
const PEER_SIGNALS_PER_SEC: f64 = 10.0;
const PEER_SIGNAL_BURST: f64 = 40.0;

impl Allowance {
    fn new(now: Instant) -> Self {
        Self {
            tokens: PEER_SIGNAL_BURST,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * PEER_SIGNALS_PER_SEC;
        self.tokens = (self.tokens + refill).min(PEER_SIGNAL_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Where the answer of a command goes.
enum Answer {
    /// A WebSocket command.
    Ws(ReplyTo),
    /// A REST call.
    Rest(RpcReplyPort<Result<SessionReply, SessionError>>),
}

impl Answer {
    fn ok(self, body: serde_json::Value) {
        match self {
            Answer::Ws(reply) => reply.ack(Some(body)),
            Answer::Rest(port) => {
                let _ = port.send(Ok(SessionReply::Json(body)));
            }
        }
    }

    fn err(self, e: SessionError) {
        match self {
            Answer::Ws(reply) => reply.error(&e),
            Answer::Rest(port) => {
                let _ = port.send(Err(e));
            }
        }
    }

    fn send(self, result: Result<serde_json::Value, SessionError>) {
        match result {
            Ok(v) => self.ok(v),
            Err(e) => self.err(e),
        }
    }

    fn is_rest(&self) -> bool {
        matches!(self, Answer::Rest(_))
    }
}

/// What a write answers with once it is committed (built when it is decided, from the state
/// as of its event).
enum Says {
    /// The question now, with the offset.
    Question(uuid::Uuid),
    /// `{"offset": n}`.
    Offset,
    /// The session as the caller sees it.
    Session(SessionRole),
}

impl RoomKind for Room {
    type Msg = SessionMsg;
    type Snapshot = SessionState;

    async fn load(
        ctx: &Arc<RoomContext>,
        key: RoomKey,
        roster: &Roster,
    ) -> Result<(Room, Durable), StartError> {
        let RoomKey::Session(id) = key else {
            return Err(StartError::NotFound);
        };
        let store = &ctx.store;
        let row = store.session(id).await?.ok_or(StartError::NotFound)?;
        let creator = row
            .created_by
            .unwrap_or_else(|| UserId::from_uuid(uuid::Uuid::nil()));
        let info = SessionInfo {
            title: row.title.clone(),
            description: row.description.clone(),
            scheduled_at: row.scheduled_at,
            capacity: row.capacity,
        };
        let fresh = SessionState::new(id, creator, info)
            .map_err(|e| StartError::Load(format!("session row: {e}")))?;
        let (durable, state) = Durable::open(
            ctx,
            key.to_string(),
            move || fresh,
            |s: &SessionState| s.offset,
            |s: &mut SessionState, offset, e: &SessionEvent| s.apply(offset, e),
        )
        .await?;
        tracing::info!(
            epoch = durable.epoch(),
            offset = state.offset,
            questions = state.qa.questions.len(),
            "session room loaded"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        // No one is present in a room that just started: close what a stop or a crash left open.
        let _ = tx.send(SessionFact::Restarted {
            session: id,
            at: Utc::now(),
        });
        tokio::spawn(facts_writer(ctx.store.clone(), rx));
        let head = state.offset;
        let room = Room {
            state,
            spam: spam_settings(&ctx.config.spam),
            staff: Sessions::default(),
            audience: Sessions::default(),
            peers: HashMap::new(),
            relay: Relay::default(),
            staff_tail: Tail::from_head(ctx.config.replay_buffer, head),
            public_tail: Tail::from_head(ctx.config.replay_buffer, head),
            screen: None,
            resnapshot: std::collections::HashSet::new(),
            pending_votes: HashMap::new(),
            flush_scheduled: false,
            facts: tx,
            roster: roster.clone(),
            ctx: ctx.clone(),
        };
        Ok((room, durable))
    }

    fn offset(&self) -> u64 {
        self.state.offset
    }

    fn snapshot(&self) -> &SessionState {
        &self.state
    }

    fn needs_committed(msg: &SessionMsg) -> bool {
        match msg {
            SessionMsg::Client { cmd, .. } => matches!(cmd, ClientMsg::JoinSession(_)),
            SessionMsg::FlushVotes => false,
            SessionMsg::Call { op, .. } => matches!(
                op,
                SessionOp::Describe
                    | SessionOp::Questions
                    | SessionOp::Admit
                    | SessionOp::Leave
                    | SessionOp::Delete
            ),
        }
    }

    async fn handle(&mut self, core: &mut Core<Room>, msg: SessionMsg) {
        match msg {
            SessionMsg::Client { reply, cmd } => self.on_client(core, reply, cmd).await,
            SessionMsg::Call { caller, op, reply } => {
                self.call(core, caller, op, Answer::Rest(reply)).await;
            }
            SessionMsg::FlushVotes => self.flush_votes(),
        }
    }

    fn disconnected(&mut self, _core: &mut Core<Room>, conn: ConnId) {
        self.drop_conn(conn, false);
    }

    fn restarted(&mut self, _core: &mut Core<Room>) {
        self.reattach();
    }

    /// Peers away past the grace window are gone: the others hear of it once.
    fn tick(&mut self, _core: &mut Core<Room>) {
        let now = Instant::now();
        let gone: Vec<AttendeeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.away_since
                    .is_some_and(|t| now.duration_since(t) >= SIGNAL_GRACE)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.forget_peer(id);
        }
    }

    fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.staff.is_empty() && self.audience.is_empty()
    }
}

/// Most facts written in one transaction.
const FACTS_BATCH: usize = 512;
/// Quality samples kept per peer: at most one per this long.
const QUALITY_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes a session's facts in order, off the room, a batch per transaction; a failed batch is
/// logged and dropped (analytics, not the session's state).
async fn facts_writer(store: persistence::Store, mut rx: mpsc::UnboundedReceiver<SessionFact>) {
    let mut batch = Vec::with_capacity(FACTS_BATCH);
    while rx.recv_many(&mut batch, FACTS_BATCH).await > 0 {
        if let Err(e) = store.record_facts(&batch).await {
            tracing::warn!(error = %e, facts = batch.len(), "recording session analytics failed");
        }
        batch.clear();
    }
}

impl Room {
    fn key(&self) -> RoomKey {
        RoomKey::Session(self.state.id)
    }

    /// After a crash: tell the connections that were joined to join again (the room lost who
    /// was present and what it held for them; they come back through `join_session`).
    fn reattach(&mut self) {
        let conns: Vec<ConnHandle> = lock(&self.roster).drain().map(|(_, c)| c).collect();
        let frame = crate::room::resync_frame(self.key(), Some(self.state.offset));
        for conn in conns {
            conn.mark_left(self.key());
            if !conn.is_closed() {
                conn.push(frame.clone(), Class::MustDeliver);
            }
        }
    }

    fn is_joined(&self, id: ConnId) -> bool {
        self.staff.is_joined(id) || self.audience.is_joined(id)
    }

    fn conn(&self, id: ConnId) -> Option<&ConnHandle> {
        self.staff.get(id).or_else(|| self.audience.get(id))
    }

    async fn on_client(&mut self, core: &mut Core<Room>, reply: ReplyTo, cmd: ClientMsg) {
        if let ClientMsg::JoinSession(join) = cmd {
            return self.join(reply, join.last_offset).await;
        }
        let member = reply.member();
        if !self.is_joined(member.conn) {
            return reply.error(&SessionError::NotJoined);
        }
        let (attendee, user) = member.attendee_in(self.state.id);
        let role = self.role_of(attendee, user);
        let answer = Answer::Ws(reply);
        match cmd {
            ClientMsg::QuestionAsk(a) => {
                let ask = Ask {
                    id: a.question_id.unwrap_or_else(uuid::Uuid::now_v7),
                    text: a.text,
                    anonymous: a.anonymous,
                    author_name: self.peers.get(&attendee).map(|p| p.name.clone()),
                };
                self.ask(core, attendee, ask, answer).await;
            }
            ClientMsg::QuestionEdit(e) => {
                let op = SessionOp::Edit {
                    id: e.question_id,
                    text: e.text,
                };
                self.qa(core, attendee, role, op, answer).await;
            }
            ClientMsg::QuestionVote(v) => {
                let op = SessionOp::Vote {
                    id: v.question_id,
                    vote: v.vote,
                };
                self.qa(core, attendee, role, op, answer).await;
            }
            ClientMsg::QuestionModerate(m) => {
                let op = SessionOp::Moderate {
                    id: m.question_id,
                    action: m.action,
                };
                self.qa(core, attendee, role, op, answer).await;
            }
            ClientMsg::QuestionDelete(d) => {
                let op = SessionOp::DeleteQuestion(d.question_id);
                self.qa(core, attendee, role, op, answer).await;
            }
            cmd @ (ClientMsg::LeaveSession(_)
            | ClientMsg::Signal(_)
            | ClientMsg::QualityReport(_)
            | ClientMsg::BandwidthHint(_)
            | ClientMsg::ScreenShare(_)) => {
                in_order(self, core, move |room, _core| room.ephemeral(answer, cmd));
            }
            _ => answer.err(SessionError::Invalid("not a session command".into())),
        }
    }

    /// A command that writes nothing (leave, a signal, a quality report, a bandwidth hint, a
    /// screen share), handled in order behind the writes before it (see [`in_order`]).
    fn ephemeral(&mut self, answer: Answer, cmd: ClientMsg) {
        let Answer::Ws(reply) = &answer else {
            return answer.err(SessionError::Invalid("not a REST command".into()));
        };
        let member = reply.member();
        // It may have left while this waited behind writes.
        if !self.is_joined(member.conn) {
            return answer.err(SessionError::NotJoined);
        }
        let (attendee, user) = member.attendee_in(self.state.id);
        let role = self.role_of(attendee, user);
        let none = || serde_json::json!({ "offset": null });
        match cmd {
            ClientMsg::LeaveSession(_) => {
                self.drop_conn(member.conn, true);
                answer.ok(none());
            }
            ClientMsg::Signal(s) => match self.signal(attendee, role, s.to, s.signal) {
                Ok((seq, held)) => answer.ok(serde_json::json!({ "seq": seq, "held": held })),
                Err(e) => answer.err(e),
            },
            ClientMsg::QualityReport(q) => {
                let frame = SessionFrame::QualityReport {
                    session_id: self.state.id,
                    peer_id: attendee,
                    rtt_ms: q.rtt_ms,
                    packet_loss: q.packet_loss,
                    bitrate_kbps: q.bitrate_kbps,
                };
                let key = self.conflation("quality", attendee.as_uuid().as_u128());
                self.send_staff(WireFrame::text(frame.to_json()), Class::Conflatable(key));
                let now = Instant::now();
                if let Some(p) = self.peers.get_mut(&attendee)
                    && p.sampled
                        .is_none_or(|t| now.duration_since(t) >= QUALITY_SAMPLE_EVERY)
                {
                    p.sampled = Some(now);
                    self.fact(SessionFact::Quality(QualitySample {
                        session: self.state.id,
                        at: Utc::now(),
                        attendee,
                        rtt_ms: q.rtt_ms,
                        packet_loss: q.packet_loss,
                        bitrate_kbps: q.bitrate_kbps,
                    }));
                }
                answer.ok(none());
            }
            ClientMsg::BandwidthHint(h) => {
                if self.peers.get(&h.to).is_none_or(|p| p.conns == 0) {
                    return answer.err(SessionError::Signal(
                        super::signal::SignalError::UnknownPeer,
                    ));
                }
                let frame = SessionFrame::BandwidthHint {
                    session_id: self.state.id,
                    from: attendee,
                    max_bitrate_kbps: h.max_bitrate_kbps,
                };
                let key = self.conflation("bandwidth", attendee.as_uuid().as_u128());
                self.send_peer(
                    h.to,
                    &WireFrame::text(frame.to_json()),
                    Class::Conflatable(key),
                );
                answer.ok(none());
            }
            ClientMsg::ScreenShare(s) => {
                if role != SessionRole::Presenter {
                    return answer.err(SessionError::Forbidden("only presenters share a screen"));
                }
                let frame = SessionFrame::ScreenShare {
                    session_id: self.state.id,
                    peer_id: attendee,
                    active: s.active,
                    stream_id: s.stream_id.as_deref(),
                };
                let frame = WireFrame::text(frame.to_json());
                self.screen = s.active.then(|| ScreenView {
                    peer_id: attendee,
                    stream_id: s.stream_id.clone(),
                });
                tracing::info!(session = %self.state.id, peer = %attendee, active = s.active, "screen share");
                self.send_all(&frame, Class::MustDeliver);
                let kind = if s.active {
                    "screen_share_started"
                } else {
                    "screen_share_stopped"
                };
                self.fact(self.activity(Utc::now(), Some(attendee), kind, None));
                answer.ok(none());
            }
            _ => answer.err(SessionError::Invalid("not a session command".into())),
        }
    }

    fn fact(&self, fact: SessionFact) {
        let _ = self.facts.send(fact);
    }

    fn activity(
        &self,
        at: chrono::DateTime<Utc>,
        who: Option<AttendeeId>,
        kind: &str,
        question: Option<uuid::Uuid>,
    ) -> SessionFact {
        SessionFact::Activity(Activity {
            session: self.state.id,
            at,
            attendee: who,
            kind: kind.to_owned(),
            question,
        })
    }

    fn rules(&self) -> QaSettings {
        self.state.qa_settings(&self.spam)
    }

    fn role_of(&self, attendee: AttendeeId, user: Option<UserId>) -> SessionRole {
        match self.peers.get(&attendee) {
            Some(p) => p.role,
            None => self.state.role(user),
        }
    }

    fn present_attendees(&self) -> u32 {
        let n = self
            .peers
            .values()
            .filter(|p| p.role == SessionRole::Attendee)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn conflation(&self, topic: &'static str, subject: u128) -> ConflationKey {
        ConflationKey {
            room: self.key(),
            topic,
            subject,
        }
    }
}

/// The hub's spam rules as Q&A settings (the session's switches replace the rest).
fn spam_settings(rules: &crate::room::SpamRules) -> QaSettings {
    QaSettings {
        max_questions_per_window: rules.questions_per_window,
        rate_window_secs: u32::try_from(rules.window.as_secs()).unwrap_or(u32::MAX),
        max_links: rules.max_links,
        blocklist: rules.blocklist.clone(),
        ..QaSettings::default()
    }
}

/// Each audience's frame of one event.
struct Frames {
    staff: WireFrame,
    public: Option<WireFrame>,
    class: Class,
    /// A vote's new totals on this question: fanned out coalesced (see [`VOTE_FLUSH`]).
    votes: Option<uuid::Uuid>,
}

/// The question a Q&A event is about.
fn question_of(e: &QaEvent) -> uuid::Uuid {
    match e {
        QaEvent::QuestionAsked { question } => question.id,
        QaEvent::QuestionEdited { id, .. }
        | QaEvent::VoteSet { id, .. }
        | QaEvent::QuestionModerated { id, .. }
        | QaEvent::QuestionDeleted { id } => *id,
    }
}

/// Locks the roster (see the workspace room: a poisoned lock leaves a consistent map).
fn lock(roster: &Roster) -> std::sync::MutexGuard<'_, HashMap<ConnId, ConnHandle>> {
    roster
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
