//! The link's messages and their encoding: a 4-byte big-endian length, then the message (a
//! tag byte and its fields). Binary rather than JSON because a room's every event crosses the
//! link once per node; the frames themselves are carried as they are, never re-encoded.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use signaling::{RoomKey, SessionId, UserId, WorkspaceId};
use uuid::Uuid;

use crate::conn::{Class, ConflationKey, ConnId, Mark, Member};

/// The largest message either side accepts (a room frame is far smaller: the gateway's frame
/// limit bounds commands, and events are built by the hub itself).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// From the node a client is connected to (the edge) to the node that runs the room (the owner).
#[derive(Debug, Clone, PartialEq)]
pub enum Up {
    /// A client's command (`text`: the command as JSON, with its `ref`).
    Command {
        /// The edge's connection id.
        conn: ConnId,
        /// Who the client is (`member.conn` is the edge's id too).
        member: Member,
        /// The client's outbox size.
        capacity: u32,
        /// The command.
        text: Bytes,
    },
    /// The client left a room (its connection closed).
    Disconnected {
        /// The edge's connection id.
        conn: ConnId,
        /// The room.
        room: RoomKey,
    },
    /// The client's connection is gone: forget it.
    Gone {
        /// The edge's connection id.
        conn: ConnId,
    },
    /// The answer to [`Down::RoomFor`].
    RoomReady {
        /// The request.
        token: u64,
        /// False: the connection closed instead.
        ok: bool,
    },
}

/// From the owner to the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Down {
    /// One frame for several of the edge's connections: sent once per node, not per member.
    Frame {
        /// The edge's connection ids.
        conns: Vec<ConnId>,
        /// How the edge queues it.
        class: Class,
        /// The complete WebSocket frame.
        frame: Bytes,
    },
    /// Close a connection.
    Close {
        /// The edge's connection id.
        conn: ConnId,
        /// WebSocket close code.
        code: u16,
    },
    /// A room took or dropped a connection.
    Mark {
        /// The edge's connection id.
        conn: ConnId,
        /// The room.
        room: RoomKey,
        /// What changed.
        mark: Mark,
    },
    /// The room does not run on the owner any more (another node holds its lease): forget it.
    Moved {
        /// The room.
        room: RoomKey,
    },
    /// Answer [`Up::RoomReady`] once the connection's outbox has `free` slots.
    RoomFor {
        /// The edge's connection id.
        conn: ConnId,
        /// Slots wanted.
        free: u32,
        /// The request.
        token: u64,
    },
}

/// A message that could not be read: the link is closed.
#[derive(Debug, thiserror::Error)]
#[error("bad link message: {0}")]
pub struct BadMessage(&'static str);

/// The conflation topics rooms use; a topic travels as its index.
const TOPICS: [&str; 4] = ["presence", "count", "quality", "bandwidth"];

fn put_room(out: &mut BytesMut, room: RoomKey) {
    match room {
        RoomKey::Workspace(id) => {
            out.put_u8(0);
            out.put_slice(id.as_uuid().as_bytes());
        }
        RoomKey::Session(id) => {
            out.put_u8(1);
            out.put_slice(id.as_uuid().as_bytes());
        }
    }
}

fn put_class(out: &mut BytesMut, class: Class) {
    match class {
        Class::MustDeliver => out.put_u8(0),
        Class::Droppable => out.put_u8(1),
        Class::Conflatable(key) => match TOPICS.iter().position(|t| *t == key.topic) {
            Some(topic) => {
                out.put_u8(2);
                put_room(out, key.room);
                out.put_u8(u8::try_from(topic).unwrap_or(0));
                out.put_u128(key.subject);
            }
            // A topic this build does not know: the frame still arrives, unconflated.
            None => out.put_u8(0),
        },
    }
}

fn put_mark(out: &mut BytesMut, mark: Mark) {
    out.put_u8(match mark {
        Mark::Joined => 0,
        Mark::Left => 1,
        Mark::Pending => 2,
        Mark::Unpending => 3,
    });
}

/// Starts a message: its length is filled in by [`finish`].
fn start(out: &mut BytesMut, tag: u8) -> usize {
    let at = out.len();
    out.put_u32(0);
    out.put_u8(tag);
    at
}

fn finish(out: &mut BytesMut, at: usize) {
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

impl Up {
    /// Appends the message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Up::Command {
                conn,
                member,
                capacity,
                text,
            } => {
                let at = start(out, 1);
                out.put_u64(*conn);
                out.put_slice(member.user.as_uuid().as_bytes());
                match member.guest {
                    Some(s) => {
                        out.put_u8(1);
                        out.put_slice(s.as_uuid().as_bytes());
                    }
                    None => out.put_u8(0),
                }
                out.put_u32(*capacity);
                out.put_slice(text);
                finish(out, at);
            }
            Up::Disconnected { conn, room } => {
                let at = start(out, 2);
                out.put_u64(*conn);
                put_room(out, *room);
                finish(out, at);
            }
            Up::Gone { conn } => {
                let at = start(out, 3);
                out.put_u64(*conn);
                finish(out, at);
            }
            Up::RoomReady { token, ok } => {
                let at = start(out, 4);
                out.put_u64(*token);
                out.put_u8(u8::from(*ok));
                finish(out, at);
            }
        }
    }

    /// Reads one message from a complete body (its length already taken off).
    ///
    /// # Errors
    /// The body is not a message.
    pub fn decode(mut body: Bytes) -> Result<Up, BadMessage> {
        let tag = u8_of(&mut body)?;
        Ok(match tag {
            1 => {
                let conn = u64_of(&mut body)?;
                let user = UserId::from_uuid(uuid_of(&mut body)?);
                let guest = match u8_of(&mut body)? {
                    0 => None,
                    _ => Some(SessionId::from_uuid(uuid_of(&mut body)?)),
                };
                let capacity = u32_of(&mut body)?;
                Up::Command {
                    conn,
                    member: Member { conn, user, guest },
                    capacity,
                    text: body,
                }
            }
            2 => Up::Disconnected {
                conn: u64_of(&mut body)?,
                room: room_of(&mut body)?,
            },
            3 => Up::Gone {
                conn: u64_of(&mut body)?,
            },
            4 => Up::RoomReady {
                token: u64_of(&mut body)?,
                ok: u8_of(&mut body)? != 0,
            },
            _ => return Err(BadMessage("unknown message")),
        })
    }
}

