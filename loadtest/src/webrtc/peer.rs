//! One real WebRTC peer connection (the `webrtc` crate) on loopback, whose events come out of a
//! queue: the connection's driver calls the handler, which must not block, so every callback
//! only pushes onto an unbounded channel that the pair's task reads (`pair.rs`).

use std::sync::Arc;

use ::webrtc::data_channel::{DataChannel, DataChannelEvent};
use ::webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};
use tokio::sync::mpsc;

/// The address the peers bind: loopback only, one ephemeral UDP port each.
const UDP_ADDR: &str = "127.0.0.1:0";

/// What a peer connection tells its pair's task.
pub enum PeerEvent {
    /// A local ICE candidate to trickle.
    Candidate(RTCIceCandidateInit),
    /// Gathering is over: time to send the end of candidates.
    Gathered,
    /// A data channel opened (the offerer's own, or the one the remote side created).
    Open(Arc<dyn DataChannel>),
    /// A text message arrived on a data channel.
    Message(String),
    /// The connection failed.
    Failed(&'static str),
}

/// Forwards the connection's events without blocking its driver.
struct Events {
    tx: mpsc::UnboundedSender<PeerEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let msg = match event.candidate.to_json() {
            Ok(init) => PeerEvent::Candidate(init),
            Err(_) => PeerEvent::Failed("local candidate"),
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
            let _ = self.tx.send(PeerEvent::Failed("connection failed"));
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        tokio::spawn(watch_channel(dc, self.tx.clone()));
    }
}

/// Reports a channel's opening and its messages until it closes.
pub async fn watch_channel(dc: Arc<dyn DataChannel>, tx: mpsc::UnboundedSender<PeerEvent>) {
    while let Some(event) = dc.poll().await {
        let msg = match event {
            DataChannelEvent::OnOpen => PeerEvent::Open(Arc::clone(&dc)),
            DataChannelEvent::OnMessage(m) => {
                PeerEvent::Message(String::from_utf8_lossy(&m.data).into_owned())
            }
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        if tx.send(msg).is_err() {
            break;
        }
    }
}

/// A peer connection and the queue of its events.
pub struct Peer {
    /// The connection.
    pub pc: Arc<dyn PeerConnection>,
    /// Its events.
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    /// For the peer's own data channel, which reports through the same queue.
    pub tx: mpsc::UnboundedSender<PeerEvent>,
    closed: bool,
}

impl Peer {
    /// A new connection on loopback.
    ///
    /// # Errors
    /// When the crate cannot build it (no UDP socket, no crypto provider).
    pub async fn new() -> ::webrtc::error::Result<Peer> {
        let (tx, events) = mpsc::unbounded_channel();
        let pc = PeerConnectionBuilder::new()
            .with_handler(Arc::new(Events { tx: tx.clone() }))
            .with_udp_addrs(vec![UDP_ADDR])
            .build()
            .await?;
        Ok(Peer {
            pc: Arc::new(pc),
            events,
            tx,
            closed: false,
        })
    }

    /// Closes the connection (its sockets and its driver task).
    pub async fn close(mut self) {
        self.closed = true;
        let _ = self.pc.close().await;
    }

    /// Creates a data channel whose events join the connection's.
    ///
    /// # Errors
    /// When the connection is closed.
    pub async fn data_channel(&self, label: &str) -> ::webrtc::error::Result<()> {
        let dc = self.pc.create_data_channel(label, None).await?;
        tokio::spawn(watch_channel(dc, self.tx.clone()));
        Ok(())
    }
}

impl Drop for Peer {
    /// A connection dropped without `close` (a pair that failed or ran out of time) would keep
    /// its driver task and its UDP socket running on the runtime: close it in the background.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.pc);
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}
