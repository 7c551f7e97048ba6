//! The check at the end of a votes run: each session's totals as the hub reports them (`GET
//! /api/v1/sessions/{id}/questions`, as the presenter) and as the voters last saw them (the
//! latest `question` frame of each question), held against what the acknowledged votes make
//! them (`book.rs`), and the tally of it all into one [`Outcome`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use uuid::Uuid;

use super::book::{
    Disagreement, Expected, Ledger, Seen, Totals, Verdict, expected, later, verdict,
};
use super::setup::{self, Fixture};
use crate::rest::Api;

/// Questions that did not agree listed in the report (all are counted).
pub const PROBLEMS_LISTED: usize = 20;
/// Ack disagreements kept as examples for the report.
const EXAMPLES_KEPT: usize = 10;

/// The overall result of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every question's totals are exactly what the acked votes make them.
    Pass,
    /// No contradiction, but unanswered votes leave some totals unproven.
    Inconclusive,
    /// The hub reported totals (or acks) that the votes contradict.
    Fail,
}

/// The check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The result.
    pub result: Outcome,
    /// Questions checked.
    pub questions: usize,
    /// Their REST totals, by verdict.
    pub rest: BTreeMap<&'static str, usize>,
    /// Their latest `question` frame's totals, by verdict (`not_seen` when no voter saw one).
    pub frames: BTreeMap<&'static str, usize>,
    /// Whether a frame mismatch fails the run: only when no voter was lost (the voter that cast
    /// a question's last change is sure to have seen its frame only if it held on).
    pub frames_binding: bool,
    /// Acks whose offset contradicted the votes (`null` for a change, or an offset for none).
    pub ack_disagreements: u64,
    /// The first few, by voter index.
    pub ack_disagreement_examples: Vec<(usize, Disagreement)>,
    /// Sessions whose totals could not be read, with the error.
    pub unread_sessions: Vec<String>,
    /// The first [`PROBLEMS_LISTED`] questions that did not agree.
    pub problems: Vec<QuestionCheck>,
}

/// One question's check.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionCheck {
    /// Its session's index.
    pub session: usize,
    /// Its index in the session.
    pub question: usize,
    /// Its id.
    pub id: Uuid,
    /// What the acked votes make it.
    pub expected: Expected,
    /// What `GET /sessions/{id}/questions` says.
    pub rest: Option<Totals>,
    /// `rest` against `expected`.
    pub rest_verdict: Verdict,
    /// The latest `question` frame's totals.
    pub frame: Option<Totals>,
    /// `frame` against `expected`; `null` when no frame was seen.
    pub frame_verdict: Option<Verdict>,
}

impl Check {
    /// Tallies the questions' checks into a result. Lost voters make frame mismatches advisory.
    pub fn new(
        all: Vec<QuestionCheck>,
        disagreements: (u64, Vec<(usize, Disagreement)>),
        unread_sessions: Vec<String>,
        voters_lost: bool,
    ) -> Check {
        let label = |v: Verdict| match v {
            Verdict::Agrees => "agree",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Mismatch => "mismatch",
            Verdict::Missing => "missing",
        };
        let mut rest = BTreeMap::new();
        let mut frames = BTreeMap::new();
        for q in &all {
            *rest.entry(label(q.rest_verdict)).or_insert(0) += 1;
            let f = q.frame_verdict.map_or("not_seen", label);
            *frames.entry(f).or_insert(0) += 1;
        }
        let frames_binding = !voters_lost;
        let failed = all.iter().any(|q| {
            matches!(q.rest_verdict, Verdict::Mismatch | Verdict::Missing)
                || (frames_binding && q.frame_verdict == Some(Verdict::Mismatch))
        }) || disagreements.0 > 0
            || !unread_sessions.is_empty();
        let unsure = all.iter().any(|q| {
            q.rest_verdict == Verdict::Inconclusive
                || q.frame_verdict == Some(Verdict::Inconclusive)
        });
        let result = if failed {
            Outcome::Fail
        } else if unsure {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        };
        let problems = all
            .into_iter()
            .filter(|q| {
                q.rest_verdict != Verdict::Agrees
                    || q.frame_verdict.is_some_and(|v| v != Verdict::Agrees)
            })
            .take(PROBLEMS_LISTED)
            .collect();
        Check {
            result,
            questions: rest.values().sum(),
            rest,
            frames,
            frames_binding,
            ack_disagreements: disagreements.0,
            ack_disagreement_examples: disagreements.1,
            unread_sessions,
            problems,
        }
    }
}

