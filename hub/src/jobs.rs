//! The outbox worker: sends the jobs written by `persistence`'s outbox (mail, for now), each
//! claimed under a lease, retried with exponential backoff and jitter, parked as dead after the
//! last attempt (visible, and retriable, in the admin API). Mail goes out over SMTP when
//! `HUB_SMTP_URL` is set, else into `<data dir>/mail/` as `.eml` files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use persistence::{Job, Mail, Store};
use tokio::sync::Notify;

use crate::config::MailConfig;

/// How long a claimed job is a worker's before another may take it (a send that hangs longer
/// is tried again).
const LEASE: Duration = Duration::from_secs(60);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Jobs taken per look.
const BATCH: u32 = 20;

/// Where mail goes.
pub enum Mailer {
    /// An SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// A folder of `.eml` files.
    Folder(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

impl Mailer {
    /// The mailer the configuration asks for.
    ///
    /// # Errors
    /// The SMTP URL does not parse, or the mail folder cannot be made.
    pub fn new(config: &MailConfig, data_dir: &std::path::Path) -> anyhow::Result<Mailer> {
        match &config.smtp_url {
            Some(url) => Ok(Mailer::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("HUB_SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            )),
            None => {
                let dir = data_dir.join("mail");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
                Ok(Mailer::Folder(AsyncFileTransport::new(&dir), dir))
            }
        }
    }

    /// Where it sends, for the logs.
    pub fn describe(&self) -> String {
        match self {
            Mailer::Smtp(_) => "SMTP".into(),
            Mailer::Folder(_, dir) => format!("the folder {}", dir.display()),
        }
    }

    async fn send(&self, from: &Mailbox, mail: &Mail) -> Result<(), String> {
        let to: Mailbox = mail.to.parse().map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .body(mail.text.clone())
            .map_err(|e| format!("building the message: {e}"))?;
        match self {
            Mailer::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Mailer::Folder(folder, _) => folder
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

/// The worker's settings.
pub struct Worker {
    /// The store.
    pub store: Store,
    /// Where mail goes.
    pub mailer: Mailer,
    /// The sender.
    pub from: Mailbox,
    /// Attempts before a job is dead.
    pub max_attempts: u32,
    /// The first retry's delay.
    pub backoff: Duration,
    /// How often to look for due jobs.
    pub poll: Duration,
    /// Woken when a job is written, to send it without waiting for the next look.
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Runs until the process ends.
    pub async fn run(self) {
        tracing::info!(mailer = %self.mailer.describe(), "outbox worker started");
        loop {
            match self.store.due_jobs(Utc::now(), BATCH).await {
                Ok(jobs) => {
                    for job in jobs {
                        self.attempt(job).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the outbox failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    async fn attempt(&self, job: Job) {
        let now = Utc::now();
        let lease = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        match self.store.claim_job(job.id, now, lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "claiming a job failed");
                return;
            }
        }
        let attempt = job.attempts + 1;
        let sent = match job.kind.as_str() {
            "email" => match serde_json::from_value::<Mail>(job.payload.clone()) {
                Ok(mail) => self.mailer.send(&self.from, &mail).await,
                Err(e) => Err(format!("unreadable payload: {e}")),
            },
            other => Err(format!("unknown job kind `{other}`")),
        };
        let outcome = match sent {
            Ok(()) => {
                tracing::info!(job = %job.id, attempt, "job sent");
                Ok(())
            }
            Err(error) => {
                let next = (attempt < self.max_attempts).then(|| Utc::now() + self.delay(attempt));
                tracing::warn!(job = %job.id, attempt, %error, dead = next.is_none(), "job failed");
                Err((error, next))
            }
        };
        if let Err(e) = self.store.finish_job(job.id, outcome).await {
            tracing::warn!(job = %job.id, error = %e, "recording a job's attempt failed");
        }
    }

    /// The delay after the `attempt`-th failure: the backoff doubled each time, at most an
    /// hour, with up to a quarter more at random (so that failed jobs do not retry in step).
    fn delay(&self, attempt: u32) -> chrono::Duration {
        let base = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(MAX_BACKOFF);
        let jitter = base.mul_f64(fastrand_quarter());
        chrono::Duration::from_std(base + jitter).unwrap_or_default()
    }
}

/// A random fraction in [0, 0.25).
fn fastrand_quarter() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 4.0
}