impl Down {
    /// Appends the message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Down::Frame {
                conns,
                class,
                frame,
            } => Down::encode_frame(out, conns, *class, frame),
            Down::Close { conn, code } => {
                let at = start(out, 11);
                out.put_u64(*conn);
                out.put_u16(*code);
                finish(out, at);
            }
            Down::Mark { conn, room, mark } => {
                let at = start(out, 12);
                out.put_u64(*conn);
                put_room(out, *room);
                put_mark(out, *mark);
                finish(out, at);
            }
            Down::Moved { room } => {
                let at = start(out, 14);
                put_room(out, *room);
                finish(out, at);
            }
            Down::RoomFor { conn, free, token } => {
                let at = start(out, 13);
                out.put_u64(*conn);
                out.put_u32(*free);
                out.put_u64(*token);
                finish(out, at);
            }
        }
    }

    /// Appends a [`Down::Frame`] without building one.
    pub fn encode_frame(out: &mut BytesMut, conns: &[ConnId], class: Class, frame: &[u8]) {
        let at = start(out, 10);
        put_class(out, class);
        out.put_u32(u32::try_from(conns.len()).unwrap_or(u32::MAX));
        for conn in conns {
            out.put_u64(*conn);
        }
        out.put_slice(frame);
        finish(out, at);
    }

    /// Reads one message from a complete body.
    ///
    /// # Errors
    /// The body is not a message.
    pub fn decode(mut body: Bytes) -> Result<Down, BadMessage> {
        let tag = u8_of(&mut body)?;
        Ok(match tag {
            10 => {
                let class = match u8_of(&mut body)? {
                    0 => Class::MustDeliver,
                    1 => Class::Droppable,
                    2 => {
                        let room = room_of(&mut body)?;
                        let topic = TOPICS
                            .get(usize::from(u8_of(&mut body)?))
                            .ok_or(BadMessage("unknown topic"))?;
                        need(&body, 16)?;
                        Class::Conflatable(ConflationKey {
                            room,
                            topic,
                            subject: body.get_u128(),
                        })
                    }
                    _ => return Err(BadMessage("unknown class")),
                };
                let n = u32_of(&mut body)? as usize;
                if n > body.len() / 8 {
                    return Err(BadMessage("truncated"));
                }
                let conns = (0..n).map(|_| body.get_u64()).collect();
                Down::Frame {
                    conns,
                    class,
                    frame: body,
                }
            }
            11 => {
                let conn = u64_of(&mut body)?;
                need(&body, 2)?;
                Down::Close {
                    conn,
                    code: body.get_u16(),
                }
            }
            12 => Down::Mark {
                conn: u64_of(&mut body)?,
                room: room_of(&mut body)?,
                mark: match u8_of(&mut body)? {
                    0 => Mark::Joined,
                    1 => Mark::Left,
                    2 => Mark::Pending,
                    3 => Mark::Unpending,
                    _ => return Err(BadMessage("unknown mark")),
                },
            },
            14 => Down::Moved {
                room: room_of(&mut body)?,
            },
            13 => Down::RoomFor {
                conn: u64_of(&mut body)?,
                free: u32_of(&mut body)?,
                token: u64_of(&mut body)?,
            },
            _ => return Err(BadMessage("unknown message")),
        })
    }
}

