//! One presenter ↔ attendee pair, from the guest's REST join to the first data-channel message.
//!
//! 1. The guest joins over REST (`POST /sessions/{id}/join`), opens its own WebSocket and sends
//!    `join_session`; the clock starts at that ack.
//! 2. The presenter's connection sees `peer_joined` for the guest; the presenter's peer for this
//!    pair (a new peer connection per attendee) creates a data channel and offers.
//! 3. The guest answers; both trickle their candidates and then the end of candidates, all
//!    through `signal`. Each side numbers what it receives from the other and counts gaps.
//! 4. The presenter's channel opens and sends one message; the clock stops when the guest's side
//!    receives it.
//!
//! Both sides are driven by one task: [`Side`] is either side's state, fed by its peer
//! connection's events and by the signals its hub connection routes to it.

use std::time::{Duration, Instant};

use ::webrtc::peer_connection::{RTCIceCandidateInit, RTCSessionDescription};
use serde::{Deserialize, Serialize};
use signaling::client::ClientMsg;
use signaling::conference::{JoinSession, Signal, SignalBody};
use signaling::{AttendeeId, SessionId};
use tokio::sync::mpsc;

use super::conn::{FromHub, HubConn};
use super::peer::{Peer, PeerEvent};
use crate::rest::Api;
use crate::ws::Dialer;

/// Longest one pair may take from its REST join to the message.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// What the presenter sends on each channel.
const GREETING: &str = "hello from the presenter";

/// What every pair shares.
pub struct PairCtx {
    /// The REST client.
    pub api: Api,
    /// Opens the guests' connections.
    pub dialer: Dialer,
    /// The session.
    pub session: SessionId,
    /// The presenter's connection, shared by every pair.
    pub presenter: HubConn,
    /// The presenter's peer id.
    pub presenter_peer: AttendeeId,
}

/// Why a pair did not get its message: the step and what went wrong. Displayed as the key
/// failures are counted under, so nothing that varies per pair goes in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairError {
    /// `guest_join`, `connect`, `join_session`, `peer_joined`, `peer`, `signal`, `timeout`...
    pub step: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

fn fail(step: &'static str, detail: impl std::fmt::Display) -> PairError {
    PairError {
        step,
        detail: detail.to_string(),
    }
}

/// What a pair that got its message measured, and what it keeps open until the run ends.
pub struct PairDone {
    /// From the guest's `join_session` ack to the message.
    pub join_to_message: Duration,
    /// From the presenter starting its offer to the message.
    pub offer_to_message: Duration,
    /// From the presenter starting its offer to the guest's answer arriving: two relays
    /// through the hub and the guest's work on the offer, the signaling's share of the setup.
    pub offer_to_answer: Duration,
    /// Signals both sides received.
    pub signals: u64,
    /// Gaps in the `seq` numbers received, both sides together (should be 0).
    pub seq_gaps: u64,
    /// The guest's `rate_limited` refusals (the presenter's are counted on its connection).
    pub rate_limited: u64,
    /// The peer connections and the guest's connection, kept open while the other pairs
    /// negotiate, as in a real session.
    pub kept: Kept,
}

/// What a finished pair keeps open.
pub struct Kept {
    peers: [Peer; 2],
    guest: HubConn,
}

impl Kept {
    /// Closes the peer connections and the guest's connection.
    pub async fn close(self) {
        for peer in self.peers {
            peer.close().await;
        }
        self.guest.close().await;
    }
}

#[derive(Serialize)]
struct GuestJoinBody<'a> {
    display_name: &'a str,
}

#[derive(Deserialize)]
struct GuestJoined {
    attendee_id: AttendeeId,
    token: String,
}

/// Runs pair `i` (1-based: the presenter's connection is 0).
///
/// # Errors
/// The step that failed.
pub async fn run(ctx: &PairCtx, i: usize) -> Result<PairDone, PairError> {
    let deadline = tokio::time::Instant::now() + PAIR_TIMEOUT;
    let late = || fail("timeout", format!("no message within {PAIR_TIMEOUT:?}"));
    let guest = tokio::time::timeout_at(deadline, guest_join(ctx, i))
        .await
        .map_err(|_| late())??;
    let from_guest = ctx.presenter.route(guest.attendee_id);
    let result = tokio::time::timeout_at(deadline, negotiate(ctx, i, &guest, from_guest))
        .await
        .unwrap_or_else(|_| Err(late()));
    ctx.presenter.unroute(guest.attendee_id);
    result
}