/// Holds each session's totals, as the hub reports them and as the voters last saw them,
/// against what the acked votes make them.
pub async fn run(
    api: &Api,
    fixture: &Fixture,
    ledgers: &[(usize, usize, Ledger)],
    voters_lost: bool,
) -> Check {
    let mut all = Vec::new();
    let mut unread = Vec::new();
    for (s, session) in fixture.sessions.iter().enumerate() {
        let mine: Vec<&Ledger> = ledgers
            .iter()
            .filter(|(_, sess, _)| *sess == s)
            .map(|(_, _, l)| l)
            .collect();
        let want = expected(&session.baseline, mine.iter().copied());
        let reported = match setup::reported_totals(api, &fixture.presenter, session.id).await {
            Ok(map) => map,
            Err(e) => {
                unread.push(format!("session {s} ({}): {e:#}", session.id));
                HashMap::new()
            }
        };
        for (k, (&id, &exp)) in session.questions.iter().zip(&want).enumerate() {
            let seen: Option<Seen> = mine
                .iter()
                .fold(None, |acc, l| later(acc, l.seen.get(k).copied().flatten()));
            let rest = reported.get(&id).copied();
            let frame = seen.map(|s| s.totals);
            all.push(QuestionCheck {
                session: s,
                question: k,
                id,
                expected: exp,
                rest,
                rest_verdict: verdict(exp, rest),
                frame,
                frame_verdict: frame.map(|f| verdict(exp, Some(f))),
            });
        }
    }
    let count = ledgers.iter().map(|(_, _, l)| l.disagreements).sum();
    let examples: Vec<(usize, Disagreement)> = ledgers
        .iter()
        .flat_map(|(idx, _, l)| l.examples.iter().map(move |d| (*idx, *d)))
        .take(EXAMPLES_KEPT)
        .collect();
    Check::new(all, (count, examples), unread, voters_lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(rest: Verdict, frame: Option<Verdict>) -> QuestionCheck {
        QuestionCheck {
            session: 0,
            question: 1,
            id: Uuid::nil(),
            expected: Expected::default(),
            rest: Some(Totals { up: 1, down: 0 }),
            rest_verdict: rest,
            frame: None,
            frame_verdict: frame,
        }
    }

    #[test]
    fn any_contradiction_fails_and_unanswered_votes_leave_it_open() {
        let none = || (0, Vec::new());
        let ok = Check::new(vec![q(Verdict::Agrees, None)], none(), vec![], false);
        assert_eq!(ok.result, Outcome::Pass);
        assert!(ok.problems.is_empty());
        assert_eq!(ok.frames.get("not_seen"), Some(&1));
        let open = Check::new(
            vec![q(Verdict::Agrees, None), q(Verdict::Inconclusive, None)],
            none(),
            vec![],
            false,
        );
        assert_eq!(open.result, Outcome::Inconclusive);
        let bad = Check::new(
            vec![q(Verdict::Mismatch, Some(Verdict::Agrees))],
            none(),
            vec![],
            false,
        );
        assert_eq!(bad.result, Outcome::Fail);
        assert_eq!(bad.problems.len(), 1);
        let acks = Check::new(vec![q(Verdict::Agrees, None)], (1, vec![]), vec![], false);
        assert_eq!(acks.result, Outcome::Fail);
        let unread = Check::new(vec![], none(), vec!["session 0: HTTP 500".into()], false);
        assert_eq!(unread.result, Outcome::Fail);
    }

    #[test]
    fn frame_mismatches_fail_only_when_no_voter_was_lost() {
        let frames = || vec![q(Verdict::Agrees, Some(Verdict::Mismatch))];
        let held = Check::new(frames(), (0, vec![]), vec![], false);
        assert_eq!(held.result, Outcome::Fail);
        let lost = Check::new(frames(), (0, vec![]), vec![], true);
        assert_eq!(lost.result, Outcome::Pass);
        assert!(!lost.frames_binding);
        assert_eq!(lost.problems.len(), 1, "still listed");
    }
}
