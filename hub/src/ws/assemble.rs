//! Reassembles fragmented WebSocket messages under a size budget.
//!
//! A client may split one message into any number of fragments. The budget is counted as the
//! fragments arrive, and the reader lowers the transport's per-frame limit to what is left of it
//! ([`Assembler::budget`]) before each read, so a fragment that would take the message past the
//! hard cap is refused from its header, before its payload is buffered. Unfragmented messages
//! (nearly all of them) are handed through without a copy.

use signaling::frame::OpCode;

/// Why a message could not be reassembled. Each closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssembleError {
    /// The message reached the hard cap (close 1009).
    TooLarge,
    /// A text message is not valid UTF-8 (close 1007).
    InvalidUtf8,
    /// A continuation without a start, or a new message inside a fragmented one (close 1002).
    Protocol,
}

/// A complete data message.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// A text message (else binary).
    pub text: bool,
    /// Its payload.
    pub payload: &'a [u8],
}

/// One connection's reassembly state.
#[derive(Debug)]
pub struct Assembler {
    hard_cap: usize,
    /// The fragments so far (empty when no message is in progress).
    buf: Vec<u8>,
    /// The opcode of the message in progress.
    opcode: Option<OpCode>,
    /// The last call returned a message out of `buf`: clear it before the next fragment.
    handed_out: bool,
}

impl Assembler {
    /// Messages of `hard_cap` bytes or more are refused.
    pub fn new(hard_cap: usize) -> Self {
        Self {
            hard_cap,
            buf: Vec::new(),
            opcode: None,
            handed_out: false,
        }
    }

    /// The largest next frame payload that keeps the message under the hard cap (the reader
    /// sets it as the transport's frame limit, which refuses payloads of this size or more).
    pub fn budget(&self) -> usize {
        if self.handed_out {
            self.hard_cap
        } else {
            self.hard_cap.saturating_sub(self.buf.len())
        }
    }

    /// Takes one data frame (`Text`, `Binary` or `Continuation`). Returns the message when this
    /// frame completes one.
    ///
    /// # Errors
    /// See [`AssembleError`].
    pub fn push<'a>(
        &'a mut self,
        fin: bool,
        opcode: OpCode,
        payload: &'a [u8],
    ) -> Result<Option<Message<'a>>, AssembleError> {
        if self.handed_out {
            self.handed_out = false;
            self.buf.clear();
            // A large message's buffer is not kept for the life of the connection.
            if self.buf.capacity() > 64 * 1024 {
                self.buf = Vec::new();
            }
        }
        match (opcode, self.opcode) {
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(AssembleError::Protocol),
            (OpCode::Continuation, None) => Err(AssembleError::Protocol),
            (OpCode::Text | OpCode::Binary, None) if fin => {
                // The transport has already checked a whole text frame's UTF-8.
                Ok(Some(Message {
                    text: opcode == OpCode::Text,
                    payload,
                }))
            }
            (OpCode::Text | OpCode::Binary, None) => {
                self.append(payload)?;
                self.opcode = Some(opcode);
                Ok(None)
            }
            (OpCode::Continuation, Some(first)) => {
                self.append(payload)?;
                if !fin {
                    return Ok(None);
                }
                self.opcode = None;
                self.handed_out = true;
                let text = first == OpCode::Text;
                if text && std::str::from_utf8(&self.buf).is_err() {
                    return Err(AssembleError::InvalidUtf8);
                }
                Ok(Some(Message {
                    text,
                    payload: &self.buf,
                }))
            }
            _ => Ok(None),
        }
    }

    fn append(&mut self, payload: &[u8]) -> Result<(), AssembleError> {
        if self.buf.len() + payload.len() >= self.hard_cap {
            return Err(AssembleError::TooLarge);
        }
        self.buf.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_messages_pass_through() {
        let mut a = Assembler::new(100);
        let m = a.push(true, OpCode::Text, b"hi").unwrap().unwrap();
        assert_eq!(
            m,
            Message {
                text: true,
                payload: b"hi"
            }
        );
        assert_eq!(a.budget(), 100);
    }

    #[test]
    fn fragments_are_joined_and_the_budget_shrinks_as_they_arrive() {
        let mut a = Assembler::new(100);
        assert_eq!(a.push(false, OpCode::Text, b"{\"a\":").unwrap(), None);
        assert_eq!(a.budget(), 95);
        assert_eq!(a.push(false, OpCode::Continuation, b"1").unwrap(), None);
        assert_eq!(a.budget(), 94);
        let m = a.push(true, OpCode::Continuation, b"}").unwrap().unwrap();
        assert_eq!(m.payload, b"{\"a\":1}");
        assert!(m.text);
        assert_eq!(a.budget(), 100, "the next message starts afresh");
        let m = a.push(true, OpCode::Binary, b"x").unwrap().unwrap();
        assert!(!m.text);
    }

    #[test]
    fn many_small_fragments_cannot_pass_the_hard_cap() {
        let mut a = Assembler::new(1024);
        a.push(false, OpCode::Text, &[b'a'; 100]).unwrap();
        let mut refused = false;
        for _ in 0..100 {
            match a.push(false, OpCode::Continuation, &[b'a'; 100]) {
                Ok(_) => assert!(a.budget() > 0),
                Err(e) => {
                    assert_eq!(e, AssembleError::TooLarge);
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused);
        assert!(a.buf.len() < 1024, "never buffered past the cap");
    }

    #[test]
    fn utf8_is_checked_across_fragments() {
        let mut a = Assembler::new(100);
        let e = "é".as_bytes();
        a.push(false, OpCode::Text, &e[..1]).unwrap();
        assert!(
            a.push(true, OpCode::Continuation, &e[1..])
                .unwrap()
                .is_some()
        );
        a.push(false, OpCode::Text, &e[..1]).unwrap();
        assert_eq!(
            a.push(true, OpCode::Continuation, b"x"),
            Err(AssembleError::InvalidUtf8)
        );
    }

    #[test]
    fn stray_or_interleaved_fragments_are_protocol_errors() {
        let mut a = Assembler::new(100);
        assert_eq!(
            a.push(true, OpCode::Continuation, b"x"),
            Err(AssembleError::Protocol)
        );
        a.push(false, OpCode::Text, b"x").unwrap();
        assert_eq!(
            a.push(true, OpCode::Text, b"y"),
            Err(AssembleError::Protocol)
        );
    }
}
