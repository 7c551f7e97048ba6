//! Who is in a session room and how frames reach them: joining (admission, replay or snapshot
//! by role), peers and their grace window, the signal relay, role changes, and the fan-out to
//! the staff and attendee audiences.

use super::*;

impl Room {
    /// `join_session`: admits the connection (capacity, not ended), brings it up to date from
    /// its audience's tail or with a snapshot, and acks with the peers it negotiates with.
    pub(super) async fn join(&mut self, reply: ReplyTo, after: Option<u64>) {
        // Totals still waiting go to the members first: the joiner's snapshot or replay already
        // holds them, and must not be followed by older ones.
        self.flush_votes();
        let member = reply.member();
        let conn = reply.conn().clone();
        let (attendee, user) = member.attendee_in(self.state.id);
        let role = self.state.role(user);
        let seated = self.peers.contains_key(&attendee);
        // A seat held for a peer away lets it back in when the room is full, not once the
        // session has ended.
        let present = if seated { 0 } else { self.present_attendees() };
        if let Err(e) = self.state.admit(role, present) {
            return reply.error(&e);
        }
        let name = match self.peers.get(&attendee) {
            Some(p) => p.name.clone(),
            None => match self.name_of(attendee, user).await {
                Ok(name) => name,
                Err(e) => return reply.error(&e),
            },
        };
        if conn.is_closed() {
            return;
        }
        let head = self.state.offset;
        let staff = role != SessionRole::Attendee;
        let already = self.is_joined(member.conn);
        // A role changed since the last join: what the client holds was filtered for the old one.
        let after = if self.resnapshot.remove(&attendee) {
            None
        } else {
            after
        };
        let (mode, replayed) = match after.filter(|&n| n <= head) {
            Some(n) => {
                let tail = if staff {
                    &self.staff_tail
                } else {
                    &self.public_tail
                };
                match tail.since(head, n, &conn) {
                    Some(frames) => {
                        let count = frames.len() as u64;
                        for f in frames {
                            conn.push(f, Class::MustDeliver);
                        }
                        (JoinMode::Replay, count)
                    }
                    None => self.send_snapshot(&conn, staff),
                }
            }
            None => self.send_snapshot(&conn, staff),
        };
        if !already {
            conn.mark_joined(self.key());
            lock(&self.roster).insert(conn.id(), conn.clone());
            if staff {
                self.staff.join(conn.clone());
            } else {
                self.audience.join(conn.clone());
            }
        }
        let new_peer = !seated;
        let peer = self.peers.entry(attendee).or_insert(Peer {
            name,
            role,
            conn_user: member.user,
            conns: 0,
            away_since: None,
            sampled: None,
            signals: Allowance::new(Instant::now()),
        });
        let back = peer.conns == 0;
        if !already {
            peer.conns += 1;
        }
        peer.away_since = None;
        let held = if back {
            self.relay.arrive(attendee)
        } else {
            Vec::new()
        };
        if new_peer {
            self.announce_peer(attendee);
            if role == SessionRole::Attendee {
                self.broadcast_count();
            }
            self.fact(SessionFact::Arrived(AttendeeRecord {
                id: attendee,
                session: self.state.id,
                user,
                display_name: self
                    .peers
                    .get(&attendee)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                email: None,
                joined_at: Utc::now(),
                left_at: None,
            }));
        }
        let peers = self.peers_for(attendee, role);
        let my_votes = self.state.qa.votes_of(attendee);
        reply.ack(Some(JoinedAck {
            session_id: self.state.id,
            offset: head,
            mode,
            replayed,
            role,
            peer_id: attendee,
            status: self.state.status,
            attendee_count: self.present_attendees(),
            peers,
            my_votes,
            screen_share: self.screen.clone(),
        }));
        for h in held {
            let frame = SessionFrame::Signal {
                session_id: self.state.id,
                from: h.from,
                seq: h.seq,
                signal: &h.signal,
            };
            conn.push(WireFrame::text(frame.to_json()), Class::MustDeliver);
        }
    }

    /// A registered user's account name, or a guest's display name from the join.
    pub(super) async fn name_of(
        &self,
        attendee: AttendeeId,
        user: Option<UserId>,
    ) -> Result<String, SessionError> {
        let store = &self.ctx.store;
        let unavailable = |e: persistence::StoreError| {
            tracing::error!(error = %e, "reading an attendee failed");
            SessionError::Unavailable
        };
        match user {
            Some(u) => Ok(store
                .user_by_id(u)
                .await
                .map_err(unavailable)?
                .map(|r| r.name)
                .unwrap_or_default()),
            None => store
                .attendee(attendee)
                .await
                .map_err(unavailable)?
                .filter(|a| a.session == self.state.id)
                .map(|a| a.display_name)
                .ok_or(SessionError::NotFound),
        }
    }