/// Takes one complete message's body off the front of `buf`, if it holds one.
///
/// # Errors
/// The length announced is over [`MAX_MESSAGE`].
pub fn split(buf: &mut BytesMut) -> Result<Option<Bytes>, BadMessage> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_MESSAGE {
        return Err(BadMessage("too large"));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

fn need(body: &Bytes, n: usize) -> Result<(), BadMessage> {
    if body.len() < n {
        Err(BadMessage("truncated"))
    } else {
        Ok(())
    }
}

fn u8_of(body: &mut Bytes) -> Result<u8, BadMessage> {
    need(body, 1)?;
    Ok(body.get_u8())
}

fn u32_of(body: &mut Bytes) -> Result<u32, BadMessage> {
    need(body, 4)?;
    Ok(body.get_u32())
}

fn u64_of(body: &mut Bytes) -> Result<u64, BadMessage> {
    need(body, 8)?;
    Ok(body.get_u64())
}

fn uuid_of(body: &mut Bytes) -> Result<Uuid, BadMessage> {
    need(body, 16)?;
    let mut raw = [0u8; 16];
    body.copy_to_slice(&mut raw);
    Ok(Uuid::from_bytes(raw))
}

fn room_of(body: &mut Bytes) -> Result<RoomKey, BadMessage> {
    match u8_of(body)? {
        0 => Ok(RoomKey::Workspace(WorkspaceId::from_uuid(uuid_of(body)?))),
        1 => Ok(RoomKey::Session(SessionId::from_uuid(uuid_of(body)?))),
        _ => Err(BadMessage("unknown room kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_up(msg: Up) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        let body = split(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(Up::decode(body).unwrap(), msg);
    }

    fn round_down(msg: Down) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        let body = split(&mut buf).unwrap().unwrap();
        assert_eq!(Down::decode(body).unwrap(), msg);
    }

    #[test]
    fn every_message_reads_back_as_written() {
        let session = SessionId::new();
        round_up(Up::Command {
            conn: 7,
            member: Member {
                conn: 7,
                user: UserId::new(),
                guest: Some(session),
            },
            capacity: 256,
            text: Bytes::from_static(br#"{"type":"ping"}"#),
        });
        round_up(Up::Disconnected {
            conn: 1,
            room: RoomKey::Session(session),
        });
        round_up(Up::Gone { conn: u64::MAX });
        round_up(Up::RoomReady { token: 9, ok: true });
        round_down(Down::Frame {
            conns: vec![1, 2, 3],
            class: Class::Conflatable(ConflationKey {
                room: RoomKey::Workspace(WorkspaceId::new()),
                topic: "presence",
                subject: 42,
            }),
            frame: Bytes::from_static(b"\x81\x02hi"),
        });
        round_down(Down::Frame {
            conns: vec![],
            class: Class::Droppable,
            frame: Bytes::new(),
        });
        round_down(Down::Close {
            conn: 3,
            code: 4008,
        });
        round_down(Down::Mark {
            conn: 3,
            room: RoomKey::Session(session),
            mark: Mark::Unpending,
        });
        round_down(Down::Moved {
            room: RoomKey::Workspace(WorkspaceId::new()),
        });
        round_down(Down::RoomFor {
            conn: 3,
            free: 12,
            token: 5,
        });
    }

    #[test]
    fn a_partial_message_waits_and_garbage_is_refused() {
        let mut buf = BytesMut::new();
        Up::Gone { conn: 5 }.encode(&mut buf);
        let whole = buf.clone();
        let mut part = BytesMut::from(&whole[..whole.len() - 1]);
        assert!(split(&mut part).unwrap().is_none());
        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
        assert!(split(&mut huge).is_err());
        assert!(Up::decode(Bytes::from_static(&[1, 0, 0])).is_err());
        assert!(Down::decode(Bytes::from_static(&[10, 0, 0xff, 0xff, 0xff, 0xff])).is_err());
        assert!(Down::decode(Bytes::from_static(&[99])).is_err());
    }
}
