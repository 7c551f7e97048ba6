//! What a session room writes and answers: Q&A and REST operations decided against the state,
//! journaled through the core's pipeline, and each audience's frame of an event once committed
//! (vote totals coalesced at the source).

use super::*;

impl Room {
    /// Asks a question (the cap on questions first).
    pub(super) async fn ask(
        &mut self,
        core: &mut Core<Room>,
        author: AttendeeId,
        ask: Ask,
        answer: Answer,
    ) {
        if self.state.qa.questions.len() >= MAX_QUESTIONS {
            let full =
                SessionError::Invalid(format!("a session holds at most {MAX_QUESTIONS} questions"));
            return self.respond(core, answer, Err(full));
        }
        let rules = self.rules();
        let id = ask.id;
        let now = Utc::now();
        let decided = self
            .state
            .decide_qa(|qa| qa.decide_ask(&rules, author, ask, now).map(Some));
        let event = match decided {
            Ok(Some(event)) => event,
            Ok(None) => return self.respond(core, answer, Err(SessionError::Unavailable)),
            Err(e) => return self.respond(core, answer, Err(e)),
        };
        let effect = SideEffect::IndexQuestion {
            session: self.state.id,
            question: id,
            at: now,
        };
        self.write(
            core,
            event,
            Some(effect),
            answer,
            Says::Question(id),
            author,
        )
        .await;
    }

    /// A Q&A command other than asking: edit, vote, moderate, delete.
    pub(super) async fn qa(
        &mut self,
        core: &mut Core<Room>,
        who: AttendeeId,
        role: SessionRole,
        op: SessionOp,
        answer: Answer,
    ) {
        let rest = answer.is_rest();
        let (decided, says) = match op {
            SessionOp::Edit { id, text } => {
                // The rules (with the blocklist) only for what checks text: not per vote.
                let rules = self.rules();
                (
                    self.state
                        .decide_qa(|qa| qa.decide_edit(&rules, who, id, &text).map(Some)),
                    Says::Question(id),
                )
            }
            SessionOp::Vote { id, vote } => (
                self.state.decide_qa(|qa| qa.decide_vote(who, id, vote)),
                // Over REST the question comes back; a WebSocket ack is just the offset (a
                // vote storm should not carry the question in every ack).
                if rest {
                    Says::Question(id)
                } else {
                    Says::Offset
                },
            ),
            SessionOp::Moderate { id, action } => (
                self.state
                    .decide_qa(|qa| qa.decide_moderate(role, id, action).map(Some)),
                Says::Question(id),
            ),
            SessionOp::DeleteQuestion(id) => (
                self.state
                    .decide_qa(|qa| qa.decide_delete(who, role, id).map(Some)),
                Says::Offset,
            ),
            _ => return answer.err(SessionError::Invalid("not a Q&A command".into())),
        };
        match decided {
            Ok(Some(event)) => self.write(core, event, None, answer, says, who).await,
            // Nothing changes (the same vote again): answer as things stand.
            Ok(None) => {
                let body = match says {
                    Says::Question(id) => self.question_body(id, None),
                    _ => Ok(serde_json::json!({ "offset": null })),
                };
                self.respond(core, answer, body);
            }
            Err(e) => self.respond(core, answer, Err(e)),
        }
    }

