//! WebSocket framing (RFC 6455 §5), as the hub speaks it: it reads masked frames from clients
//! and writes unmasked ones.
//!
//! [`parse`] takes complete frames off the front of a read buffer and leaves an incomplete one in
//! place, so a reader can stop between any two reads (cancellation, a timer) without losing its
//! place, and can refuse a frame that is too large from its header, before its payload is read.
//! [`encode_header`] writes the header of a server frame, so that a room frames an event once for
//! all its members.

use bytes::{Buf, BytesMut};

/// Longest header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER_BYTES: usize = 14;

/// A frame's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// The rest of a fragmented message.
    Continuation,
    /// UTF-8 text.
    Text,
    /// Bytes.
    Binary,
    /// The closing handshake.
    Close,
    /// A ping, answered with a pong carrying the same payload.
    Ping,
    /// A pong.
    Pong,
}

impl OpCode {
    /// The opcode's 4-bit value.
    pub const fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xa,
        }
    }

    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xa => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong.
    pub const fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A frame read from a client, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The last frame of its message.
    pub fin: bool,
    /// Its type.
    pub opcode: OpCode,
    /// Its payload.
    pub payload: BytesMut,
}

/// Why a frame was refused. Each ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The payload is at least as large as allowed (close 1009).
    TooLarge,
    /// Reserved bits, an unknown opcode, an unmasked client frame, a fragmented or oversized
    /// control frame, a length that does not fit (close 1002).
    Protocol(&'static str),
}

/// Takes the first complete frame off `buf`, refusing payloads of `max_payload` bytes or more.
/// `Ok(None)`: the frame is not all there yet; nothing was consumed.
///
/// # Errors
/// [`FrameError`]; the connection should be closed.
pub fn parse(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(FrameError::Protocol("unknown opcode"))?;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (len, at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(l) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(l);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::Protocol("control frames are short and whole"));
    }
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge)?;
    if len >= max_payload {
        return Err(FrameError::TooLarge);
    }
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    let header = at + 4;
    if buf.len() < header + len {
        // Room for the rest, so that the reads that complete it need not grow the buffer.
        buf.reserve(header + len - buf.len());
        return Ok(None);
    }
    buf.advance(header);
    let mut payload = buf.split_to(len);
    unmask(&mut payload, mask);
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// XORs `data` with the 4-byte `mask`, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut v = [0u8; 8];
        v.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(v) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Writes the header of an unmasked, final frame with `opcode` and a payload of `len` bytes
/// into `out` (at most [`MAX_HEADER_BYTES`] - 4 bytes).
pub fn encode_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    out.push(0x80 | opcode.bits());
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// What a client's close frame says: the code to echo, or why it is itself broken.
///
/// # Errors
/// A payload of one byte, a code no endpoint may send, or a reason that is not UTF-8.
pub fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(FrameError::Protocol("a close code no endpoint may send"));
            }
            std::str::from_utf8(reason)
                .map(|_| Some(code))
                .map_err(|_| FrameError::Protocol("a close reason that is not UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked frame as a client sends it.
    fn client_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(u8::from(fin) << 7) | opcode.bits()];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn frames_of_every_length_come_out_unmasked() {
        for n in [0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut buf = BytesMut::from(&client_frame(true, OpCode::Binary, &payload)[..]);
            let frame = parse(&mut buf, 1 << 20).unwrap().expect("a whole frame");
            assert_eq!(frame.payload, payload, "length {n}");
            assert!(frame.fin && frame.opcode == OpCode::Binary && buf.is_empty());
        }
    }

    #[test]
    fn a_frame_arriving_byte_by_byte_is_taken_once_whole() {
        let wire = client_frame(true, OpCode::Text, b"{\"type\":\"typing\"}");
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            assert_eq!(parse(&mut buf, 1024).unwrap(), None, "byte {i}");
            buf.extend_from_slice(&[*b]);
        }
        let frame = parse(&mut buf, 1024).unwrap().expect("whole");
        assert_eq!(&frame.payload[..], b"{\"type\":\"typing\"}");
    }

    #[test]
    fn two_frames_in_one_read_are_taken_one_after_the_other() {
        let mut wire = client_frame(false, OpCode::Text, b"ab");
        wire.extend(client_frame(true, OpCode::Continuation, b"cd"));
        let mut buf = BytesMut::from(&wire[..]);
        let a = parse(&mut buf, 64).unwrap().unwrap();
        let b = parse(&mut buf, 64).unwrap().unwrap();
        assert_eq!(
            (a.fin, a.opcode, &a.payload[..]),
            (false, OpCode::Text, &b"ab"[..])
        );
        assert_eq!(
            (b.fin, b.opcode, &b.payload[..]),
            (true, OpCode::Continuation, &b"cd"[..])
        );
        assert_eq!(parse(&mut buf, 64).unwrap(), None);
    }

    #[test]
    fn a_large_frame_is_refused_from_its_header() {
        let header = &client_frame(true, OpCode::Text, &vec![0; 2000])[..8];
        let mut buf = BytesMut::from(header);
        assert_eq!(parse(&mut buf, 2000), Err(FrameError::TooLarge));
        let mut buf = BytesMut::from(&[0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(
            parse(&mut buf, 1 << 20),
            Err(FrameError::TooLarge),
            "2^63 bytes"
        );
    }

    #[test]
    fn broken_frames_are_protocol_errors() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        assert!(matches!(
            parse(&mut BytesMut::from(&unmasked[..]), 64),
            Err(FrameError::Protocol(_))
        ));
        let reserved = [0xc1, 0x80, 0, 0, 0, 0];
        assert!(matches!(
            parse(&mut BytesMut::from(&reserved[..]), 64),
            Err(FrameError::Protocol(_))
        ));
        let opcode = [0x83, 0x80, 0, 0, 0, 0];
        assert!(matches!(
            parse(&mut BytesMut::from(&opcode[..]), 64),
            Err(FrameError::Protocol(_))
        ));
        let fragmented_ping = client_frame(false, OpCode::Ping, b"x");
        assert!(matches!(
            parse(&mut BytesMut::from(&fragmented_ping[..]), 64),
            Err(FrameError::Protocol(_))
        ));
        let long_ping = client_frame(true, OpCode::Ping, &[0; 126]);
        assert!(matches!(
            parse(&mut BytesMut::from(&long_ping[..]), 1024),
            Err(FrameError::Protocol(_))
        ));
    }

    #[test]
    fn headers_are_encoded_at_every_length_boundary() {
        for (len, expected) in [
            (0, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65535, vec![0x81, 126, 0xff, 0xff]),
            (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            encode_header(&mut out, OpCode::Text, len);
            assert_eq!(out, expected, "{len}");
        }
    }

    #[test]
    fn close_payloads_are_checked() {
        assert_eq!(close_code(b""), Ok(None));
        assert_eq!(close_code(b"\x03\xe8bye"), Ok(Some(1000)));
        assert!(close_code(b"\x03").is_err());
        assert!(close_code(b"\x03\xed").is_err(), "1005 is never sent");
        assert!(close_code(b"\x03\xe8\xff").is_err());
    }
}
