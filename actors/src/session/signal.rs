//! WebRTC signaling in a session room: who is polite in each pair, what a signal may carry, and
//! the relay that holds signals for a peer that is briefly away.
//!
//! **Peers.** Every member of a live session is a peer, named by its attendee id, which stays
//! the same when it reconnects. Signals (offer, answer, ICE candidate) go to one target peer,
//! never to the room.
//!
//! **Perfect negotiation.** Both sides of a pair may offer at once (glare). The hub gives every
//! pair one polite and one impolite side ([`polite`]): the polite side rolls back its own offer
//! and accepts the other's; the impolite side ignores an offer that collides with its own. The
//! presenter is impolite towards everyone else (it is the side that sends media, and its offers
//! should win); between two peers of the same rank the one with the smaller id is impolite. Both
//! sides compute the same answer, so no pair can deadlock.
//!
//! **Checked payloads.** An SDP is parsed line by line ([`check_sdp`]) and a candidate by the
//! grammar of RFC 8839 ([`check_candidate`]), each under a size limit; a malformed one is
//! refused with its own code and nothing is relayed.
//!
//! **Held signals.** Each (sender, target) pair numbers its signals from 1. A signal to a target
//! that is away (disconnected less than [`SIGNAL_GRACE`] ago) is held, at most
//! [`MAX_HELD_PER_PAIR`] per pair; when the target resumes within the grace window it gets every
//! held signal, pair by pair in sequence order, once: a signal leaves the hold as it is handed
//! over. After the grace window the target is gone: its held signals are dropped and the others
//! are told it left ([`Relay::expire`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use signaling::ErrorCode;

use super::qa::SessionRole;

/// A peer: an attendee of the session.
pub type PeerId = signaling::AttendeeId;

/// How long a disconnected peer keeps its place and its held signals.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(15);
/// Most signals held for one (sender, target) pair.
pub const MAX_HELD_PER_PAIR: usize = 128;
/// Most bytes of signals held for one absent target, from all senders together.
pub const MAX_HELD_BYTES_PER_TARGET: usize = 256 * 1024;
/// Largest SDP, in bytes.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Largest ICE candidate line, in bytes.
pub const MAX_CANDIDATE_BYTES: usize = 1024;
/// Most lines in an SDP.
const MAX_SDP_LINES: usize = 2000;
/// Most media sections in an SDP.
const MAX_SDP_MEDIA: usize = 32;

/// Why a signal was refused. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The SDP is malformed or too large.
    #[error("invalid SDP: {0}")]
    InvalidSdp(&'static str),
    /// The candidate is malformed or too large.
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(&'static str),
    /// The target is not a peer of this session (or is gone for good).
    #[error("no such peer in this session")]
    UnknownPeer,
    /// A peer signals itself.
    #[error("a peer cannot signal itself")]
    SelfSignal,
    /// Too many signals held for an absent target.
    #[error("too many signals waiting for this peer")]
    Backlog,
}

impl SignalError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            SignalError::InvalidSdp(_) => ErrorCode::InvalidSdp,
            SignalError::InvalidCandidate(_) => ErrorCode::InvalidCandidate,
            SignalError::UnknownPeer => ErrorCode::PeerNotFound,
            SignalError::SelfSignal => ErrorCode::InvalidPayload,
            SignalError::Backlog => ErrorCode::SignalBacklogFull,
        }
    }
}

/// Whether `me` is the polite side of its pair with `other` (see the module docs).
pub fn polite(me: (PeerId, SessionRole), other: (PeerId, SessionRole)) -> bool {
    let presenting = |r: SessionRole| r == SessionRole::Presenter;
    match (presenting(me.1), presenting(other.1)) {
        (true, false) => false,
        (false, true) => true,
        _ => me.0 > other.0,
    }
}

