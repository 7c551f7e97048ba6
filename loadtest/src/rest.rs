//! Setup over the REST API, before any WebSocket opens: register K accounts, let account 0
//! create R workspaces, and add every other account to every workspace. The result is a
//! [`Fixture`]: the tokens and room ids the connections use.
//!
//! HTTP/1.1 through hyper-util's pooled client. A `429` or `503` is retried after its
//! `Retry-After` (a hub limiting sign-ups per address should slow the setup, not fail it); any
//! other error status fails the setup with the hub's code and message.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use signaling::WorkspaceId;

use crate::args::Config;
use crate::target::Target;

/// Requests in flight at once during setup.
const SETUP_CONCURRENCY: usize = 8;
/// Longest wait for one response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response body read.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Attempts of one request that keeps being told to retry.
const MAX_ATTEMPTS: u32 = 6;
/// Longest `Retry-After` honoured; longer ones are capped to this.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// A registered account, ready to open connections.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its email (the key for adding it to workspaces).
    pub email: String,
    /// Its access token.
    pub access_token: String,
}

/// What the setup made.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The K accounts, account 0 (the owner of every workspace) first.
    pub accounts: Vec<Account>,
    /// The R workspaces.
    pub workspaces: Vec<WorkspaceId>,
    /// The access tokens' lifetime as the hub announced it.
    pub token_ttl: Duration,
}

#[derive(Serialize)]
struct RegisterBody<'a> {
    email: &'a str,
    password: &'a str,
    name: &'a str,
}

#[derive(Deserialize)]
struct AuthResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Serialize)]
struct WorkspaceBody<'a> {
    name: &'a str,
}

#[derive(Deserialize)]
struct WorkspaceOut {
    id: WorkspaceId,
}

#[derive(Serialize)]
struct MemberBody<'a> {
    email: &'a str,
    role: &'a str,
}

