//! Slow readers (`--slow-readers K`): connections that join their room and then never read
//! again, and send nothing, so that the kernel's buffers and then the hub's outbox for them fill
//! up. The hub should close them (4008, slow consumer) without the rest of the room noticing;
//! the report shows the other members' figures on their own, and here what became of these.
//!
//! Which connections: the last K indices (N−K .. N−1). Connection `i` joins room `i % R`, so
//! consecutive indices land in consecutive rooms: K ≤ R slow readers each sit in a room of
//! their own, and more wrap around evenly. (Every (N/K)-th index would put them all in one
//! room whenever N/K is a multiple of R.) `args.rs` keeps at least one reading member per room.
//!
//! A slow reader is only a held `ws::Socket` until the end of the run: nothing polls it, so
//! nothing is read. After the load phase and its drain, [`final_read`] reads what is buffered
//! until a close frame, EOF or a reset, within [`FINAL_READ_LIMIT`] (and gives up after
//! [`FINAL_READ_QUIET`] without a frame: the hub never closed that one). The hub may not manage
//! to send its close frame into a full socket: then the connection ends in a reset or EOF
//! after the frames that were buffered, which counts as closed by the hub too. Slow readers
//! also never answer pings: a run longer than the hub's idle timeout (60 s) sees them closed
//! with 4000 as well.

use std::collections::BTreeMap;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, WebSocket, WebSocketError};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frames;

/// Longest final read of one slow reader (they are read all at once).
pub const FINAL_READ_LIMIT: Duration = Duration::from_secs(5);
/// Time without a frame after which a slow reader counts as still open.
pub const FINAL_READ_QUIET: Duration = Duration::from_secs(1);
/// How long our own close frame to a slow reader still open may take.
const CLOSE_WRITE: Duration = Duration::from_millis(200);

/// How a slow reader's connection stood when it was finally read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlowEnd {
    /// The hub's close frame arrived, with this code.
    Closed(u16),
    /// The stream ended without a close frame.
    Eof,
    /// The connection failed (reset, usually): the hub gave up on it.
    Lost(String),
    /// Nothing ended it: the hub still held it open.
    Open,
}

/// What the final read found on one slow reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowOutcome {
    /// How it ended.
    pub end: SlowEnd,
    /// Frames read (the backlog the buffers held).
    pub frames: u64,
    /// Payload bytes read.
    pub bytes: u64,
}

/// Reads a slow reader's buffered frames until it ends, or [`FINAL_READ_QUIET`] passes
/// without a frame, or [`FINAL_READ_LIMIT`] in all; closes it (1000) if it is still open.
pub async fn final_read<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) -> SlowOutcome {
    // Raw frames: echoing a close or a ping into a socket the hub has reset would turn the
    // close frame we came for into a write error.
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    let deadline = tokio::time::Instant::now() + FINAL_READ_LIMIT;
    let mut out = SlowOutcome {
        end: SlowEnd::Open,
        frames: 0,
        bytes: 0,
    };
    loop {
        let quiet = (tokio::time::Instant::now() + FINAL_READ_QUIET).min(deadline);
        let frame = match tokio::time::timeout_at(quiet, ws.read_frame()).await {
            Err(_) => break,
            Ok(frame) => frame,
        };
        match frame {
            Ok(f) if f.opcode == OpCode::Close => {
                out.end = SlowEnd::Closed(frames::close_code(&f.payload));
                return out;
            }
            Ok(f) => {
                out.frames += 1;
                out.bytes += f.payload.len() as u64;
            }
            Err(e) => {
                out.end = lost(&e);
                return out;
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_WRITE, ws.write_frame(Frame::close(1000, b""))).await;
    out
}

fn lost(e: &WebSocketError) -> SlowEnd {
    match e {
        WebSocketError::UnexpectedEOF => SlowEnd::Eof,
        WebSocketError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            SlowEnd::Eof
        }
        WebSocketError::IoError(io) => SlowEnd::Lost(format!("io: {}", io.kind())),
        other => SlowEnd::Lost(other.to_string()),
    }
}

/// The slow readers in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowReport {
    /// Slow readers asked for (K).
    pub asked: usize,
    /// Slow readers that joined.
    pub established: u64,
    /// Ended by the hub, whichever way (close frame, EOF or reset).
    pub closed_by_hub: u64,
    /// Close frames by code (4008 = slow consumer).
    pub close_codes: BTreeMap<String, u64>,
    /// Ended without a close frame: EOF.
    pub eof: u64,
    /// Ended without a close frame: reset or another failure, by reason.
    pub lost: BTreeMap<String, u64>,
    /// Still open when read at the end: the hub had not closed them.
    pub still_open: u64,
    /// Frames the final read found buffered, over all slow readers.
    pub backlog_frames: u64,
    /// Their payload bytes.
    pub backlog_bytes: u64,
}