    /// A REST operation.
    pub(super) async fn call(
        &mut self,
        core: &mut Core<Room>,
        caller: Caller,
        op: SessionOp,
        answer: Answer,
    ) {
        let role = self.role_of(caller.attendee, caller.user);
        let now = Utc::now();
        let Some(by) = caller.user else {
            // A guest may read, leave, and take part in the Q&A; nothing else.
            return match op {
                SessionOp::Describe => answer.send(self.describe(role)),
                SessionOp::Questions => answer.send(self.questions(role)),
                SessionOp::Admit => answer.send(self.admit(caller.attendee, role)),
                SessionOp::Leave => {
                    self.leave(caller.attendee);
                    answer.ok(serde_json::json!({ "offset": null }));
                }
                SessionOp::Ask(mut ask) => {
                    ask.author_name = caller.name;
                    self.ask(core, caller.attendee, ask, answer).await;
                }
                op @ (SessionOp::Edit { .. }
                | SessionOp::Vote { .. }
                | SessionOp::Moderate { .. }
                | SessionOp::DeleteQuestion(_)) => {
                    self.qa(core, caller.attendee, role, op, answer).await;
                }
                _ => answer.err(SessionError::Forbidden("guests cannot do this")),
            };
        };
        let (decided, effect, says) = match op {
            SessionOp::Describe => return answer.send(self.describe(role)),
            SessionOp::Questions => return answer.send(self.questions(role)),
            SessionOp::Admit => return answer.send(self.admit(caller.attendee, role)),
            SessionOp::Leave => {
                self.leave(caller.attendee);
                return answer.ok(serde_json::json!({ "offset": null }));
            }
            SessionOp::Ask(mut ask) => {
                ask.author_name = caller.name;
                return self.ask(core, caller.attendee, ask, answer).await;
            }
            op @ (SessionOp::Edit { .. }
            | SessionOp::Vote { .. }
            | SessionOp::Moderate { .. }
            | SessionOp::DeleteQuestion(_)) => {
                return self.qa(core, caller.attendee, role, op, answer).await;
            }
            SessionOp::Delete => return self.delete(core, role, answer).await,
            SessionOp::Update(patch) => (
                self.state.decide_update(by, patch),
                Some(SideEffect::UpdateSession {
                    session: Box::new(self.row()),
                }),
                Says::Session(role),
            ),
            SessionOp::Start => (
                self.state.decide_start(by, now),
                Some(SideEffect::UpdateSession {
                    session: Box::new(self.row()),
                }),
                Says::Session(role),
            ),
            SessionOp::End => (
                self.state.decide_end(by, now),
                Some(SideEffect::UpdateSession {
                    session: Box::new(self.row()),
                }),
                Says::Session(role),
            ),
            SessionOp::SetStaff { user, role } => (
                self.state.decide_set_staff(by, user, role),
                Some(SideEffect::SetSessionStaff {
                    session: self.state.id,
                    user,
                    role,
                }),
                Says::Offset,
            ),
            SessionOp::RemoveStaff(user) => (
                self.state.decide_remove_staff(by, user),
                Some(SideEffect::RemoveSessionStaff {
                    session: self.state.id,
                    user,
                }),
                Says::Offset,
            ),
        };
        match decided {
            Ok(event) => {
                self.write(core, event, effect, answer, says, caller.attendee)
                    .await;
            }
            Err(e) => self.respond(core, answer, Err(e)),
        }
    }

    /// Answers a command decided without a write (refused, or nothing to change): at once, or,
    /// with appends in flight (which the decision read), right after them (see
    /// [`Core::after_writes`]).
    pub(super) fn respond(
        &mut self,
        core: &mut Core<Room>,
        answer: Answer,
        body: Result<serde_json::Value, SessionError>,
    ) {
        let release: Release<Room> = Box::new(move |_room, _core, outcome| match outcome {
            Ok(_) => answer.send(body),
            Err(_) => answer.err(SessionError::Unavailable),
        });
        if let Some(now) = core.after_writes(release) {
            now(self, core, Ok(0));
        }
    }

    pub(super) fn admit(
        &self,
        attendee: AttendeeId,
        role: SessionRole,
    ) -> Result<serde_json::Value, SessionError> {
        if !self.peers.contains_key(&attendee) {
            self.state.admit(role, self.present_attendees())?;
        }
        Ok(serde_json::json!({ "role": role }))
    }