/// Checks an SDP: `v=0` first, then `<letter>=<value>` lines (`\r\n` or `\n`), an `o=` and an
/// `s=` line before the first `m=`, and each `m=` line naming a media type, a port and a
/// transport; no control characters; at most [`MAX_SDP_BYTES`].
///
/// # Errors
/// [`SignalError::InvalidSdp`] naming the first problem.
pub fn check_sdp(sdp: &str) -> Result<(), SignalError> {
    let bad = SignalError::InvalidSdp;
    if sdp.len() > MAX_SDP_BYTES {
        return Err(bad("too large"));
    }
    let mut lines = sdp
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err(bad("must start with v=0"));
    }
    let (mut origin, mut name, mut media, mut count) = (false, false, 0usize, 1usize);
    for line in lines {
        count += 1;
        if count > MAX_SDP_LINES {
            return Err(bad("too many lines"));
        }
        if line.chars().any(char::is_control) {
            return Err(bad("control character"));
        }
        let mut bytes = line.bytes();
        let (Some(kind), Some(b'=')) = (bytes.next(), bytes.next()) else {
            return Err(bad("a line is not <type>=<value>"));
        };
        if !kind.is_ascii_lowercase() {
            return Err(bad("a line is not <type>=<value>"));
        }
        let value = &line[2..];
        match kind {
            b'o' => origin = true,
            b's' => name = true,
            b'm' => {
                if !(origin && name) {
                    return Err(bad("o= and s= must come before the first m="));
                }
                media += 1;
                if media > MAX_SDP_MEDIA {
                    return Err(bad("too many media sections"));
                }
                check_media(value)?;
            }
            _ => {}
        }
    }
    if !(origin && name) {
        return Err(bad("missing o= or s="));
    }
    Ok(())
}

/// Whether `s` is a plain decimal number (no sign: `str::parse` takes a leading `+`).
fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`.
fn check_media(value: &str) -> Result<(), SignalError> {
    let bad = SignalError::InvalidSdp;
    let mut words = value.split(' ');
    let kind = words.next().unwrap_or("");
    if !matches!(kind, "audio" | "video" | "application" | "text" | "message") {
        return Err(bad("unknown media type"));
    }
    let port = words.next().unwrap_or("");
    let port = port.split_once('/').map_or(port, |(p, _)| p);
    if !is_number(port) || port.parse::<u16>().is_err() {
        return Err(bad("bad media port"));
    }
    let proto = words.next().unwrap_or("");
    if proto.is_empty()
        || !proto
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/')
    {
        return Err(bad("bad media transport"));
    }
    if words.next().is_none() {
        return Err(bad("media without a format"));
    }
    Ok(())
}

/// Checks an ICE candidate attribute (RFC 8839 §5.1): `candidate:<foundation> <component>
/// <transport> <priority> <address> <port> typ <type> [<name> <value>]...`, with or without the
/// `a=` prefix; the empty string (end of candidates) is allowed.
///
/// # Errors
/// [`SignalError::InvalidCandidate`] naming the first problem.
pub fn check_candidate(line: &str) -> Result<(), SignalError> {
    let bad = SignalError::InvalidCandidate;
    if line.is_empty() {
        return Ok(());
    }
    if line.len() > MAX_CANDIDATE_BYTES {
        return Err(bad("too large"));
    }
    if line.chars().any(char::is_control) {
        return Err(bad("control character"));
    }
    let line = line.strip_prefix("a=").unwrap_or(line);
    let Some(rest) = line.strip_prefix("candidate:") else {
        return Err(bad("must start with candidate:"));
    };
    let words: Vec<&str> = rest.split(' ').collect();
    let [
        foundation,
        component,
        transport,
        priority,
        address,
        port,
        typ,
        kind,
        extra @ ..,
    ] = words.as_slice()
    else {
        return Err(bad("too few fields"));
    };
    let ice_char = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    if foundation.is_empty() || foundation.len() > 32 || !foundation.bytes().all(ice_char) {
        return Err(bad("bad foundation"));
    }
    if !is_number(component) || !matches!(component.parse::<u16>(), Ok(1..=256)) {
        return Err(bad("bad component id"));
    }
    if !transport.eq_ignore_ascii_case("udp") && !transport.eq_ignore_ascii_case("tcp") {
        return Err(bad("bad transport"));
    }
    if !is_number(priority) || priority.parse::<u32>().is_err() {
        return Err(bad("bad priority"));
    }
    let host_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-');
    if address.is_empty() || address.len() > 255 || !address.bytes().all(host_char) {
        return Err(bad("bad address"));
    }
    if !is_number(port) || port.parse::<u16>().is_err() {
        return Err(bad("bad port"));
    }
    if *typ != "typ" || !matches!(*kind, "host" | "srflx" | "prflx" | "relay") {
        return Err(bad("bad candidate type"));
    }
    if extra.len() % 2 != 0 || extra.iter().any(|w| w.is_empty()) {
        return Err(bad("extensions come in name value pairs"));
    }
    Ok(())
}

/// What happened to a signal the relay took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed<S> {
    /// Send it to the target now, with this sequence number.
    Deliver(u64, S),
    /// The target is away: held under this sequence number until it resumes.
    Held(u64),
}

