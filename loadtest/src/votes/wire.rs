//! The hub frames a voter reads, as one small borrowing struct ([`FrameIn`]) holding only what
//! the bookkeeping needs: an answer's `ref`, code and offset, and a `question` frame's offset
//! and totals. The rest of a frame is skipped by the parser (a vote storm delivers a
//! `question` frame to every member for every vote, so this is the harness's hot path).

use std::borrow::Cow;

use serde::Deserialize;
use signaling::client::Ref;
use uuid::Uuid;

/// The fields of a hub frame a voter reads; the rest is skipped by the parser.
#[derive(Debug, Deserialize)]
pub struct FrameIn<'a> {
    /// The frame type.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `ack` and `error`: the command's `ref`.
    #[serde(rename = "ref", default)]
    pub reference: Option<Ref>,
    /// `error`: its code.
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// Durable frames' offset.
    #[serde(default)]
    pub offset: Option<u64>,
    /// An ack's result.
    #[serde(default)]
    pub result: Option<ResultIn>,
    /// A `question` frame's question.
    #[serde(default)]
    pub question: Option<QuestionIn>,
}

/// The part of an `ack`'s result a voter reads.
#[derive(Debug, Deserialize)]
pub struct ResultIn {
    /// The event's offset; `null` when the command changed nothing.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// The part of a question a voter reads.
#[derive(Debug, Deserialize)]
pub struct QuestionIn {
    /// Its id.
    pub id: Uuid,
    /// Up votes.
    pub up: u64,
    /// Down votes.
    pub down: u64,
}

impl FrameIn<'_> {
    /// The numeric `ref` (the harness only sends numbers).
    pub fn ref_num(&self) -> Option<u64> {
        match self.reference {
            Some(Ref::Num(n)) => Some(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_acks_errors_and_question_frames_are_read() {
        let f: FrameIn<'_> =
            serde_json::from_str(r#"{"type":"ack","ref":12,"result":{"offset":null}}"#).unwrap();
        assert_eq!((&*f.kind, f.ref_num()), ("ack", Some(12)));
        assert_eq!(f.result.and_then(|r| r.offset), None);
        let f: FrameIn<'_> =
            serde_json::from_str(r#"{"type":"ack","ref":13,"result":{"offset":41}}"#).unwrap();
        assert_eq!(f.result.and_then(|r| r.offset), Some(41));

        let f: FrameIn<'_> = serde_json::from_str(
            r#"{"type":"error","ref":14,"code":"question_not_votable","message":"answered"}"#,
        )
        .unwrap();
        assert_eq!(f.code.as_deref(), Some("question_not_votable"));

        // The example of docs/protocol.md § 8.3.
        let q = r#"{"type": "question", "session_id": "0191c2b0-1a2b-7c3d-8e4f-5a6b7c8d9e0f",
            "offset": 13, "change": "voted",
            "question": {"id": "0191c2b2-3c4d-7e5f-8a6b-7c8d9e0f1a2b", "text": "Will it run offline?",
              "status": "open", "pinned": false, "up": 12, "down": 1, "score": 11,
              "asked_at": "2026-11-22T15:04:05Z", "anonymous": false,
              "author_id": "0191c2b1-2b3c-7d4e-9f5a-6b7c8d9e0f1a", "author_name": "Gus"}}"#;
        let f: FrameIn<'_> = serde_json::from_str(q).unwrap();
        assert_eq!(f.offset, Some(13));
        let q = f.question.unwrap();
        assert_eq!((q.up, q.down), (12, 1));
    }

    #[test]
    fn a_join_ack_is_read_without_its_details() {
        let ack = r#"{"type": "ack", "ref": 1, "result": {
            "session_id": "0191c2b0-1a2b-7c3d-8e4f-5a6b7c8d9e0f", "offset": 12, "mode": "snapshot",
            "replayed": 0, "role": "attendee", "peer_id": "0191c2b1-2b3c-7d4e-9f5a-6b7c8d9e0f1a",
            "status": "live", "attendee_count": 41, "peers": [],
            "my_votes": {"0191c2b2-3c4d-7e5f-8a6b-7c8d9e0f1a2b": "up"}}}"#;
        let f: FrameIn<'_> = serde_json::from_str(ack).unwrap();
        assert_eq!(f.ref_num(), Some(1));
    }
}
