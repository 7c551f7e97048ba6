//! A WebSocket command's envelope, whatever the room kind: who sent it ([`Member`], ids only) and
//! where its answer goes.

use serde::Serialize;
use signaling::ErrorCode;
use signaling::client::Ref;
use signaling::server::ServerMsg;

use crate::conn::{Class, ConnHandle, Member, WireFrame};

/// A room's refusal of a command: a stable code and words for humans.
pub trait Refusal: std::fmt::Display {
    /// The stable code.
    fn code(&self) -> ErrorCode;
}

/// Where a WebSocket command's answer goes. Every command is answered exactly once: if the room
/// drops the message unanswered (it crashed, or stopped with the message queued), the drop
/// sends `unavailable` so the client is never left waiting.
pub struct ReplyTo {
    member: Member,
    conn: ConnHandle,
    reference: Option<Ref>,
    answered: bool,
}

/// `{"type":"ack","ref":...,"result":...}` for any result type.
#[derive(Serialize)]
struct Ack<'a, T> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ref")]
    reference: Option<&'a Ref>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<T>,
}

impl ReplyTo {
    /// The answer to `reference` goes to `conn`.
    pub fn new(conn: ConnHandle, reference: Option<Ref>) -> Self {
        Self {
            member: conn.member(),
            conn,
            reference,
            answered: false,
        }
    }

    /// Who sent the command (what a room decides by).
    pub fn member(&self) -> Member {
        self.member
    }

    /// The connection, for delivering frames (and joining it to the room).
    pub fn conn(&self) -> &ConnHandle {
        &self.conn
    }

    /// Hands the command to another node, which answers it: this end says nothing, not even
    /// `unavailable` when dropped.
    pub fn forwarded(mut self) -> (ConnHandle, Option<Ref>) {
        self.answered = true;
        (self.conn.clone(), self.reference.take())
    }

    /// Sends the `ack`, with what the command produced.
    pub fn ack<T: Serialize>(mut self, result: Option<T>) {
        let frame = serde_json::to_string(&Ack {
            kind: "ack",
            reference: self.reference.as_ref(),
            result,
        });
        self.answered = true;
        match frame {
            Ok(frame) => {
                self.conn.push(WireFrame::text(frame), Class::MustDeliver);
            }
            Err(_) => self.send(ErrorCode::Internal, "encoding the answer failed"),
        };
    }

    /// Sends the `error`.
    pub fn error(mut self, err: &impl Refusal) {
        self.answered = true;
        self.send(err.code(), &err.to_string());
    }

    fn send(&self, code: ErrorCode, message: &str) {
        let frame = ServerMsg::Error {
            reference: self.reference.as_ref(),
            code,
            message,
            retry_after_ms: None,
        }
        .to_json();
        self.conn.push(WireFrame::text(frame), Class::MustDeliver);
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if !self.answered {
            self.send(ErrorCode::Unavailable, "the room is unavailable; retry");
        }
    }
}