/// The body of an error response.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The hub answered with an error status.
    Status {
        status: StatusCode,
        /// `code: message` from the error body, or the raw body when it is not one.
        detail: String,
        retry_after: Option<Duration>,
    },
    /// No usable answer: connection refused, timeout, unreadable body...
    Transport(anyhow::Error),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Status { status, detail, .. } => write!(f, "HTTP {status}: {detail}"),
            CallError::Transport(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The REST client (also used by the conference scenarios' own setup).
pub(crate) struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    target: Target,
}

impl Api {
    pub(crate) fn new(target: Target) -> Api {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Api {
            client: Client::builder(TokioExecutor::new()).build(connector),
            target,
        }
    }

    /// `POST`s JSON and reads the JSON answer.
    pub(crate) async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &B,
    ) -> Result<R, CallError> {
        let (status, bytes) = self.post_raw(path, token, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Transport(anyhow::anyhow!(
                "unexpected {status} body ({e}): {}",
                shown(&bytes)
            ))
        })
    }

    /// `POST`s JSON, retrying while the hub says to come back later; the success status and
    /// body.
    pub(crate) async fn post_raw<B: Serialize>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &B,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let body = serde_json::to_vec(body)
            .map(Bytes::from)
            .map_err(|e| CallError::Transport(e.into()))?;
        let mut attempt = 1;
        loop {
            match self
                .call_once(Method::POST, path, token, body.clone())
                .await
            {
                Err(CallError::Status {
                    status,
                    retry_after,
                    ..
                }) if attempt < MAX_ATTEMPTS
                    && matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    ) =>
                {
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(MAX_RETRY_WAIT);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `GET`s and reads the JSON answer (no retry: reads are not throttled away in setup).
    pub(crate) async fn get<R: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<R, CallError> {
        let (status, bytes) = self
            .call_once(Method::GET, path, token, Bytes::new())
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Transport(anyhow::anyhow!(
                "unexpected {status} body ({e}): {}",
                shown(&bytes)
            ))
        })
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let transport = |e: anyhow::Error| CallError::Transport(e);
        let mut req = Request::builder()
            .method(method)
            .uri(self.target.http_uri(path))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body)).map_err(|e| transport(e.into()))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| transport(anyhow::anyhow!("no response within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| transport(anyhow::Error::new(e).context("request failed")))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Limited::new(resp.into_body(), MAX_BODY_BYTES).collect(),
        )
        .await
        .map_err(|_| {
            transport(anyhow::anyhow!(
                "body not received within {REQUEST_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| transport(anyhow::anyhow!("reading the body: {e}")))?
        .to_bytes();
        if !status.is_success() {
            return Err(CallError::Status {
                status,
                detail: error_detail(&bytes),
                retry_after,
            });
        }
        Ok((status, bytes))
    }
}

/// `code: message` from an error body, or the start of the body as text.
fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => format!("{}: {}", b.error.code, b.error.message),
        Err(_) if body.is_empty() => "(empty body)".to_owned(),
        Err(_) => shown(body),
    }
}

/// At most 200 characters of a body, for messages.
fn shown(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// Builds the fixture. Progress goes to stderr.
///
/// # Errors
/// The first request that failed, with the hub's code and message.
pub async fn setup(config: &Config, run_id: &str) -> anyhow::Result<Fixture> {
    let api = Api::new(config.target.clone());
    let started = Instant::now();

    let password = format!("lt-password-{run_id}");
    let (accounts, ttl): (Vec<Account>, Vec<Option<u64>>) = stream::iter(0..config.accounts)
        .map(|i| register(&api, run_id, &password, i))
        .buffered(SETUP_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .unzip();
    let token_ttl = Duration::from_secs(ttl.into_iter().flatten().min().unwrap_or(900));
    eprintln!(
        "setup: registered {} accounts in {:.1}s",
        accounts.len(),
        started.elapsed().as_secs_f64()
    );

    let owner = accounts.first().context("no account registered")?;
    let workspaces: Vec<WorkspaceId> = stream::iter(0..config.rooms)
        .map(|j| create_workspace(&api, owner, j))
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!("setup: created {} workspaces", workspaces.len());

    let pairs = workspaces
        .iter()
        .flat_map(|ws| accounts.iter().skip(1).map(move |a| (*ws, a)));
    let added = stream::iter(pairs)
        .map(|(ws, member)| add_member(&api, owner, ws, member))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_fold(0_u64, |n, ()| async move { Ok(n + 1) })
        .await?;
    eprintln!(
        "setup: added {added} memberships; setup took {:.1}s",
        started.elapsed().as_secs_f64()
    );

    Ok(Fixture {
        accounts,
        workspaces,
        token_ttl,
    })
}

/// Registers account `i` of the run (`lt-{run_id}-{i}@example.com`); the account and its
/// token's lifetime as the hub announced it.
pub(crate) async fn register(
    api: &Api,
    run_id: &str,
    password: &str,
    i: usize,
) -> anyhow::Result<(Account, Option<u64>)> {
    let email = format!("lt-{run_id}-{i}@example.com");
    let name = format!("lt {i}");
    let body = RegisterBody {
        email: &email,
        password,
        name: &name,
    };
    let out: AuthResponse = api
        .post("/api/v1/auth/register", None, &body)
        .await
        .with_context(|| format!("registering {email} (POST /api/v1/auth/register)"))?;
    let account = Account {
        email,
        access_token: out.access_token,
    };
    Ok((account, out.expires_in))
}

async fn create_workspace(api: &Api, owner: &Account, j: usize) -> anyhow::Result<WorkspaceId> {
    let name = format!("lt {j}");
    let out: WorkspaceOut = api
        .post(
            "/api/v1/workspaces",
            Some(&owner.access_token),
            &WorkspaceBody { name: &name },
        )
        .await
        .with_context(|| format!("creating workspace `{name}` (POST /api/v1/workspaces)"))?;
    Ok(out.id)
}

async fn add_member(
    api: &Api,
    owner: &Account,
    workspace: WorkspaceId,
    member: &Account,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/workspaces/{workspace}/members");
    let body = MemberBody {
        email: &member.email,
        role: "member",
    };
    // Only the success matters, not the answer's shape.
    api.post_raw(&path, Some(&owner.access_token), &body)
        .await
        .with_context(|| format!("adding {} (POST {path})", member.email))?;
    Ok(())
}

/// A run id that differs between runs against the same hub (so emails do not collide): the
/// time in microseconds and the process id, in hex.
pub fn run_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    format!("{micros:x}{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_show_code_and_message() {
        let body = br#"{"error":{"code":"already_exists","message":"email taken"}}"#;
        assert_eq!(error_detail(body), "already_exists: email taken");
        assert_eq!(error_detail(b""), "(empty body)");
        assert_eq!(error_detail(b"<html>oops</html>"), "<html>oops</html>");
    }

    #[test]
    fn run_ids_make_valid_distinct_emails() {
        let id = run_id();
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!(format!("lt-password-{id}").len() >= 12);
    }
}
