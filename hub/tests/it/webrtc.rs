//! Real WebRTC peers (the `webrtc` crate, on loopback) negotiating through a conference
//! session's signaling: the presenter offers with a data channel, the guest answers, both trickle
//! ICE candidates through `signal`, and the data channel carries a message each way. The hub only
//! relays, checks and numbers the signals; media (here the data channel) flows peer to peer.
//!
//! Only on SQLite: storage is barely touched (a session, a guest), and a second run on PostgreSQL
//! would double a slow test (two DTLS handshakes) without covering anything more.

use std::sync::Arc;
use std::time::Duration;

use ::webrtc::data_channel::{DataChannel, DataChannelEvent};
use ::webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{Backend, Client, TestHub};

/// Longest the whole negotiation may take, from the offer to both messages received and both
/// sides' candidates ended (it takes well under a second on loopback).
const NEGOTIATION: Duration = Duration::from_secs(20);
const PRESENTER_SAYS: &str = "hello from the presenter";
const GUEST_SAYS: &str = "hello from the guest";

/// What a peer connection tells its side.
enum PeerEvent {
    /// A local ICE candidate to trickle.
    Candidate(RTCIceCandidateInit),
    /// Gathering is over: time to send the end of candidates.
    Gathered,
    /// A text message arrived on the data channel.
    Message(String),
    /// The connection failed, or the data channel could not send.
    Failed(String),
}

/// Forwards the peer connection's events to its side without blocking the connection's driver.
struct Events {
    tx: mpsc::UnboundedSender<PeerEvent>,
    /// What this side sends once a data channel opens.
    says: &'static str,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let msg = match event.candidate.to_json() {
            Ok(init) => PeerEvent::Candidate(init),
            Err(e) => PeerEvent::Failed(format!("candidate to JSON: {e}")),
        };
        let _ = self.tx.send(msg);
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.tx.send(PeerEvent::Gathered);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Failed {
            let _ = self.tx.send(PeerEvent::Failed("connection failed".into()));
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        tokio::spawn(watch_channel(dc, self.says, self.tx.clone()));
    }
}