    /// The caller leaves: its connections leave the room at once and the others see it go.
    pub(super) fn leave(&mut self, attendee: AttendeeId) {
        let conns: Vec<ConnId> = self
            .staff
            .conns()
            .chain(self.audience.conns())
            .filter(|c| c.attendee_in(self.state.id).0 == attendee)
            .map(ConnHandle::id)
            .collect();
        for c in conns {
            self.drop_conn(c, true);
        }
        if self.peers.contains_key(&attendee) {
            self.forget_peer(attendee);
        } else {
            self.fact(SessionFact::Left {
                attendee,
                at: Utc::now(),
            });
        }
    }

    /// Deletes the session (nothing is in flight: a delete waits for the appends).
    pub(super) async fn delete(
        &mut self,
        core: &mut Core<Room>,
        role: SessionRole,
        answer: Answer,
    ) {
        if role != SessionRole::Presenter {
            return answer.err(SessionError::Forbidden(
                "only the session's presenters can do this",
            ));
        }
        let id = self.state.id;
        if let Err(e) = Box::pin(self.ctx.store.delete_session(id)).await {
            tracing::error!(session = %id, error = %e, "deleting the session failed");
            return answer.err(SessionError::Unavailable);
        }
        core.stop(Stop::Deleted);
        let frame = WireFrame::text(SessionFrame::SessionDeleted { session_id: id }.to_json());
        self.send_all(&frame, Class::MustDeliver);
        let key = self.key();
        for conn in self.staff.conns().chain(self.audience.conns()) {
            conn.mark_left(key);
        }
        lock(&self.roster).clear();
        answer.ok(serde_json::json!({ "offset": null }));
    }