/// `POST /sessions/{id}/join` as guest `i`.
async fn guest_join(ctx: &PairCtx, i: usize) -> Result<GuestJoined, PairError> {
    let name = format!("lt guest {i}");
    let path = format!("/api/v1/sessions/{}/join", ctx.session);
    let body = GuestJoinBody {
        display_name: &name,
    };
    ctx.api
        .post(&path, None, &body)
        .await
        .map_err(|e| fail("guest_join", e))
}

async fn negotiate(
    ctx: &PairCtx,
    i: usize,
    guest: &GuestJoined,
    mut from_guest: mpsc::UnboundedReceiver<FromHub>,
) -> Result<PairDone, PairError> {
    let (socket, limits) = ctx
        .dialer
        .open_bare(&guest.token, i)
        .await
        .map_err(|e| fail("connect", e))?;
    let guest_conn = HubConn::start(socket, limits);
    let from_presenter = guest_conn.route(ctx.presenter_peer);
    let join = ClientMsg::JoinSession(JoinSession {
        session_id: ctx.session,
        last_offset: None,
    });
    guest_conn
        .request(&join)
        .await
        .map_err(|e| fail("join_session", e))?;
    let joined_at = Instant::now();
    loop {
        match from_guest.recv().await {
            Some(FromHub::Joined) => break,
            Some(FromHub::Signal { .. }) => {}
            None => return Err(fail("peer_joined", "the presenter's connection ended")),
        }
    }

    let new_peer = || async { Peer::new().await.map_err(|e| fail("peer", e)) };
    let mut presenter = Side::new(&ctx.presenter, ctx, guest.attendee_id, new_peer().await?);
    presenter.says = Some(GREETING);
    presenter.from_hub = Some(from_guest);
    let mut attendee = Side::new(&guest_conn, ctx, ctx.presenter_peer, new_peer().await?);
    attendee.from_hub = Some(from_presenter);

    let offered_at = Instant::now();
    presenter.offer().await?;
    while attendee.message.is_none() {
        tokio::select! {
            Some(e) = presenter.peer.events.recv() => presenter.on_local(e).await?,
            Some(e) = attendee.peer.events.recv() => attendee.on_local(e).await?,
            m = recv(&mut presenter.from_hub) => presenter.on_hub(m).await?,
            m = recv(&mut attendee.from_hub) => attendee.on_hub(m).await?,
        }
    }
    let Some((received_at, text)) = attendee.message.take() else {
        return Err(fail("data_channel", "no message"));
    };
    if text != GREETING {
        return Err(fail("data_channel", "the message arrived changed"));
    }
    let Some(answered_at) = presenter.answered_at else {
        return Err(fail("answer", "a message without an answer"));
    };
    Ok(PairDone {
        join_to_message: received_at.duration_since(joined_at),
        offer_to_message: received_at.duration_since(offered_at),
        offer_to_answer: answered_at.duration_since(offered_at),
        signals: presenter.received + attendee.received,
        seq_gaps: presenter.gaps + attendee.gaps,
        rate_limited: guest_conn.rate_limited(),
        kept: Kept {
            peers: [presenter.peer, attendee.peer],
            guest: guest_conn,
        },
    })
}

/// The next frame routed to a side; `None` once its connection ended.
async fn recv(from_hub: &mut Option<mpsc::UnboundedReceiver<FromHub>>) -> Option<FromHub> {
    match from_hub {
        Some(rx) => rx.recv().await,
        None => None,
    }
}

/// One side of a pair.
struct Side<'a> {
    conn: &'a HubConn,
    session: SessionId,
    /// The other side's peer id.
    to: AttendeeId,
    peer: Peer,
    from_hub: Option<mpsc::UnboundedReceiver<FromHub>>,
    /// What this side sends when a data channel opens.
    says: Option<&'static str>,
    /// Remote candidates that came before the remote description.
    early: Vec<RTCIceCandidateInit>,
    last_seq: u64,
    received: u64,
    gaps: u64,
    /// The first data-channel message and when it arrived.
    message: Option<(Instant, String)>,
    /// When the answer arrived (the offering side).
    answered_at: Option<Instant>,
}