/// Sends `says` when the channel opens and passes on what arrives.
async fn watch_channel(
    dc: Arc<dyn DataChannel>,
    says: &'static str,
    tx: mpsc::UnboundedSender<PeerEvent>,
) {
    while let Some(event) = dc.poll().await {
        match event {
            DataChannelEvent::OnOpen => {
                if let Err(e) = dc.send_text(says).await {
                    let _ = tx.send(PeerEvent::Failed(format!("send on open: {e}")));
                }
            }
            DataChannelEvent::OnMessage(m) => {
                let text = String::from_utf8_lossy(&m.data).into_owned();
                let _ = tx.send(PeerEvent::Message(text));
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
}

/// A peer connection on loopback and the queue its events come out of.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    /// For this side's own data channel, which reports through the same queue.
    tx: mpsc::UnboundedSender<PeerEvent>,
    says: &'static str,
}

async fn peer(says: &'static str) -> Peer {
    let (tx, events) = mpsc::unbounded_channel();
    let handler = Events {
        tx: tx.clone(),
        says,
    };
    let pc = PeerConnectionBuilder::new()
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .expect("peer connection");
    Peer {
        pc: Arc::new(pc),
        events,
        tx,
        says,
    }
}

/// One side of the pair: its WebSocket to the hub, its peer connection, and what it saw.
struct Side {
    client: Client,
    session: String,
    /// The other side's peer id.
    other: String,
    peer: Peer,
    /// Remote candidates that came before the remote description.
    early: Vec<RTCIceCandidateInit>,
    /// `seq` of every signal received, in order of arrival.
    seen: Vec<u64>,
    /// `kind` of every signal received.
    kinds: Vec<String>,
    /// `seq` of the acks of the signals this side sent.
    acked: Vec<u64>,
    message: Option<String>,
    sent_end: bool,
    got_end: bool,
}

impl Side {
    fn new(client: Client, session: &str, other: &str, peer: Peer) -> Side {
        Side {
            client,
            session: session.to_owned(),
            other: other.to_owned(),
            peer,
            early: Vec::new(),
            seen: Vec::new(),
            kinds: Vec::new(),
            acked: Vec::new(),
            message: None,
            sent_end: false,
            got_end: false,
        }
    }

    /// Done once the other side's message arrived and both sides ended their candidates (so
    /// that every signal either side sent has been received).
    fn done(&self) -> bool {
        self.message.is_some() && self.sent_end && self.got_end
    }

    /// Sends a signal to the other side; asserts it was relayed at once and keeps its `seq`.
    async fn send(&mut self, signal: Value) {
        let ack = self
            .client
            .ok(
                json!({"type": "signal", "session_id": self.session, "to": self.other,
                       "signal": signal}),
            )
            .await;
        assert_eq!(ack["held"], false, "the other side is present: {ack}");
        self.acked
            .push(ack["seq"].as_u64().expect("seq in the ack"));
    }

    /// Creates the offer (with a data channel) and sends it.
    async fn offer(&mut self) {
        let dc = self
            .peer
            .pc
            .create_data_channel("chat", None)
            .await
            .expect("data channel");
        tokio::spawn(watch_channel(dc, self.peer.says, self.peer.tx.clone()));
        let offer = self.peer.pc.create_offer(None).await.expect("offer");
        self.peer
            .pc
            .set_local_description(offer.clone())
            .await
            .expect("local offer");
        self.send(json!({"kind": "offer", "sdp": offer.sdp})).await;
    }

    /// Runs until [`Side::done`].
    async fn run(mut self) -> Side {
        while !self.done() {
            tokio::select! {
                event = self.peer.events.recv() => self.on_local(event.expect("peer events")).await,
                frame = self.client.next_where(|v| v["type"] == "signal") => {
                    self.on_signal(&frame).await;
                }
            }
        }
        self
    }

    async fn on_local(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Candidate(c) => {
                self.send(json!({"kind": "candidate", "candidate": c.candidate,
                                 "sdp_mid": c.sdp_mid, "sdp_m_line_index": c.sdp_mline_index}))
                    .await;
            }
            PeerEvent::Gathered => {
                self.send(json!({"kind": "candidate", "candidate": ""}))
                    .await;
                self.sent_end = true;
            }
            PeerEvent::Message(text) => self.message = Some(text),
            PeerEvent::Failed(why) => panic!("peer connection: {why}"),
        }
    }

    async fn on_signal(&mut self, frame: &Value) {
        assert_eq!(frame["session_id"], json!(self.session), "{frame}");
        assert_eq!(frame["from"], json!(self.other), "{frame}");
        self.seen.push(frame["seq"].as_u64().expect("seq"));
        let signal = &frame["signal"];
        let kind = signal["kind"].as_str().expect("kind");
        self.kinds.push(kind.to_owned());
        let sdp = || signal["sdp"].as_str().expect("sdp").to_owned();
        match kind {
            "offer" => {
                let offer = RTCSessionDescription::offer(sdp()).expect("offer parses");
                self.peer
                    .pc
                    .set_remote_description(offer)
                    .await
                    .expect("remote offer");
                self.add_early().await;
                let answer = self.peer.pc.create_answer(None).await.expect("answer");
                self.peer
                    .pc
                    .set_local_description(answer.clone())
                    .await
                    .expect("local answer");
                self.send(json!({"kind": "answer", "sdp": answer.sdp}))
                    .await;
            }
            "answer" => {
                let answer = RTCSessionDescription::answer(sdp()).expect("answer parses");
                self.peer
                    .pc
                    .set_remote_description(answer)
                    .await
                    .expect("remote answer");
                self.add_early().await;
            }
            "candidate" => {
                let candidate = signal["candidate"].as_str().expect("candidate");
                if candidate.is_empty() {
                    self.got_end = true;
                    return;
                }
                let init = RTCIceCandidateInit {
                    candidate: candidate.to_owned(),
                    sdp_mid: signal["sdp_mid"].as_str().map(str::to_owned),
                    sdp_mline_index: signal["sdp_m_line_index"]
                        .as_u64()
                        .map(|i| u16::try_from(i).expect("m-line index")),
                    ..RTCIceCandidateInit::default()
                };
                if self.peer.pc.remote_description().await.is_none() {
                    self.early.push(init);
                } else {
                    self.peer
                        .pc
                        .add_ice_candidate(init)
                        .await
                        .expect("remote candidate");
                }
            }
            other => panic!("unexpected signal kind {other}: {frame}"),
        }
    }

    async fn add_early(&mut self) {
        for init in std::mem::take(&mut self.early) {
            self.peer
                .pc
                .add_ice_candidate(init)
                .await
                .expect("remote candidate");
        }
    }
}

/// 1, 2, ..., n.
fn one_to(n: usize) -> Vec<u64> {
    (1..=n as u64).collect()
}

/// A live session with the presenter Ada and the guest Gus both joined: the hub, their
/// connections, the session id and their peer ids.
async fn live_session() -> (TestHub, Client, Client, String, String, String) {
    let hub = TestHub::start(Backend::Sqlite).await;
    let api = hub.api();
    let ada = api.register("ada").await;
    let (status, session) = api
        .post(
            "/api/v1/sessions",
            Some(&ada.token),
            json!({"title": "Launch"}),
        )
        .await;
    assert_eq!(status, 201, "create session: {session}");
    let sid = session["id"].as_str().expect("session id").to_owned();
    let (status, body) = api
        .post(
            &format!("/api/v1/sessions/{sid}/start"),
            Some(&ada.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "start: {body}");
    let (status, guest) = api
        .post(
            &format!("/api/v1/sessions/{sid}/join"),
            None,
            json!({"display_name": "Gus"}),
        )
        .await;
    assert_eq!(status, 201, "guest join: {guest}");
    let gus_id = guest["attendee_id"]
        .as_str()
        .expect("attendee id")
        .to_owned();

    let mut a = hub.ws(&ada).await;
    let joined = a
        .ok(json!({"type": "join_session", "session_id": sid}))
        .await;
    let ada_peer = joined["peer_id"].as_str().expect("peer id").to_owned();
    let mut g = Client::connect(&hub.base, guest["token"].as_str().expect("token")).await;
    let joined = g
        .ok(json!({"type": "join_session", "session_id": sid}))
        .await;
    assert_eq!(joined["peer_id"], json!(gus_id));
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": ada_peer, "name": "ada", "role": "presenter", "polite": true}]),
        "the guest negotiates with the presenter and is the polite side"
    );
    let announced = a
        .next_where(|v| v["type"] == "peer_joined" && v["peer_id"] == json!(gus_id))
        .await;
    assert_eq!(
        (announced["role"].as_str(), announced["polite"].as_bool()),
        (Some("attendee"), Some(false)),
        "the presenter is the impolite side: {announced}"
    );
    (hub, a, g, sid, ada_peer, gus_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presenter_and_guest_peers_connect_through_the_hub_and_exchange_data_channel_messages() {
    let (_hub, a, g, sid, ada_peer, gus_id) = live_session().await;
    let mut presenter = Side::new(a, &sid, &gus_id, peer(PRESENTER_SAYS).await);
    let guest = Side::new(g, &sid, &ada_peer, peer(GUEST_SAYS).await);
    let (presenter, guest) = tokio::time::timeout(NEGOTIATION, async {
        presenter.offer().await;
        tokio::join!(presenter.run(), guest.run())
    })
    .await
    .expect("negotiated, both messages received and both candidate lists ended in time");

    assert_eq!(presenter.message.as_deref(), Some(GUEST_SAYS));
    assert_eq!(guest.message.as_deref(), Some(PRESENTER_SAYS));
    assert_eq!(guest.kinds.first().map(String::as_str), Some("offer"));
    assert_eq!(presenter.kinds.first().map(String::as_str), Some("answer"));
    for (receiver, sender, who) in [
        (&guest, &presenter, "presenter -> guest"),
        (&presenter, &guest, "guest -> presenter"),
    ] {
        assert!(
            receiver.kinds.iter().filter(|k| *k == "candidate").count() >= 2,
            "{who}: at least one candidate and the end of candidates: {:?}",
            receiver.kinds
        );
        assert_eq!(
            receiver.seen,
            one_to(receiver.seen.len()),
            "{who}: 1, 2, 3... no gap"
        );
        assert_eq!(
            receiver.seen, sender.acked,
            "{who}: every acked signal arrived once"
        );
    }
    for side in [presenter, guest] {
        side.peer.pc.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_offer_from_the_webrtc_crate_passes_the_hubs_checks_and_arrives_verbatim() {
    let (_hub, mut a, mut g, sid, ada_peer, gus_id) = live_session().await;
    let mut media = MediaEngine::default();
    media.register_default_codecs().expect("codecs");
    let (tx, _events) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_handler(Arc::new(Events { tx, says: "" }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .expect("peer connection");
    for kind in ["audio", "video", "video"] {
        pc.add_transceiver_from_kind(kind.into(), None)
            .await
            .expect("transceiver");
    }
    pc.create_data_channel("chat", None)
        .await
        .expect("data channel");
    let offer = pc.create_offer(None).await.expect("offer");
    assert!(
        offer.sdp.contains("m=video") && offer.sdp.contains("m=audio"),
        "{}",
        offer.sdp
    );
    let signal = json!({"kind": "offer", "sdp": offer.sdp,
                        "streams": [{"id": "cam-1", "kind": "camera"},
                                    {"id": "screen-1", "kind": "screen"}]});
    let ack = a
        .ok(json!({"type": "signal", "session_id": sid, "to": gus_id, "signal": signal}))
        .await;
    assert_eq!(ack, json!({"seq": 1, "held": false}));
    let got = g.next_of("signal").await;
    assert_eq!(
        got,
        json!({"type": "signal", "session_id": sid, "from": ada_peer, "seq": 1, "signal": signal})
    );
    pc.close().await.expect("close");
}
