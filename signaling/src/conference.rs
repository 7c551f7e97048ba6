//! What a client sends in a conference session: join and leave, questions and votes, WebRTC
//! signals, connection-quality reports. Each command names its session; [`crate::client::decode`]
//! parses these and checks what can be checked without the room (sizes, ranges).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{AttendeeId, SessionId};
use crate::session::{Moderation, Vote};

/// Most labeled streams one offer may describe.
pub const MAX_STREAMS: usize = 8;
/// Longest stream id (an SDP `msid` stream id), in bytes.
pub const MAX_STREAM_ID_BYTES: usize = 64;
/// Longest `sdp_mid`, in bytes.
pub const MAX_MID_BYTES: usize = 32;
/// The highest round-trip time a quality report may carry, in milliseconds.
pub const MAX_RTT_MS: u32 = 60_000;
/// The highest bitrate a quality report or bandwidth hint may carry, in kbit/s.
pub const MAX_BITRATE_KBPS: u32 = 1_000_000;

/// `join_session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinSession {
    /// The session.
    pub session_id: SessionId,
    /// The offset of the last session event this client has; absent for a fresh state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offset: Option<u64>,
}

/// A command that names only its session (`leave_session`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The session.
    pub session_id: SessionId,
}

/// `question_ask`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionAsk {
    /// The session.
    pub session_id: SessionId,
    /// The client's id for the question (a retried ask with the same id is refused as
    /// `already_exists`, never asked twice); the hub picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_id: Option<Uuid>,
    /// 1–500 characters.
    pub text: String,
    /// Hide the author from everyone (when the session allows it).
    #[serde(default)]
    pub anonymous: bool,
}

/// `question_edit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionEdit {
    /// The session.
    pub session_id: SessionId,
    /// The question.
    pub question_id: Uuid,
    /// The new text.
    pub text: String,
}

/// `question_vote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionVote {
    /// The session.
    pub session_id: SessionId,
    /// The question.
    pub question_id: Uuid,
    /// `up`, `down`, or `null` to clear.
    pub vote: Option<Vote>,
}

/// `question_moderate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionModerate {
    /// The session.
    pub session_id: SessionId,
    /// The question.
    pub question_id: Uuid,
    /// What to do.
    pub action: Moderation,
}

/// `question_delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionDelete {
    /// The session.
    pub session_id: SessionId,
    /// The question.
    pub question_id: Uuid,
}

/// What a media stream in an offer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// The presenter's camera (and microphone).
    Camera,
    /// A screen share.
    Screen,
}

/// A labeled stream of an offer: which `msid` stream is the camera and which the screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamLabel {
    /// The SDP `msid` stream id.
    pub id: String,
    /// What it carries.
    pub kind: StreamKind,
}

/// A WebRTC signal, relayed to one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalBody {
    /// An SDP offer (a first negotiation, a renegotiation, or an ICE restart).
    Offer {
        /// The SDP.
        sdp: String,
        /// What each stream carries.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        streams: Vec<StreamLabel>,
        /// The offer restarts ICE.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ice_restart: bool,
    },
    /// An SDP answer.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// A trickled ICE candidate; an empty `candidate` means the end of candidates.
    Candidate {
        /// The `candidate:` attribute value (RFC 8839), with or without `candidate:`.
        candidate: String,
        /// The media section it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// Its index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_m_line_index: Option<u16>,
    },
}

impl SignalBody {
    /// Size checks that need no SDP parsing (the room parses the SDP and candidate).
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn check(&self) -> Result<(), String> {
        match self {
            SignalBody::Offer { streams, .. } => {
                if streams.len() > MAX_STREAMS {
                    return Err(format!("streams: at most {MAX_STREAMS}"));
                }
                if streams
                    .iter()
                    .any(|s| s.id.is_empty() || s.id.len() > MAX_STREAM_ID_BYTES)
                {
                    return Err(format!("streams.id: must be 1-{MAX_STREAM_ID_BYTES} bytes"));
                }
                Ok(())
            }
            SignalBody::Answer { .. } => Ok(()),
            SignalBody::Candidate { sdp_mid, .. } => match sdp_mid {
                Some(m) if m.len() > MAX_MID_BYTES => {
                    Err(format!("sdp_mid: at most {MAX_MID_BYTES} bytes"))
                }
                _ => Ok(()),
            },
        }
    }
}

/// `signal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The session.
    pub session_id: SessionId,
    /// The target peer.
    pub to: AttendeeId,
    /// The signal.
    pub signal: SignalBody,
}

/// `quality_report`: how a peer's connection is doing (for analytics and the presenter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// The session.
    pub session_id: SessionId,
    /// Round-trip time, ms (at most [`MAX_RTT_MS`]).
    pub rtt_ms: u32,
    /// Fraction of packets lost, 0–1.
    pub packet_loss: f64,
    /// Receive bitrate, kbit/s (at most [`MAX_BITRATE_KBPS`]).
    pub bitrate_kbps: u32,
}

impl QualityReport {
    /// Range checks.
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn check(&self) -> Result<(), String> {
        if self.rtt_ms > MAX_RTT_MS {
            return Err(format!("rtt_ms: at most {MAX_RTT_MS}"));
        }
        if !(0.0..=1.0).contains(&self.packet_loss) {
            return Err("packet_loss: must be between 0 and 1".into());
        }
        if self.bitrate_kbps > MAX_BITRATE_KBPS {
            return Err(format!("bitrate_kbps: at most {MAX_BITRATE_KBPS}"));
        }
        Ok(())
    }
}

/// `bandwidth_hint`: asks a peer (the presenter) to cap what it sends to the hinting peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandwidthHint {
    /// The session.
    pub session_id: SessionId,
    /// The peer to tell.
    pub to: AttendeeId,
    /// The highest bitrate wanted, kbit/s (at most [`MAX_BITRATE_KBPS`]).
    pub max_bitrate_kbps: u32,
}

/// `screen_share`: the presenter started or stopped sharing a screen (told to everyone, and
/// counted as a presenter action).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenShare {
    /// The session.
    pub session_id: SessionId,
    /// Sharing now.
    pub active: bool,
    /// The `msid` stream id of the screen, when sharing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}
