//! The frames the harness writes and reads, as pure functions so the tests can check them against
//! the protocol crate without a socket.
//!
//! Outgoing commands are `signaling::client::ClientMsg` values with the envelope's `ref` added,
//! so a protocol change breaks this crate's build rather than its numbers. Incoming frames are
//! read into one small borrowing struct, [`Incoming`], holding only the fields the harness
//! measures; everything else in a frame is skipped by the parser.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use signaling::client::{Broadcast, ClientMsg, JoinWorkspace, Ref, TaskCreate, TaskUpdate};
use signaling::server::Limits;
use signaling::task::{TaskChanges, TaskDraft};
use signaling::{TaskId, WorkspaceId};

/// The app-defined event name of the harness's broadcasts.
pub const EVENT: &str = "lt";
/// Prefix of the titles the harness writes; the rest is the send time in microseconds.
pub const TITLE_PREFIX: &str = "lt ";

/// A command in its envelope: `{"type": ..., "ref": n, ...fields}`.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "ref")]
    reference: u64,
    #[serde(flatten)]
    msg: &'a ClientMsg,
}

/// Serializes a command with its `ref`.
///
/// # Errors
/// Only if serde_json fails, which these types cannot make it do.
pub fn command(reference: u64, msg: &ClientMsg) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Envelope { reference, msg })
}

/// `join_workspace` without a `last_offset` (the harness wants a snapshot, not a replay).
pub fn join(workspace_id: WorkspaceId) -> ClientMsg {
    ClientMsg::JoinWorkspace(JoinWorkspace {
        workspace_id,
        last_offset: None,
    })
}

/// `task_create` of connection `conn`'s own task.
pub fn task_create(workspace_id: WorkspaceId, conn: usize) -> ClientMsg {
    ClientMsg::TaskCreate(Box::new(TaskCreate {
        workspace_id,
        task: TaskDraft::titled(format!("lt task {conn}")),
    }))
}

/// The payload of a measured broadcast: send time and sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LtData {
    /// Microseconds since the run's shared start instant.
    pub t: u64,
    /// The sending connection's index.
    pub c: u64,
}

/// A measured `broadcast`.
///
/// # Errors
/// Only if serde_json fails to write two integers.
pub fn broadcast(workspace_id: WorkspaceId, data: LtData) -> serde_json::Result<ClientMsg> {
    Ok(ClientMsg::Broadcast(Broadcast {
        workspace_id,
        event: EVENT.to_owned(),
        data: serde_json::value::to_raw_value(&data)?,
        // Measured events must arrive: a member that misses one would skew the figures.
        droppable: false,
    }))
}

/// A measured `task_update`: the title carries the send time.
pub fn task_update(
    workspace_id: WorkspaceId,
    task_id: TaskId,
    base_version: u64,
    t_micros: u64,
) -> ClientMsg {
    ClientMsg::TaskUpdate(Box::new(TaskUpdate {
        workspace_id,
        task_id,
        base_version,
        changes: TaskChanges {
            title: Some(format!("{TITLE_PREFIX}{t_micros}")),
            ..TaskChanges::default()
        },
    }))
}

/// The send time written by [`task_update`], read back from a title.
pub fn title_micros(title: &str) -> Option<u64> {
    title.strip_prefix(TITLE_PREFIX)?.parse().ok()
}

/// The fields of a hub frame the harness reads. Frames of every type fit: fields a type does not
/// have are `None`.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// The frame type (`hello`, `ack`, `error`, `broadcast`, `task_updated`, ...).
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `ack` and `error`: the command's `ref`.
    #[serde(rename = "ref", default)]
    pub reference: Option<Ref>,
    /// `error`: the stable code.
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    /// `broadcast`: the app's event name.
    #[serde(default, borrow)]
    pub event: Option<Cow<'a, str>>,
    /// `broadcast`: the payload, parsed only for `lt` events.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    /// `task_updated`: the fields that changed.
    #[serde(default, borrow)]
    pub changes: Option<ChangesIn<'a>>,
    /// `ack`: what the command produced.
    #[serde(default)]
    pub result: Option<ResultIn>,
    /// `conflict_detected`: the task as it is now.
    #[serde(default)]
    pub current: Option<TaskIn>,
    /// `hello`: the connection's limits.
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// The part of `changes` the harness reads.
#[derive(Debug, Deserialize)]
pub struct ChangesIn<'a> {
    /// The new title.
    #[serde(default, borrow)]
    pub title: Option<Cow<'a, str>>,
}

/// The part of an `ack`'s `result` the harness reads.
#[derive(Debug, Deserialize)]
pub struct ResultIn {
    /// A task write's task.
    #[serde(default)]
    pub task: Option<TaskIn>,
}

/// The part of a task the harness reads.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TaskIn {
    /// Its id.
    pub id: TaskId,
    /// Its version.
    pub version: u64,
}