/// A signal held for an absent target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSignal<S> {
    /// Who sent it.
    pub from: PeerId,
    /// Its number in the (sender, target) pair.
    pub seq: u64,
    /// The signal.
    pub signal: S,
}

#[derive(Debug)]
struct Pair<S> {
    last_seq: u64,
    held: VecDeque<(u64, S)>,
}

impl<S> Default for Pair<S> {
    fn default() -> Self {
        Self {
            last_seq: 0,
            held: VecDeque::new(),
        }
    }
}

/// The session's signal relay: which peers are here or briefly away, and each pair's numbering
/// and held signals. `S` is the signal as the room relays it.
#[derive(Debug)]
pub struct Relay<S> {
    /// Present peers (`None`) and away ones (since when).
    peers: HashMap<PeerId, Option<Instant>>,
    /// Keyed (sender, target).
    pairs: HashMap<(PeerId, PeerId), Pair<S>>,
    /// Bytes held for each absent target.
    held_bytes: HashMap<PeerId, usize>,
}

impl<S> Default for Relay<S> {
    fn default() -> Self {
        Self {
            peers: HashMap::new(),
            pairs: HashMap::new(),
            held_bytes: HashMap::new(),
        }
    }
}

impl<S> Relay<S> {
    /// A peer arrives, or comes back. Returns the signals held for it, pair by pair in sequence
    /// order; they leave the hold (each is handed over once). A peer that [`Relay::expire`]
    /// already forgot (back after the grace window) gets nothing.
    pub fn arrive(&mut self, peer: PeerId) -> Vec<HeldSignal<S>> {
        self.peers.insert(peer, None);
        self.held_bytes.remove(&peer);
        let mut from: BTreeMap<PeerId, VecDeque<(u64, S)>> = BTreeMap::new();
        for ((sender, target), pair) in &mut self.pairs {
            if *target == peer && !pair.held.is_empty() {
                from.insert(*sender, std::mem::take(&mut pair.held));
            }
        }
        from.into_iter()
            .flat_map(|(from, held)| {
                held.into_iter()
                    .map(move |(seq, signal)| HeldSignal { from, seq, signal })
            })
            .collect()
    }

    /// A peer's last connection went away at `now`: it is away for [`SIGNAL_GRACE`]. (A peer
    /// is an attendee, who may have several connections: the room calls this when the last
    /// one goes.)
    pub fn away(&mut self, peer: PeerId, now: Instant) {
        if let Some(state) = self.peers.get_mut(&peer) {
            *state = Some(now);
        }
    }

    /// A peer left for good (left the session): forgotten at once.
    pub fn leave(&mut self, peer: PeerId) {
        self.forget(peer);
    }