    /// The session as a REST body, with the caller's role and the attendees present.
    pub(super) fn describe(&self, role: SessionRole) -> Result<serde_json::Value, SessionError> {
        let mut v = serde_json::to_value(SessionView::of(&self.state))
            .map_err(|_| SessionError::Unavailable)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("your_role".into(), serde_json::json!(role));
            o.insert(
                "attendee_count".into(),
                serde_json::json!(self.present_attendees()),
            );
        }
        Ok(v)
    }

    pub(super) fn questions(&self, role: SessionRole) -> Result<serde_json::Value, SessionError> {
        let list: Vec<QuestionView<'_>> = self
            .state
            .qa
            .ranked(role)
            .into_iter()
            .map(QuestionView::of)
            .collect();
        serde_json::to_value(list).map_err(|_| SessionError::Unavailable)
    }

    pub(super) fn question_body(
        &self,
        id: uuid::Uuid,
        offset: Option<u64>,
    ) -> Result<serde_json::Value, SessionError> {
        let q = self
            .state
            .qa
            .questions
            .get(&id)
            .ok_or(SessionError::Qa(crate::session::qa::QaError::NotFound))?;
        let view =
            serde_json::to_value(QuestionView::of(q)).map_err(|_| SessionError::Unavailable)?;
        Ok(serde_json::json!({ "question": view, "offset": offset }))
    }

    pub(super) fn row(&self) -> SessionRecord {
        let s = &self.state;
        SessionRecord {
            id: s.id,
            created_by: Some(s.creator),
            title: s.info.title.clone(),
            description: s.info.description.clone(),
            status: s.status,
            scheduled_at: s.info.scheduled_at,
            capacity: s.info.capacity,
            created_at: Utc::now(),
        }
    }

    /// Applies one durable event and queues its append (with its relational side effect: a
    /// session row is written as the event leaves it); once it is committed, each audience gets
    /// its frame and the caller its answer, as of this event.
    pub(super) async fn write(
        &mut self,
        core: &mut Core<Room>,
        event: SessionEvent,
        effect: Option<SideEffect>,
        answer: Answer,
        says: Says,
        by: AttendeeId,
    ) {
        let offset = self.state.offset + 1;
        let Ok(json) = serde_json::to_string(&event) else {
            return answer.err(SessionError::Unavailable);
        };
        let was_public = match &event {
            SessionEvent::Qa(e) => self
                .state
                .qa
                .questions
                .get(&question_of(e))
                .is_some_and(|q| public(q.status)),
            _ => true,
        };
        self.state.apply(offset, &event);
        let effect = match effect {
            Some(SideEffect::UpdateSession { .. }) => Some(SideEffect::UpdateSession {
                session: Box::new(self.row()),
            }),
            other => other,
        };
        let frames = self.frames(offset, &event, was_public);
        let body = match says {
            Says::Question(id) => self.question_body(id, Some(offset)),
            Says::Offset => Ok(serde_json::json!({ "offset": offset })),
            Says::Session(role) => self.describe(role),
        };
        let now = Utc::now();
        let fact = match &event {
            SessionEvent::Qa(QaEvent::QuestionAsked { question }) => {
                Some(self.activity(now, Some(by), "question", Some(question.id)))
            }
            SessionEvent::Qa(QaEvent::VoteSet { id, .. }) => {
                Some(self.activity(now, Some(by), "vote", Some(*id)))
            }
            SessionEvent::SessionStarted { .. } => {
                Some(self.activity(now, Some(by), "session_started", None))
            }
            SessionEvent::SessionEnded { .. } => {
                Some(self.activity(now, Some(by), "session_ended", None))
            }
            _ => None,
        };
        let restaffed = match &event {
            SessionEvent::StaffSet { user, .. } | SessionEvent::StaffRemoved { user } => {
                Some(*user)
            }
            _ => None,
        };
        let release: Release<Room> = Box::new(
            move |room: &mut Room, core: &mut Core<Room>, outcome: Outcome| match outcome {
                Ok(offset) => {
                    match frames {
                        Some(frames) => room.publish(core, offset, frames),
                        // No frame for anyone (none today): the tails still move past it.
                        None => {
                            room.staff_tail.skip(offset);
                            room.public_tail.skip(offset);
                        }
                    }
                    if let Some(user) = restaffed {
                        room.regroup(user);
                    }
                    if let Some(f) = fact {
                        room.fact(f);
                    }
                    answer.send(body);
                }
                Err(_) => answer.err(SessionError::Unavailable),
            },
        );
        if let Err(release) = core
            .commit(offset, json, effect.into_iter().collect(), release)
            .await
        {
            release(self, core, Err(Refused));
        }
    }

    /// Each audience's frame of an event just applied: the staff's, the attendees' (none when
    /// they may not see it), and its class.
    pub(super) fn frames(
        &self,
        offset: u64,
        event: &SessionEvent,
        was_public: bool,
    ) -> Option<Frames> {
        let session_id = self.state.id;
        Some(match event {
            SessionEvent::Qa(QaEvent::QuestionDeleted { id }) => {
                let f = WireFrame::text(
                    SessionFrame::QuestionDeleted {
                        session_id,
                        offset,
                        question_id: *id,
                    }
                    .to_json(),
                );
                Frames {
                    staff: f.clone(),
                    public: was_public.then_some(f),
                    class: Class::MustDeliver,
                    votes: None,
                }
            }
            SessionEvent::Qa(e) => {
                let id = question_of(e);
                let (change, class) = match e {
                    QaEvent::QuestionEdited { .. } => (Change::Edited, Class::MustDeliver),
                    // Coalesced at the source (see `publish`), not in members' outboxes: a frame
                    // with an offset must never overtake an older one.
                    QaEvent::VoteSet { .. } => (Change::Voted, Class::MustDeliver),
                    QaEvent::QuestionModerated { action, .. } => (
                        match action {
                            crate::session::qa::Moderation::Approve => Change::Approved,
                            crate::session::qa::Moderation::Dismiss => Change::Dismissed,
                            crate::session::qa::Moderation::Answer => Change::Answered,
                            crate::session::qa::Moderation::Pin => Change::Pinned,
                            crate::session::qa::Moderation::Unpin => Change::Unpinned,
                        },
                        Class::MustDeliver,
                    ),
                    _ => (Change::Asked, Class::MustDeliver),
                };
                let q = self.state.qa.questions.get(&id)?;
                let f = WireFrame::text(
                    SessionFrame::Question {
                        session_id,
                        offset,
                        change,
                        question: QuestionView::of(q),
                    }
                    .to_json(),
                );
                // A question attendees saw that they may no longer see (edited under moderation,
                // waiting for approval again): they are told it is hidden, not its new text.
                let public_frame = if public(q.status) {
                    Some(f.clone())
                } else if was_public && q.status == crate::session::qa::QuestionStatus::Pending {
                    Some(WireFrame::text(
                        SessionFrame::QuestionHidden {
                            session_id,
                            offset,
                            question_id: id,
                        }
                        .to_json(),
                    ))
                } else {
                    was_public.then(|| f.clone())
                };
                Frames {
                    staff: f,
                    public: public_frame,
                    class,
                    votes: matches!(change, Change::Voted).then_some(id),
                }
            }
            other => {
                let frame = match other {
                    SessionEvent::SessionUpdated { .. } => SessionFrame::SessionUpdated {
                        session_id,
                        offset,
                        session: SessionView::of(&self.state),
                    },
                    SessionEvent::SessionStarted { at } => SessionFrame::SessionStarted {
                        session_id,
                        offset,
                        at: *at,
                    },
                    SessionEvent::SessionEnded { at } => SessionFrame::SessionEnded {
                        session_id,
                        offset,
                        at: *at,
                    },
                    SessionEvent::StaffSet { user, role } => SessionFrame::StaffChanged {
                        session_id,
                        offset,
                        user_id: *user,
                        role: Some(*role),
                    },
                    SessionEvent::StaffRemoved { user } => SessionFrame::StaffChanged {
                        session_id,
                        offset,
                        user_id: *user,
                        role: None,
                    },
                    SessionEvent::Qa(_) => return None,
                };
                let f = WireFrame::text(frame.to_json());
                Frames {
                    staff: f.clone(),
                    public: Some(f),
                    class: Class::MustDeliver,
                    votes: None,
                }
            }
        })
    }

    /// Records a committed event's frames in each audience's tail and fans them out.
    ///
    /// New vote totals are fanned out coalesced: the latest frame of each question waits up to
    /// [`VOTE_FLUSH`] (a vote storm would otherwise write every total to every member, which is
    /// what limited a session of 1 000 voters); anything else goes out at once, after the totals
    /// still waiting, so every member sees the frames in offset order. The tails keep every step
    /// for replay.
    pub(super) fn publish(&mut self, core: &mut Core<Room>, offset: u64, frames: Frames) {
        self.staff_tail.record(offset, frames.staff.clone());
        match &frames.public {
            Some(f) => self.public_tail.record(offset, f.clone()),
            None => self.public_tail.skip(offset),
        }
        if let Some(question) = frames.votes {
            self.pending_votes.insert(question, (offset, frames));
            if !self.flush_scheduled {
                self.flush_scheduled = true;
                core.depth
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                core.myself
                    .send_after(VOTE_FLUSH, || RoomMsg::Kind(SessionMsg::FlushVotes));
            }
            return;
        }
        self.flush_votes();
        self.fan(true, &frames.staff, frames.class);
        if let Some(f) = &frames.public {
            self.fan(false, f, frames.class);
        }
    }

    /// Fans out the vote totals waiting, oldest first.
    pub(super) fn flush_votes(&mut self) {
        self.flush_scheduled = false;
        if self.pending_votes.is_empty() {
            return;
        }
        let mut waiting: Vec<(u64, Frames)> = self.pending_votes.drain().map(|(_, v)| v).collect();
        waiting.sort_by_key(|(offset, _)| *offset);
        for (_, f) in waiting {
            self.fan(true, &f.staff, f.class);
            if let Some(p) = &f.public {
                self.fan(false, p, f.class);
            }
        }
    }
}