impl<'a> Incoming<'a> {
    /// Reads a text frame.
    ///
    /// # Errors
    /// When the frame is not a JSON object with a string `type`, or a field the harness reads
    /// has an unexpected shape.
    pub fn parse(text: &'a [u8]) -> serde_json::Result<Incoming<'a>> {
        serde_json::from_slice(text)
    }

    /// The numeric `ref` of an `ack` or `error` (the harness only sends numbers).
    pub fn ref_num(&self) -> Option<u64> {
        match self.reference {
            Some(Ref::Num(n)) => Some(n),
            _ => None,
        }
    }

    /// The send time carried by a measured event, if this frame is one.
    pub fn sent_at_micros(&self) -> Option<u64> {
        match &*self.kind {
            "broadcast" if self.event.as_deref() == Some(EVENT) => {
                let data: LtData = serde_json::from_str(self.data?.get()).ok()?;
                Some(data.t)
            }
            "task_updated" => title_micros(self.changes.as_ref()?.title.as_deref()?),
            _ => None,
        }
    }

    /// The task of a task write's `ack`.
    pub fn acked_task(&self) -> Option<TaskIn> {
        self.result.as_ref()?.task
    }
}

/// The close code of a close frame's payload (1005, "no status", when it carries none).
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 1005,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(reference: u64, msg: &ClientMsg) -> ClientMsg {
        let bytes = command(reference, msg).unwrap();
        let (r, back) = signaling::client::decode(&bytes).unwrap();
        assert_eq!(r, Some(Ref::Num(reference)));
        back
    }

    #[test]
    fn commands_are_what_the_hub_decodes() {
        let ws = WorkspaceId::new();
        assert_eq!(decoded(1, &join(ws)), join(ws));
        assert_eq!(decoded(2, &task_create(ws, 7)), task_create(ws, 7));
        let task = TaskId::new();
        let update = task_update(ws, task, 3, 12_345);
        assert_eq!(decoded(9, &update), update);
        let b = broadcast(ws, LtData { t: 42, c: 5 }).unwrap();
        assert_eq!(decoded(10, &b), b);
    }

    #[test]
    fn the_envelope_carries_type_and_ref() {
        let bytes = command(4, &join(WorkspaceId::new())).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "join_workspace");
        assert_eq!(v["ref"], 4);
    }

    use signaling::UserId;

    #[test]
    fn relayed_broadcasts_give_their_send_time() {
        let ws = WorkspaceId::new();
        let from = UserId::new();
        let frame = format!(
            r#"{{"type":"broadcast","workspace_id":"{ws}","from":"{from}","event":"lt","data":{{"t":1500,"c":3}}}}"#
        );
        let f = Incoming::parse(frame.as_bytes()).unwrap();
        assert_eq!(f.sent_at_micros(), Some(1500));

        let other = format!(
            r#"{{"type":"broadcast","workspace_id":"{ws}","from":"{from}","event":"cursor","data":[1,2]}}"#
        );
        assert_eq!(
            Incoming::parse(other.as_bytes()).unwrap().sent_at_micros(),
            None
        );
    }

    #[test]
    fn task_updates_give_their_send_time_from_the_title() {
        let frame = r#"{"workspace_id":"0190a0a0-0000-7000-8000-000000000001","offset":9,
            "type":"task_updated","task_id":"0190a0a0-0000-7000-8000-000000000002",
            "changes":{"title":"lt 987654"},"task":{"id":"0190a0a0-0000-7000-8000-000000000002",
            "title":"lt 987654","version":4},"by":"0190a0a0-0000-7000-8000-000000000003"}"#;
        let f = Incoming::parse(frame.as_bytes()).unwrap();
        assert_eq!(f.sent_at_micros(), Some(987_654));
        assert_eq!(title_micros("someone else's title"), None);
        assert_eq!(title_micros("lt x"), None);
    }

    #[test]
    fn acks_errors_and_hello_are_read() {
        let ack = r#"{"type":"ack","ref":12,"result":{"task":{"id":"0190a0a0-0000-7000-8000-000000000002","version":5,"title":"t"},"offset":3}}"#;
        let f = Incoming::parse(ack.as_bytes()).unwrap();
        assert_eq!((&*f.kind, f.ref_num()), ("ack", Some(12)));
        assert_eq!(f.acked_task().map(|t| t.version), Some(5));

        let join_ack = r#"{"type":"ack","ref":1,"result":{"workspace_id":"0190a0a0-0000-7000-8000-000000000001","offset":0,"mode":"snapshot","replayed":0,"role":"member","presence":[]}}"#;
        let f = Incoming::parse(join_ack.as_bytes()).unwrap();
        assert!(f.acked_task().is_none());

        let err = r#"{"type":"error","ref":3,"code":"rate_limited","message":"slow down","retry_after_ms":80}"#;
        let f = Incoming::parse(err.as_bytes()).unwrap();
        assert_eq!(f.code.as_deref(), Some("rate_limited"));
        assert_eq!(f.ref_num(), Some(3));

        let hello = r#"{"type":"hello","user_id":"0190a0a0-0000-7000-8000-000000000003","connection_id":7,"limits":{"max_frame_bytes":65536,"messages_per_second":10,"burst":20}}"#;
        let f = Incoming::parse(hello.as_bytes()).unwrap();
        assert_eq!(f.limits.map(|l| l.messages_per_second), Some(10));
    }

    #[test]
    fn escaped_strings_are_still_read() {
        let f =
            Incoming::parse(br#"{"type":"broadcast","event":"a \"quote\"","data":null}"#).unwrap();
        assert_eq!(f.event.as_deref(), Some("a \"quote\""));
        assert_eq!(f.sent_at_micros(), None);
        let f = Incoming::parse(br#"{"type":"error","ref":null,"code":"bad_json"}"#).unwrap();
        assert_eq!(f.ref_num(), None);
    }

    #[test]
    fn close_codes_are_read_from_the_payload() {
        assert_eq!(close_code(&[0x0f, 0xa8, b'x']), 4008);
        assert_eq!(close_code(&[0x03, 0xe8]), 1000);
        assert_eq!(close_code(&[]), 1005);
    }
}