    /// Forgets the peers away longer than the grace window, with their pairs; returns them, so
    /// that the room tells the others they left.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let gone: Vec<PeerId> = self
            .peers
            .iter()
            .filter_map(|(p, away)| {
                away.filter(|since| now.duration_since(*since) >= SIGNAL_GRACE)
                    .map(|_| *p)
            })
            .collect();
        for p in &gone {
            self.forget(*p);
        }
        gone
    }

    /// Whether `peer` is here (not away, not gone).
    pub fn is_present(&self, peer: PeerId) -> bool {
        matches!(self.peers.get(&peer), Some(None))
    }

    /// Takes a checked signal of `bytes` bytes from `from` to `to` at `now`.
    ///
    /// # Errors
    /// The target is unknown or gone, the sender signals itself, or too many signals (or
    /// bytes) are held for it.
    pub fn send(
        &mut self,
        from: PeerId,
        to: PeerId,
        signal: S,
        bytes: usize,
        now: Instant,
    ) -> Result<Relayed<S>, SignalError> {
        if from == to {
            return Err(SignalError::SelfSignal);
        }
        if !self.is_present(from) {
            return Err(SignalError::UnknownPeer);
        }
        let away = match self.peers.get(&to) {
            None => return Err(SignalError::UnknownPeer),
            Some(None) => false,
            Some(Some(since)) if now.duration_since(*since) >= SIGNAL_GRACE => {
                return Err(SignalError::UnknownPeer);
            }
            Some(Some(_)) => true,
        };
        let held_bytes = self.held_bytes.get(&to).copied().unwrap_or(0);
        if away && held_bytes + bytes > MAX_HELD_BYTES_PER_TARGET {
            return Err(SignalError::Backlog);
        }
        let pair = self.pairs.entry((from, to)).or_default();
        if away && pair.held.len() >= MAX_HELD_PER_PAIR {
            return Err(SignalError::Backlog);
        }
        pair.last_seq += 1;
        let seq = pair.last_seq;
        if away {
            pair.held.push_back((seq, signal));
            self.held_bytes.insert(to, held_bytes + bytes);
            Ok(Relayed::Held(seq))
        } else {
            Ok(Relayed::Deliver(seq, signal))
        }
    }

    fn forget(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.held_bytes.remove(&peer);
        self.pairs.retain(|(a, b), _| *a != peer && *b != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
        c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sctp-port:5000\r\n";

    #[test]
    fn a_real_offer_passes_and_malformed_ones_are_refused_with_the_reason() {
        assert_eq!(check_sdp(OFFER), Ok(()));
        assert_eq!(check_sdp(&OFFER.replace("\r\n", "\n")), Ok(()), "bare LF");
        let refused = |sdp: &str| match check_sdp(sdp) {
            Err(SignalError::InvalidSdp(why)) => why,
            other => panic!("{sdp:?}: {other:?}"),
        };
        let control = OFFER.replace("a=mid:0", "a=mid:\u{7}");
        for (sdp, why) in [
            ("", "must start with v=0"),
            ("hello", "must start with v=0"),
            (
                "v=0\r\nm=audio 9 RTP/AVP 0\r\n",
                "o= and s= must come before the first m=",
            ),
            ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "missing o= or s="),
            (
                &OFFER.replace("m=application 9", "m=application 99999"),
                "bad media port",
            ),
            (
                &OFFER.replace("m=application", "m=hologram"),
                "unknown media type",
            ),
            (
                &OFFER.replace("a=mid:0", "garbage"),
                "a line is not <type>=<value>",
            ),
            (&control, "control character"),
        ] {
            assert_eq!(refused(sdp), why, "{sdp:?}");
        }
        let huge = format!("{OFFER}{}", "a=x\r\n".repeat(MAX_SDP_BYTES / 5));
        assert_eq!(refused(&huge), "too large");
        assert_eq!(SignalError::InvalidSdp("x").code(), "invalid_sdp");
    }

    #[test]
    fn candidates_follow_rfc_8839() {
        for ok in [
            "candidate:842163049 1 udp 1677729535 192.0.2.3 46154 typ srflx raddr 10.0.1.1 rport 46154 generation 0",
            "a=candidate:1 1 UDP 2130706431 10.0.1.1 8998 typ host",
            "candidate:2 1 tcp 1518280447 2001:db8::1 9 typ host tcptype active",
            "candidate:3 1 udp 2122260223 3f2d7a4e-6b9c-4c1e-9d2a-1b2c3d4e5f60.local 54321 typ host",
            "",
        ] {
            assert_eq!(check_candidate(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("candidate:1 1 udp 1 10.0.0.1 9 typ", "too few fields"),
            (
                "cand:1 1 udp 1 10.0.0.1 9 typ host",
                "must start with candidate:",
            ),
            (
                "candidate:1 0 udp 1 10.0.0.1 9 typ host",
                "bad component id",
            ),
            ("candidate:1 1 sctp 1 10.0.0.1 9 typ host", "bad transport"),
            ("candidate:1 1 udp -5 10.0.0.1 9 typ host", "bad priority"),
            ("candidate:1 1 udp 1 10.0.0.1 70000 typ host", "bad port"),
            ("candidate:1 1 udp 1 10.0.0.1 +9 typ host", "bad port"),
            (
                "candidate:1 +1 udp 1 10.0.0.1 9 typ host",
                "bad component id",
            ),
            (
                "candidate:1 1 udp 1 10.0.0.1 9 typ magic",
                "bad candidate type",
            ),
            ("candidate:1 1 udp 1 <script> 9 typ host", "bad address"),
            (
                "candidate:1 1 udp 1 10.0.0.1 9 typ host raddr",
                "extensions come in name value pairs",
            ),
        ] {
            assert_eq!(
                check_candidate(bad),
                Err(SignalError::InvalidCandidate(why)),
                "{bad}"
            );
        }
        let long = format!(
            "candidate:1 1 udp 1 10.0.0.1 9 typ host{}",
            " a b".repeat(400)
        );
        assert_eq!(
            check_candidate(&long),
            Err(SignalError::InvalidCandidate("too large"))
        );
    }

    #[test]
    fn every_pair_has_exactly_one_polite_side_and_the_presenter_is_impolite() {
        let ids: Vec<PeerId> = (0..4).map(|_| PeerId::new()).collect();
        let roles = [
            SessionRole::Presenter,
            SessionRole::Presenter,
            SessionRole::Attendee,
            SessionRole::Moderator,
        ];
        for i in 0..ids.len() {
            for j in 0..ids.len() {
                if i == j {
                    continue;
                }
                let (a, b) = ((ids[i], roles[i]), (ids[j], roles[j]));
                assert_ne!(polite(a, b), polite(b, a), "one polite side in {i}-{j}");
            }
        }
        assert!(!polite((ids[0], roles[0]), (ids[2], roles[2])));
        assert!(polite((ids[2], roles[2]), (ids[0], roles[0])));
    }

    #[test]
    fn signals_to_a_peer_away_are_held_and_handed_over_once_in_order() {
        let mut relay: Relay<&str> = Relay::default();
        let (p, a, b) = (PeerId::new(), PeerId::new(), PeerId::new());
        let t0 = Instant::now();
        for peer in [p, a, b] {
            assert!(relay.arrive(peer).is_empty());
        }
        assert_eq!(
            relay.send(p, a, "offer", 10, t0),
            Ok(Relayed::Deliver(1, "offer"))
        );
        relay.away(a, t0);
        assert_eq!(relay.send(p, a, "ice-1", 10, t0), Ok(Relayed::Held(2)));
        assert_eq!(relay.send(b, a, "hello", 10, t0), Ok(Relayed::Held(1)));
        assert_eq!(relay.send(p, a, "ice-2", 10, t0), Ok(Relayed::Held(3)));
        assert_eq!(
            relay.send(a, p, "from away", 10, t0),
            Err(SignalError::UnknownPeer)
        );
        let back: Vec<(PeerId, u64, &str)> = relay
            .arrive(a)
            .into_iter()
            .map(|h| (h.from, h.seq, h.signal))
            .collect();
        let of = |sender: PeerId| -> Vec<(u64, &str)> {
            back.iter()
                .filter(|h| h.0 == sender)
                .map(|h| (h.1, h.2))
                .collect()
        };
        assert_eq!(of(p), vec![(2, "ice-1"), (3, "ice-2")], "in order");
        assert_eq!(of(b), vec![(1, "hello")]);
        assert_eq!(back.len(), 3);
        assert!(relay.arrive(a).is_empty(), "handed over once");
        assert_eq!(
            relay.send(p, a, "answer", 10, t0),
            Ok(Relayed::Deliver(4, "answer")),
            "the numbering goes on"
        );
        assert_eq!(relay.send(p, p, "me", 10, t0), Err(SignalError::SelfSignal));
        assert_eq!(
            relay.send(p, PeerId::new(), "x", 10, t0),
            Err(SignalError::UnknownPeer)
        );
    }

    #[test]
    fn after_the_grace_window_a_peer_is_gone_with_its_held_signals() {
        let mut relay: Relay<u32> = Relay::default();
        let (p, a) = (PeerId::new(), PeerId::new());
        let t0 = Instant::now();
        relay.arrive(p);
        relay.arrive(a);
        relay.away(a, t0);
        for i in 0..MAX_HELD_PER_PAIR {
            assert!(
                matches!(relay.send(p, a, 0, 10, t0), Ok(Relayed::Held(_))),
                "{i}"
            );
        }
        assert_eq!(relay.send(p, a, 0, 10, t0), Err(SignalError::Backlog));
        let other = PeerId::new();
        relay.arrive(other);
        let big = MAX_HELD_BYTES_PER_TARGET - 10 * MAX_HELD_PER_PAIR;
        assert_eq!(
            relay.send(other, a, 0, big + 1, t0),
            Err(SignalError::Backlog),
            "bytes held for a, from everyone"
        );
        assert!(matches!(
            relay.send(other, a, 0, big, t0),
            Ok(Relayed::Held(_))
        ));
        assert!(relay.expire(t0 + SIGNAL_GRACE / 2).is_empty());
        let late = t0 + SIGNAL_GRACE;
        assert_eq!(relay.send(p, a, 0, 10, late), Err(SignalError::UnknownPeer));
        assert_eq!(relay.expire(late), vec![a]);
        assert!(relay.arrive(a).is_empty(), "back too late: nothing held");
        assert_eq!(
            relay.send(p, a, 7, 10, late),
            Ok(Relayed::Deliver(1, 7)),
            "a new start"
        );
        relay.leave(p);
        assert_eq!(relay.send(p, a, 0, 10, late), Err(SignalError::UnknownPeer));
    }
}