    pub(super) fn send_snapshot(&mut self, conn: &ConnHandle, staff: bool) -> (JoinMode, u64) {
        let state = &self.state;
        let role = if staff {
            SessionRole::Moderator
        } else {
            SessionRole::Attendee
        };
        let build = || {
            WireFrame::text(
                SessionFrame::SessionSnapshot {
                    session_id: state.id,
                    offset: state.offset,
                    session: SessionView::of(state),
                    questions: state
                        .qa
                        .ranked(role)
                        .into_iter()
                        .map(QuestionView::of)
                        .collect(),
                }
                .to_json(),
            )
        };
        let tail = if staff {
            &mut self.staff_tail
        } else {
            &mut self.public_tail
        };
        let frame = tail.snapshot(state.offset, build);
        conn.push(frame, Class::MustDeliver);
        (JoinMode::Snapshot, 0)
    }

    /// The peers `me` (with `role`) negotiates with: everyone for staff, the staff for
    /// attendees. Away peers are included (they are coming back).
    pub(super) fn peers_for(&self, me: AttendeeId, role: SessionRole) -> Vec<PeerView<'_>> {
        let mut list: Vec<PeerView<'_>> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                **id != me && (role != SessionRole::Attendee || p.role != SessionRole::Attendee)
            })
            .map(|(id, p)| PeerView {
                peer_id: *id,
                name: &p.name,
                role: p.role,
                polite: polite((me, role), (*id, p.role)),
            })
            .collect();
        list.sort_by_key(|p| p.peer_id.as_uuid());
        list
    }

    /// Tells the peers that negotiate with a new peer that it arrived: staff hear of everyone,
    /// attendees of staff only. Each gets its own `polite` side.
    pub(super) fn announce_peer(&mut self, id: AttendeeId) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        let (name, role) = (p.name.clone(), p.role);
        let targets: Vec<(AttendeeId, SessionRole)> = self
            .peers
            .iter()
            .filter(|(other, q)| {
                **other != id
                    && q.conns > 0
                    && (q.role != SessionRole::Attendee || role != SessionRole::Attendee)
            })
            .map(|(other, q)| (*other, q.role))
            .collect();
        for (other, other_role) in targets {
            let frame = SessionFrame::PeerJoined {
                session_id: self.state.id,
                peer: PeerView {
                    peer_id: id,
                    name: &name,
                    role,
                    polite: polite((other, other_role), (id, role)),
                },
            };
            self.send_peer(other, &WireFrame::text(frame.to_json()), Class::MustDeliver);
        }
    }

    /// A peer is gone for good: the others that knew of it are told once.
    pub(super) fn forget_peer(&mut self, id: AttendeeId) {
        let Some(p) = self.peers.remove(&id) else {
            return;
        };
        self.relay.leave(id);
        if self.screen.as_ref().is_some_and(|s| s.peer_id == id) {
            self.screen = None;
        }
        let frame = WireFrame::text(
            SessionFrame::PeerLeft {
                session_id: self.state.id,
                peer_id: id,
            }
            .to_json(),
        );
        if p.role == SessionRole::Attendee {
            self.send_staff(frame, Class::MustDeliver);
            self.broadcast_count();
        } else {
            self.send_all(&frame, Class::MustDeliver);
        }
        self.fact(SessionFact::Left {
            attendee: id,
            at: Utc::now(),
        });
    }

    pub(super) fn broadcast_count(&mut self) {
        let frame = SessionFrame::AttendeeCount {
            session_id: self.state.id,
            count: self.present_attendees(),
        };
        let key = self.conflation("count", 0);
        self.send_all(&WireFrame::text(frame.to_json()), Class::Conflatable(key));
    }

    /// Relays a checked signal to one peer (or holds it while that peer is away). At least one
    /// side of a pair is a presenter: attendees do not negotiate with each other.
    pub(super) fn signal(
        &mut self,
        from: AttendeeId,
        role: SessionRole,
        to: AttendeeId,
        signal: SignalBody,
    ) -> Result<(u64, bool), SessionError> {
        if self.state.status == signaling::session::SessionStatus::Ended {
            return Err(SessionError::Ended);
        }
        let bytes = match &signal {
            SignalBody::Offer { sdp, .. } | SignalBody::Answer { sdp } => {
                check_sdp(sdp)?;
                sdp.len()
            }
            SignalBody::Candidate { candidate, .. } => {
                if !candidate.is_empty() {
                    check_candidate(candidate)?;
                }
                candidate.len()
            }
        };
        let target_role = self
            .peers
            .get(&to)
            .map(|p| p.role)
            .ok_or(crate::session::signal::SignalError::UnknownPeer)?;
        if role != SessionRole::Presenter && target_role != SessionRole::Presenter {
            return Err(SessionError::Forbidden(
                "signals go between a presenter and another peer",
            ));
        }
        let now = Instant::now();
        // The connection's signal budget is sized for a presenter negotiating with a whole
        // room; anyone else signals one presenter at a time, and is held to much less (so that
        // attendees cannot flood a presenter's connection).
        if role != SessionRole::Presenter
            && let Some(p) = self.peers.get_mut(&from)
            && !p.signals.take(now)
        {
            return Err(SessionError::RateLimited);
        }
        match self.relay.send(from, to, signal, bytes, now)? {
            Relayed::Held(seq) => Ok((seq, true)),
            Relayed::Deliver(seq, signal) => {
                let frame = SessionFrame::Signal {
                    session_id: self.state.id,
                    from,
                    seq,
                    signal: &signal,
                };
                self.send_peer(to, &WireFrame::text(frame.to_json()), Class::MustDeliver);
                Ok((seq, false))
            }
        }
    }

    /// A user's staff role changed: their connections move to the audience of their new role
    /// and get a snapshot of what that role sees (a new moderator sees pending questions).
    pub(super) fn regroup(&mut self, user: UserId) {
        let role = self.state.role(Some(user));
        let attendee = AttendeeId::of_user(self.state.id, user);
        if let Some(p) = self.peers.get_mut(&attendee) {
            p.role = role;
        }
        // What they hold was filtered for the old role: their next join gets a snapshot.
        self.resnapshot.insert(attendee);
        // Their connections leave the room (the peer keeps its seat for the grace window) and
        // are told to join again; the join waits for the appends in flight, so what they then
        // see is committed, and seen with the new role.
        let conns: Vec<ConnId> = self
            .staff
            .conns_of(user)
            .into_iter()
            .chain(self.audience.conns_of(user))
            .collect();
        let frame = crate::room::resync_frame(self.key(), Some(self.state.offset));
        for id in conns {
            if let Some(conn) = self.conn(id).cloned() {
                conn.push(frame.clone(), Class::MustDeliver);
            }
            self.drop_conn(id, false);
        }
    }

    pub(super) fn send_all(&mut self, frame: &WireFrame, class: Class) {
        self.fan(true, frame, class);
        self.fan(false, frame, class);
    }

    pub(super) fn send_staff(&mut self, frame: WireFrame, class: Class) {
        self.fan(true, &frame, class);
    }

    /// Hands a frame to every connection of one peer.
    pub(super) fn send_peer(&mut self, peer: AttendeeId, frame: &WireFrame, class: Class) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let user = p.conn_user;
        let mut gone = Vec::new();
        for sessions in [&self.staff, &self.audience] {
            for id in sessions.conns_of(user) {
                if let Some(conn) = sessions.get(id) {
                    if conn.attendee_in(self.state.id).0 != peer {
                        continue;
                    }
                    if matches!(
                        conn.push(frame.clone(), class),
                        crate::conn::Delivery::Gone | crate::conn::Delivery::Evicted
                    ) {
                        gone.push(id);
                    }
                }
            }
        }
        for id in gone {
            self.drop_conn(id, false);
        }
    }

    pub(super) fn fan(&mut self, staff: bool, frame: &WireFrame, class: Class) {
        let sessions = if staff { &self.staff } else { &self.audience };
        let out = sessions.fan_out(frame, class, None);
        let metrics = &self.ctx.metrics;
        metrics.events_fanned_out.increment(out.queued);
        metrics.events_dropped.increment(out.dropped);
        metrics.events_conflated.increment(out.conflated);
        if !out.evicted.is_empty() {
            metrics.slow_consumers.increment(out.evicted.len() as u64);
            tracing::warn!(session = %self.state.id, count = out.evicted.len(), "closed slow consumers");
        }
        for id in out.evicted.into_iter().chain(out.gone) {
            self.drop_conn(id, false);
        }
    }

    /// Forgets a connection. When it was its peer's last, the peer is away (a disconnect: it
    /// may come back within the grace window) or gone (`left`: it said so).
    pub(super) fn drop_conn(&mut self, id: ConnId, left: bool) {
        lock(&self.roster).remove(&id);
        let Some(conn) = self.conn(id).cloned() else {
            return;
        };
        conn.mark_left(self.key());
        self.staff.leave(id);
        self.audience.leave(id);
        let attendee = conn.attendee_in(self.state.id).0;
        let Some(peer) = self.peers.get_mut(&attendee) else {
            return;
        };
        peer.conns = peer.conns.saturating_sub(1);
        if peer.conns > 0 {
            return;
        }
        if left {
            self.forget_peer(attendee);
        } else {
            let now = Instant::now();
            peer.away_since = Some(now);
            self.relay.away(attendee, now);
        }
    }
}
