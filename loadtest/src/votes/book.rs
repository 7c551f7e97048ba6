//! The bookkeeping of the votes and the check at the end, as plain functions (no socket, no
//! clock of their own: instants are passed in).
//!
//! - [`Book`]: one voter's votes from send to answer. A vote is an absolute setting (up, down or
//!   none), so after an `ack` the voter's vote on that question *is* the vote sent, whether the
//!   hub journaled it (`"offset": n`) or found it already so (`"offset": null`); an `error`
//!   changed nothing. A guest has one connection, and one connection's commands reach the room
//!   and come back in order, so acks are applied in the order they arrive; the offset of each
//!   is also checked against the book (`null` exactly when the vote was already that).
//! - [`Ledger`]: a finished book: each question's vote, the questions whose last vote was
//!   never answered (its effect unknown), and the latest `question` frame the voter saw of each.
//! - [`expected`] adds a session's ledgers to the totals each question should show, and
//!   [`verdict`] holds a reported pair of totals against them.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use signaling::session::Vote;

/// A voter's vote on one question: up, down, or none (`null` on the wire).
pub type Choice = Option<Vote>;

/// Disagreements kept as examples per voter (all are counted).
const EXAMPLES_KEPT: usize = 4;

/// Up and down votes on one question.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Up votes.
    pub up: u64,
    /// Down votes.
    pub down: u64,
}

impl Totals {
    /// Counts one voter's vote.
    pub fn count(&mut self, choice: Choice) {
        match choice {
            Some(Vote::Up) => self.up += 1,
            Some(Vote::Down) => self.down += 1,
            None => {}
        }
    }
}

/// A vote written and not answered yet.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    question: usize,
    vote: Choice,
    sent: Instant,
}

/// How an answer was filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// The `ack` of a vote in flight.
    Acked {
        /// From the write to the ack.
        latency_micros: u64,
        /// The hub journaled it (the ack carried an offset).
        changed: bool,
    },
    /// An `error` answering a vote in flight.
    Refused,
    /// The `ref` is no vote in flight: an answer twice, or to something else.
    Unknown,
}

/// An ack whose offset contradicts the book: `null` for a vote that changed something, or an
/// offset for one that did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    /// The question's index in its session.
    pub question: usize,
    /// The vote's `ref`.
    #[serde(rename = "ref")]
    pub reference: u64,
    /// The voter's vote before it, by the book.
    pub before: Choice,
    /// The vote.
    pub vote: Choice,
    /// The ack's offset.
    pub offset: Option<u64>,
}

/// One voter's votes in flight and as acknowledged.
#[derive(Debug)]
pub struct Book {
    in_flight: BTreeMap<u64, InFlight>,
    /// The voter's vote on each question after the acks so far.
    acked: Vec<Choice>,
    /// The `ref` of the last vote acked on each question (0: none).
    last_acked: Vec<u64>,
    /// Ack latencies in microseconds.
    samples: Vec<u32>,
    disagreements: u64,
    examples: Vec<Disagreement>,
    /// The latest `question` frame seen of each question.
    seen: Vec<Option<Seen>>,
}

/// A finished [`Book`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The voter's vote on each question, by the acks.
    pub votes: Vec<Choice>,
    /// Questions whose last vote was never answered: the hub may or may not have it.
    pub uncertain: Vec<bool>,
    /// Votes never answered.
    pub unanswered: u64,
    /// Ack latencies in microseconds.
    pub samples: Vec<u32>,
    /// Acks whose offset contradicted the book.
    pub disagreements: u64,
    /// The first few of them.
    pub examples: Vec<Disagreement>,
    /// The latest `question` frame the voter saw of each question.
    pub seen: Vec<Option<Seen>>,
}

impl Book {
    /// An empty book for a session of `questions` questions.
    pub fn new(questions: usize) -> Book {
        Book {
            in_flight: BTreeMap::new(),
            acked: vec![None; questions],
            last_acked: vec![0; questions],
            samples: Vec::new(),
            disagreements: 0,
            examples: Vec::new(),
            seen: vec![None; questions],
        }
    }

    /// Votes written and not answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A vote is about to be written.
    pub fn sent(&mut self, reference: u64, question: usize, vote: Choice, at: Instant) {
        self.in_flight.insert(
            reference,
            InFlight {
                question,
                vote,
                sent: at,
            },
        );
    }