impl SlowReport {
    /// Sums the outcomes of the slow readers that joined.
    pub fn new(asked: usize, outcomes: &[SlowOutcome]) -> SlowReport {
        let mut r = SlowReport {
            asked,
            established: outcomes.len() as u64,
            closed_by_hub: 0,
            close_codes: BTreeMap::new(),
            eof: 0,
            lost: BTreeMap::new(),
            still_open: 0,
            backlog_frames: 0,
            backlog_bytes: 0,
        };
        for o in outcomes {
            r.backlog_frames += o.frames;
            r.backlog_bytes += o.bytes;
            match &o.end {
                SlowEnd::Closed(code) => {
                    *r.close_codes.entry(code.to_string()).or_default() += 1;
                }
                SlowEnd::Eof => r.eof += 1,
                SlowEnd::Lost(why) => *r.lost.entry(why.clone()).or_default() += 1,
                SlowEnd::Open => {
                    r.still_open += 1;
                    continue;
                }
            }
            r.closed_by_hub += 1;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(end: SlowEnd, frames: u64) -> SlowOutcome {
        SlowOutcome {
            end,
            frames,
            bytes: frames * 100,
        }
    }

    #[test]
    fn outcomes_are_summed_by_how_they_ended() {
        let r = SlowReport::new(
            5,
            &[
                outcome(SlowEnd::Closed(4008), 10),
                outcome(SlowEnd::Closed(4008), 20),
                outcome(SlowEnd::Eof, 0),
                outcome(SlowEnd::Lost("io: connection reset".into()), 5),
            ],
        );
        assert_eq!((r.asked, r.established), (5, 4));
        assert_eq!(r.closed_by_hub, 4);
        assert_eq!(r.close_codes.get("4008"), Some(&2));
        assert_eq!(r.eof, 1);
        assert_eq!(r.lost.get("io: connection reset"), Some(&1));
        assert_eq!(r.still_open, 0);
        assert_eq!((r.backlog_frames, r.backlog_bytes), (35, 3500));

        let open = SlowReport::new(1, &[outcome(SlowEnd::Open, 3)]);
        assert_eq!((open.closed_by_hub, open.still_open), (0, 1));
    }

    /// A server frame (unmasked, FIN) of `opcode` carrying `payload`.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let len = u8::try_from(payload.len()).unwrap();
        assert!(len < 126);
        let mut f = vec![0x80 | opcode, len];
        f.extend_from_slice(payload);
        f
    }

    async fn read_from(bytes: Vec<u8>, then_close: bool) -> SlowOutcome {
        use tokio::io::AsyncWriteExt;
        let (client, mut server) = tokio::io::duplex(1 << 16);
        server.write_all(&bytes).await.unwrap();
        if then_close {
            drop(server);
            let ws = WebSocket::after_handshake(client, fastwebsockets::Role::Client);
            final_read(ws).await
        } else {
            let ws = WebSocket::after_handshake(client, fastwebsockets::Role::Client);
            let out = final_read(ws).await;
            drop(server);
            out
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_backlog_is_read_up_to_the_close_frame() {
        let mut bytes = server_frame(0x1, br#"{"type":"broadcast"}"#).repeat(3);
        bytes.extend(server_frame(0x9, b"hub"));
        bytes.extend(server_frame(0x8, &[0x0f, 0xa8, b's', b'l', b'o', b'w']));
        let out = read_from(bytes, false).await;
        assert_eq!(out.end, SlowEnd::Closed(4008));
        assert_eq!(out.frames, 4, "three texts and a ping");
        assert_eq!(out.bytes, 3 * 20 + 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_without_a_close_frame_is_an_eof() {
        let out = read_from(server_frame(0x1, b"{}"), true).await;
        assert_eq!((out.end, out.frames), (SlowEnd::Eof, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_nobody_closes_is_still_open_after_the_quiet_time() {
        let started = tokio::time::Instant::now();
        let out = read_from(server_frame(0x1, b"{}"), false).await;
        assert_eq!((out.end, out.frames), (SlowEnd::Open, 1));
        assert_eq!(started.elapsed(), FINAL_READ_QUIET);
    }

    #[test]
    fn an_eof_is_not_a_failure_reason() {
        assert_eq!(lost(&WebSocketError::UnexpectedEOF), SlowEnd::Eof);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            lost(&WebSocketError::IoError(reset)),
            SlowEnd::Lost("io: connection reset".into())
        );
    }
}
