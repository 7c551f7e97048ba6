//! The fixture of a votes run, over the REST API: one registered presenter creates and starts
//! S sessions; N guests are admitted to them (voter i to session i % S); each session's Q
//! questions are asked by its own voters, question k by its voter k % n (at most three each:
//! the hub lets one attendee ask three per minute, and never the same text twice). At the end,
//! [`reported_totals`] reads what the hub says each question's totals are.
//!
//! Requests go through `rest.rs`'s client: a `429` or `503` is retried after its
//! `Retry-After`, any other refusal fails the setup with the hub's code.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use signaling::{AttendeeId, SessionId};
use uuid::Uuid;

use super::book::Totals;
use crate::args::Config;
use crate::rest::Api;

/// Requests in flight at once during setup.
const SETUP_CONCURRENCY: usize = 8;
/// The hub's largest session.
const MAX_CAPACITY: usize = 100_000;

/// One session of the run.
#[derive(Debug, Clone)]
pub struct SessionFixture {
    /// Its id.
    pub id: SessionId,
    /// Its questions, by index.
    pub questions: Vec<Uuid>,
    /// Each question's totals when it was asked.
    pub baseline: Vec<Totals>,
}

/// One guest, a voter.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The index of its session.
    pub session: usize,
    /// Its guest token, for `/ws` and its session's routes.
    pub token: String,
    /// Its peer id in the session.
    pub attendee_id: AttendeeId,
}

/// What the setup made.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The presenter's access token (it reads the totals at the end).
    pub presenter: String,
    /// The S sessions.
    pub sessions: Vec<SessionFixture>,
    /// The N guests, voter i at index i.
    pub guests: Vec<Guest>,
}

#[derive(Serialize)]
struct RegisterBody<'a> {
    email: &'a str,
    password: &'a str,
    name: &'a str,
}

#[derive(Deserialize)]
struct AuthOut {
    access_token: String,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    title: &'a str,
    capacity: usize,
}

#[derive(Deserialize)]
struct SessionOut {
    id: SessionId,
}

#[derive(Serialize)]
struct JoinBody<'a> {
    display_name: &'a str,
}

#[derive(Deserialize)]
struct JoinOut {
    token: String,
    attendee_id: AttendeeId,
}

#[derive(Serialize)]
struct AskBody<'a> {
    text: &'a str,
}

/// `POST /sessions/{id}/questions` answers `{"question": {…}, "offset": n}` (since `5edb23c`).
#[derive(Deserialize)]
struct AskedOut {
    question: QuestionOut,
}

/// The part of a question the check reads.
#[derive(Deserialize)]
struct QuestionOut {
    id: Uuid,
    up: u64,
    down: u64,
}

/// Voters of session `s` out of `users` spread over `sessions` (voter i joins i % sessions).
pub fn voters_in(s: usize, users: usize, sessions: usize) -> usize {
    users / sessions + usize::from(s < users % sessions)
}

/// The voter that asks question `k` of session `s`: its `k % n`-th voter.
pub fn asker_of(s: usize, k: usize, users: usize, sessions: usize) -> usize {
    let n = voters_in(s, users, sessions).max(1);
    s + (k % n) * sessions
}