    /// An `ack` with `"offset": offset` arrived for `reference`.
    pub fn acked(&mut self, reference: u64, offset: Option<u64>, at: Instant) -> Filed {
        let Some(v) = self.in_flight.remove(&reference) else {
            return Filed::Unknown;
        };
        let latency = at.saturating_duration_since(v.sent);
        let latency_micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.samples
            .push(crate::stats::sample_micros(latency_micros));
        let (Some(before), Some(last)) = (
            self.acked.get_mut(v.question),
            self.last_acked.get_mut(v.question),
        ) else {
            return Filed::Unknown;
        };
        let changed = offset.is_some();
        if changed == (*before == v.vote) {
            self.disagreements += 1;
            if self.examples.len() < EXAMPLES_KEPT {
                self.examples.push(Disagreement {
                    question: v.question,
                    reference,
                    before: *before,
                    vote: v.vote,
                    offset,
                });
            }
        }
        *before = v.vote;
        *last = (*last).max(reference);
        Filed::Acked {
            latency_micros,
            changed,
        }
    }

    /// An `error` arrived for `reference`.
    pub fn refused(&mut self, reference: u64) -> Filed {
        match self.in_flight.remove(&reference) {
            Some(_) => Filed::Refused,
            None => Filed::Unknown,
        }
    }

    /// A `question` frame of question `question` arrived.
    pub fn saw(&mut self, question: usize, frame: Seen) {
        if let Some(slot) = self.seen.get_mut(question) {
            *slot = later(*slot, Some(frame));
        }
    }

    /// Closes the book. A vote still in flight leaves its question uncertain unless a later vote
    /// on it was acked (replies come in order, so that one was applied after it).
    pub fn finish(self) -> Ledger {
        let mut uncertain = vec![false; self.acked.len()];
        for (reference, v) in &self.in_flight {
            if let (Some(u), Some(last)) = (
                uncertain.get_mut(v.question),
                self.last_acked.get(v.question),
            ) && reference > last
            {
                *u = true;
            }
        }
        Ledger {
            votes: self.acked,
            uncertain,
            unanswered: self.in_flight.len() as u64,
            samples: self.samples,
            disagreements: self.disagreements,
            examples: self.examples,
            seen: self.seen,
        }
    }
}

/// What one question should show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Expected {
    /// Its totals from the voters whose vote on it is known (and its totals when asked).
    pub totals: Totals,
    /// Voters whose last vote on it was never answered: each may add one up or one down.
    pub uncertain: u64,
}

/// The totals a session's questions should show: `baseline` (each question's totals when it
/// was asked) plus every known vote of the session's voters.
pub fn expected<'a>(
    baseline: &[Totals],
    ledgers: impl IntoIterator<Item = &'a Ledger>,
) -> Vec<Expected> {
    let mut out: Vec<Expected> = baseline
        .iter()
        .map(|&totals| Expected {
            totals,
            uncertain: 0,
        })
        .collect();
    for ledger in ledgers {
        for (q, e) in out.iter_mut().enumerate() {
            if ledger.uncertain.get(q).copied().unwrap_or(false) {
                e.uncertain += 1;
            } else if let Some(&vote) = ledger.votes.get(q) {
                e.totals.count(vote);
            }
        }
    }
    out
}

/// How reported totals compare with the expected ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exactly the expected totals.
    Agrees,
    /// Totals the unanswered votes could explain, but not proof.
    Inconclusive,
    /// Totals no outcome of the votes explains.
    Mismatch,
    /// Nothing reported for the question.
    Missing,
}

/// Holds `reported` against `expected`.
pub fn verdict(expected: Expected, reported: Option<Totals>) -> Verdict {
    let Some(r) = reported else {
        return Verdict::Missing;
    };
    let e = expected.totals;
    if expected.uncertain == 0 {
        return if r == e {
            Verdict::Agrees
        } else {
            Verdict::Mismatch
        };
    }
    // Each uncertain voter adds at most one vote, up or down.
    let explained =
        r.up >= e.up && r.down >= e.down && (r.up - e.up) + (r.down - e.down) <= expected.uncertain;
    if explained {
        Verdict::Inconclusive
    } else {
        Verdict::Mismatch
    }
}

/// The latest `question` frame seen for one question: its offset and totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The frame's offset.
    pub offset: u64,
    /// Its totals.
    pub totals: Totals,
}