impl<'a> Side<'a> {
    fn new(conn: &'a HubConn, ctx: &PairCtx, to: AttendeeId, peer: Peer) -> Side<'a> {
        Side {
            conn,
            session: ctx.session,
            to,
            peer,
            from_hub: None,
            says: None,
            early: Vec::new(),
            last_seq: 0,
            received: 0,
            gaps: 0,
            message: None,
            answered_at: None,
        }
    }

    async fn send(&self, signal: SignalBody) -> Result<(), PairError> {
        let msg = ClientMsg::Signal(Signal {
            session_id: self.session,
            to: self.to,
            signal,
        });
        self.conn
            .request(&msg)
            .await
            .map(|_| ())
            .map_err(|e| fail("signal", e))
    }

    /// Creates a data channel and offers.
    async fn offer(&self) -> Result<(), PairError> {
        let sdp = |e| fail("offer", e);
        self.peer.data_channel("lt").await.map_err(sdp)?;
        let offer = self.peer.pc.create_offer(None).await.map_err(sdp)?;
        self.peer
            .pc
            .set_local_description(offer.clone())
            .await
            .map_err(sdp)?;
        self.send(SignalBody::Offer {
            sdp: offer.sdp,
            streams: Vec::new(),
            ice_restart: false,
        })
        .await
    }

    async fn on_local(&mut self, event: PeerEvent) -> Result<(), PairError> {
        match event {
            PeerEvent::Candidate(c) => {
                self.send(SignalBody::Candidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_m_line_index: c.sdp_mline_index,
                })
                .await
            }
            PeerEvent::Gathered => {
                self.send(SignalBody::Candidate {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_m_line_index: None,
                })
                .await
            }
            PeerEvent::Open(dc) => match self.says {
                Some(text) => dc
                    .send_text(text)
                    .await
                    .map_err(|e| fail("data_channel", e)),
                None => Ok(()),
            },
            PeerEvent::Message(text) => {
                self.message.get_or_insert((Instant::now(), text));
                Ok(())
            }
            PeerEvent::Failed(why) => Err(fail("peer", why)),
        }
    }

    async fn on_hub(&mut self, msg: Option<FromHub>) -> Result<(), PairError> {
        let (seq, body) = match msg {
            None => return Err(fail("connection", "lost")),
            Some(FromHub::Joined) => return Ok(()),
            Some(FromHub::Signal { seq, body }) => (seq, body),
        };
        if seq != self.last_seq + 1 {
            self.gaps += 1;
        }
        self.last_seq = seq;
        self.received += 1;
        let remote = |e| fail("remote_description", e);
        match body {
            SignalBody::Offer { sdp, .. } => {
                let offer = RTCSessionDescription::offer(sdp).map_err(remote)?;
                self.peer
                    .pc
                    .set_remote_description(offer)
                    .await
                    .map_err(remote)?;
                self.add_early().await?;
                let answer = self.peer.pc.create_answer(None).await.map_err(remote)?;
                self.peer
                    .pc
                    .set_local_description(answer.clone())
                    .await
                    .map_err(remote)?;
                self.send(SignalBody::Answer { sdp: answer.sdp }).await
            }
            SignalBody::Answer { sdp } => {
                self.answered_at.get_or_insert_with(Instant::now);
                let answer = RTCSessionDescription::answer(sdp).map_err(remote)?;
                self.peer
                    .pc
                    .set_remote_description(answer)
                    .await
                    .map_err(remote)?;
                self.add_early().await
            }
            SignalBody::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                if candidate.is_empty() {
                    return Ok(());
                }
                let init = RTCIceCandidateInit {
                    candidate,
                    sdp_mid,
                    sdp_mline_index: sdp_m_line_index,
                    ..RTCIceCandidateInit::default()
                };
                if self.peer.pc.remote_description().await.is_none() {
                    self.early.push(init);
                    return Ok(());
                }
                self.peer
                    .pc
                    .add_ice_candidate(init)
                    .await
                    .map_err(|e| fail("remote_candidate", e))
            }
        }
    }

    async fn add_early(&mut self) -> Result<(), PairError> {
        for init in std::mem::take(&mut self.early) {
            self.peer
                .pc
                .add_ice_candidate(init)
                .await
                .map_err(|e| fail("remote_candidate", e))?;
        }
        Ok(())
    }
}