/// Builds the fixture. Progress goes to stderr.
///
/// # Errors
/// The first request that failed, with the hub's code and message.
pub async fn setup(api: &Api, config: &Config, run_id: &str) -> anyhow::Result<Fixture> {
    let started = Instant::now();
    let presenter = register(api, run_id).await?;
    let ids: Vec<SessionId> = stream::iter(0..config.rooms)
        .map(|s| open_session(api, &presenter, config, run_id, s))
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!("setup: {} sessions created and started", ids.len());

    let guests: Vec<Guest> = stream::iter(0..config.users)
        .map(|i| admit(api, &ids, i))
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!(
        "setup: {} guests admitted in {:.1}s",
        guests.len(),
        started.elapsed().as_secs_f64()
    );

    let asks = (0..ids.len()).flat_map(|s| (0..config.questions).map(move |k| (s, k)));
    let asked: Vec<(usize, QuestionOut)> = stream::iter(asks)
        .map(|(s, k)| {
            let asker = &guests[asker_of(s, k, config.users, config.rooms)];
            ask(api, ids[s], asker, run_id, (s, k))
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let mut sessions: Vec<SessionFixture> = ids
        .iter()
        .map(|&id| SessionFixture {
            id,
            questions: Vec::new(),
            baseline: Vec::new(),
        })
        .collect();
    for (s, q) in asked {
        if let Some(session) = sessions.get_mut(s) {
            session.questions.push(q.id);
            session.baseline.push(Totals {
                up: q.up,
                down: q.down,
            });
        }
    }
    eprintln!(
        "setup: {} questions asked; setup took {:.1}s",
        ids.len() * config.questions,
        started.elapsed().as_secs_f64()
    );
    Ok(Fixture {
        presenter,
        sessions,
        guests,
    })
}

async fn register(api: &Api, run_id: &str) -> anyhow::Result<String> {
    let email = format!("lt-votes-{run_id}@example.com");
    let password = format!("lt-password-{run_id}");
    let body = RegisterBody {
        email: &email,
        password: &password,
        name: "lt presenter",
    };
    let out: AuthOut = api
        .post("/api/v1/auth/register", None, &body)
        .await
        .with_context(|| format!("registering {email} (POST /api/v1/auth/register)"))?;
    Ok(out.access_token)
}

/// Creates session `s`, seated for its voters, and starts it.
async fn open_session(
    api: &Api,
    presenter: &str,
    config: &Config,
    run_id: &str,
    s: usize,
) -> anyhow::Result<SessionId> {
    let title = format!("lt votes {run_id} {s}");
    let capacity = voters_in(s, config.users, config.rooms).clamp(1, MAX_CAPACITY);
    let out: SessionOut = api
        .post(
            "/api/v1/sessions",
            Some(presenter),
            &CreateBody {
                title: &title,
                capacity,
            },
        )
        .await
        .with_context(|| format!("creating session `{title}` (POST /api/v1/sessions)"))?;
    let path = format!("/api/v1/sessions/{}/start", out.id);
    api.post_raw(&path, Some(presenter), &serde_json::json!({}))
        .await
        .with_context(|| format!("starting it (POST {path})"))?;
    Ok(out.id)
}

/// Admits voter `i` as a guest of its session.
async fn admit(api: &Api, sessions: &[SessionId], i: usize) -> anyhow::Result<Guest> {
    let session = i % sessions.len().max(1);
    let id = sessions.get(session).context("no session")?;
    let path = format!("/api/v1/sessions/{id}/join");
    let name = format!("v{i}");
    let out: JoinOut = api
        .post(
            &path,
            None,
            &JoinBody {
                display_name: &name,
            },
        )
        .await
        .with_context(|| format!("admitting guest {name} (POST {path})"))?;
    Ok(Guest {
        session,
        token: out.token,
        attendee_id: out.attendee_id,
    })
}

/// Question `k` of session `s`, asked by `asker`.
async fn ask(
    api: &Api,
    session: SessionId,
    asker: &Guest,
    run_id: &str,
    (s, k): (usize, usize),
) -> anyhow::Result<(usize, QuestionOut)> {
    let path = format!("/api/v1/sessions/{session}/questions");
    let text = format!("Load test {run_id}, session {s}, question {k}: will it scale?");
    let asked: AskedOut = api
        .post(&path, Some(&asker.token), &AskBody { text: &text })
        .await
        .with_context(|| {
            format!(
                "asking question {k} as guest {} (POST {path})",
                asker.attendee_id
            )
        })?;
    Ok((s, asked.question))
}

/// The totals the hub reports for a session's questions, by question id, as its presenter sees
/// them.
///
/// # Errors
/// When the request fails or the answer is not a list of questions.
pub async fn reported_totals(
    api: &Api,
    presenter: &str,
    session: SessionId,
) -> anyhow::Result<HashMap<Uuid, Totals>> {
    let path = format!("/api/v1/sessions/{session}/questions");
    let list: Vec<QuestionOut> = api
        .get(&path, Some(presenter))
        .await
        .with_context(|| format!("reading the totals (GET {path})"))?;
    Ok(list
        .into_iter()
        .map(|q| {
            let totals = Totals {
                up: q.up,
                down: q.down,
            };
            (q.id, totals)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_are_dealt_round_robin() {
        // 10 voters over 3 sessions: 4, 3, 3.
        assert_eq!(
            (0..3).map(|s| voters_in(s, 10, 3)).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
        assert_eq!(voters_in(0, 1000, 1), 1000);
    }

    #[test]
    fn questions_are_spread_over_the_sessions_own_voters() {
        // Session 1 of 3 with 10 voters has voters 1, 4, 7.
        let askers: Vec<usize> = (0..7).map(|k| asker_of(1, k, 10, 3)).collect();
        assert_eq!(askers, vec![1, 4, 7, 1, 4, 7, 1]);
        assert!(askers.iter().all(|v| v % 3 == 1));
        // No voter asks more than three of nine.
        for v in [1, 4, 7] {
            assert_eq!((0..9).filter(|&k| asker_of(1, k, 10, 3) == v).count(), 3);
        }
    }
}