/// Keeps the later of two sightings of a question's frames, by offset.
pub fn later(a: Option<Seen>, b: Option<Seen>) -> Option<Seen> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.offset > x.offset { y } else { x }),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const UP: Choice = Some(Vote::Up);
    const DOWN: Choice = Some(Vote::Down);

    fn t(up: u64, down: u64) -> Totals {
        Totals { up, down }
    }

    #[test]
    fn acked_votes_set_the_voters_vote_and_refused_ones_change_nothing() {
        let t0 = Instant::now();
        let mut b = Book::new(2);
        b.sent(3, 0, UP, t0);
        b.sent(4, 0, DOWN, t0);
        b.sent(5, 1, UP, t0);
        assert_eq!(b.in_flight(), 3);
        let later = t0 + Duration::from_millis(2);
        assert_eq!(
            b.acked(3, Some(10), later),
            Filed::Acked {
                latency_micros: 2000,
                changed: true
            }
        );
        assert_eq!(b.refused(4), Filed::Refused);
        assert!(matches!(b.acked(5, Some(11), later), Filed::Acked { .. }));
        // Answered twice, or never asked.
        assert_eq!(b.acked(5, Some(11), later), Filed::Unknown);
        assert_eq!(b.refused(99), Filed::Unknown);
        let l = b.finish();
        assert_eq!(l.votes, vec![UP, UP], "the refused DOWN changed nothing");
        assert_eq!(l.uncertain, vec![false, false]);
        assert_eq!((l.unanswered, l.disagreements), (0, 0));
        assert_eq!(l.samples, vec![2000, 2000]);
    }

    #[test]
    fn a_null_offset_must_mean_the_vote_was_already_that() {
        let t0 = Instant::now();
        let mut b = Book::new(1);
        b.sent(3, 0, UP, t0);
        b.acked(3, Some(1), t0);
        // UP again: nothing to journal.
        b.sent(4, 0, UP, t0);
        assert!(matches!(
            b.acked(4, None, t0),
            Filed::Acked { changed: false, .. }
        ));
        // Clearing changes something: an offset is due, null is a contradiction.
        b.sent(5, 0, None, t0);
        b.acked(5, None, t0);
        // Clearing again: an offset is the contradiction now.
        b.sent(6, 0, None, t0);
        b.acked(6, Some(2), t0);
        let l = b.finish();
        assert_eq!(l.disagreements, 2);
        assert_eq!(
            l.examples[0],
            Disagreement {
                question: 0,
                reference: 5,
                before: UP,
                vote: None,
                offset: None
            }
        );
        assert_eq!(l.examples[1].offset, Some(2));
        assert_eq!(l.votes, vec![None]);
    }

    #[test]
    fn an_unanswered_last_vote_leaves_its_question_uncertain() {
        let t0 = Instant::now();
        let mut b = Book::new(3);
        // Question 0: an older vote unanswered, a later one acked: known.
        b.sent(3, 0, DOWN, t0);
        b.sent(4, 0, UP, t0);
        b.acked(4, Some(1), t0);
        // Question 1: the last vote unanswered.
        b.sent(5, 1, UP, t0);
        b.acked(5, Some(2), t0);
        b.sent(6, 1, DOWN, t0);
        // Question 2: untouched.
        let l = b.finish();
        assert_eq!(l.uncertain, vec![false, true, false]);
        assert_eq!(l.unanswered, 2);
        assert_eq!(l.votes, vec![UP, UP, None]);
    }

    #[test]
    fn expected_totals_add_the_known_votes_to_the_baseline() {
        let ledger = |votes: Vec<Choice>, uncertain: Vec<bool>| Ledger {
            votes,
            uncertain,
            ..Ledger::default()
        };
        let ledgers = [
            ledger(vec![UP, DOWN, None], vec![false; 3]),
            ledger(vec![UP, UP, DOWN], vec![false, false, true]),
            // A voter that never connected.
            Ledger::default(),
        ];
        let e = expected(&[t(0, 0), t(1, 0), t(0, 0)], &ledgers);
        assert_eq!(e[0].totals, t(2, 0));
        assert_eq!(e[1].totals, t(2, 1));
        assert_eq!(
            e[2],
            Expected {
                totals: t(0, 0),
                uncertain: 1
            }
        );
    }

    #[test]
    fn verdicts_are_exact_unless_unanswered_votes_leave_room() {
        let sure = Expected {
            totals: t(5, 2),
            uncertain: 0,
        };
        assert_eq!(verdict(sure, Some(t(5, 2))), Verdict::Agrees);
        assert_eq!(verdict(sure, Some(t(6, 1))), Verdict::Mismatch);
        assert_eq!(verdict(sure, None), Verdict::Missing);
        let open = Expected {
            totals: t(5, 2),
            uncertain: 2,
        };
        assert_eq!(verdict(open, Some(t(5, 2))), Verdict::Inconclusive);
        assert_eq!(verdict(open, Some(t(6, 3))), Verdict::Inconclusive);
        assert_eq!(verdict(open, Some(t(7, 3))), Verdict::Mismatch);
        assert_eq!(verdict(open, Some(t(4, 2))), Verdict::Mismatch);
    }

    #[test]
    fn the_latest_frame_wins_by_offset() {
        let first = Seen {
            offset: 7,
            totals: t(1, 0),
        };
        let second = Seen {
            offset: 9,
            totals: t(0, 1),
        };
        let (a, b) = (Some(first), Some(second));
        assert_eq!(later(a, b), b);
        assert_eq!(later(b, a), b);
        assert_eq!(later(None, a), a);
        assert_eq!(later(a, None), a);
        assert_eq!(later(None, None), None);
        let mut book = Book::new(2);
        book.saw(1, second);
        book.saw(1, first);
        book.saw(5, first);
        assert_eq!(book.finish().seen, vec![None, b]);
    }
}
