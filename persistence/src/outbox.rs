//! The job outbox, and the records whose side effects go through it: workspace invitations and
//! password resets. A record and the job that mails about it are written in one transaction, so
//! a crash between the commit and the send sends later and never loses the mail; a worker
//! claims due jobs with a lease, retries with backoff, and parks a job as `dead` after its last
//! attempt.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signaling::workspace::Role;
use signaling::{UserId, WorkspaceId};
use uuid::Uuid;

use crate::db::{Store, on_pool};
use crate::error::StoreError;

/// An email to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its time, or being sent.
    Pending,
    /// Done.
    Sent,
    /// Every attempt failed: parked for an operator.
    Dead,
}

impl JobState {
    /// Its name in storage and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Sent => "sent",
            JobState::Dead => "dead",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "sent" => JobState::Sent,
            "dead" => JobState::Dead,
            _ => JobState::Pending,
        }
    }
}

/// A job of the outbox.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// Its id.
    pub id: Uuid,
    /// What it does (`email`).
    pub kind: String,
    /// Its payload (for `email`, a [`Mail`]).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Where it stands.
    pub state: JobState,
    /// Attempts made.
    pub attempts: u32,
    /// Not before.
    pub run_after: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

type JobRow = (Uuid, String, String, String, i64, i64, Option<String>, i64);

fn job(row: JobRow) -> Job {
    let (id, kind, payload, state, attempts, run_after, last_error, created) = row;
    Job {
        id,
        kind,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        state: JobState::parse(&state),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        run_after: DateTime::from_timestamp_millis(run_after).unwrap_or_default(),
        last_error,
        created_at: DateTime::from_timestamp_millis(created).unwrap_or_default(),
    }
}

const JOB_COLUMNS: &str =
    "id, kind, payload, state, attempts, run_after_ms, last_error, created_ms";

/// Inserts an email job in the transaction `$tx`; `?`s errors.
macro_rules! enqueue_mail {
    ($tx:expr, $mail:expr, $now:expr) => {{
        let payload =
            serde_json::to_string($mail).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO outbox (id, kind, payload, state, attempts, run_after_ms, created_ms) \
             VALUES ($1, 'email', $2, 'pending', 0, $3, $3)",
        )
        .bind(Uuid::now_v7())
        .bind(payload)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// An invitation to a workspace.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    /// Its id.
    pub id: Uuid,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Who is invited.
    pub email: String,
    /// The role they get.
    pub role: Role,
    /// Who invited them.
    pub invited_by: UserId,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Until when the link works.
    pub expires_at: DateTime<Utc>,
    /// When it was accepted.
    pub accepted_at: Option<DateTime<Utc>>,
    /// By which account.
    pub accepted_by: Option<UserId>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

type InvitationRow = (
    Uuid,
    Uuid,
    String,
    String,
    Uuid,
    i64,
    i64,
    Option<i64>,
    Option<Uuid>,
    Option<i64>,
);

const INVITATION_COLUMNS: &str = "id, workspace_id, email, role, invited_by, created_ms, \
     expires_ms, accepted_ms, accepted_by, revoked_ms";

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn invitation(row: InvitationRow) -> Result<Invitation, StoreError> {
    let (id, ws, email, role, by, created, expires, accepted, accepted_by, revoked) = row;
    Ok(Invitation {
        id,
        workspace_id: WorkspaceId::from_uuid(ws),
        email,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role `{role}`")))?,
        invited_by: UserId::from_uuid(by),
        created_at: at(created),
        expires_at: at(expires),
        accepted_at: accepted.map(at),
        accepted_by: accepted_by.map(UserId::from_uuid),
        revoked_at: revoked.map(at),
    })
}

/// Why a token was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefused {
    /// No such token, or used, revoked or expired.
    Invalid,
}

impl Store {
    /// Due jobs (pending, their time come, not leased), oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn due_jobs(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM outbox WHERE state = 'pending' AND run_after_ms <= $1 \
             AND (lease_until_ms IS NULL OR lease_until_ms < $1) ORDER BY run_after_ms LIMIT $2"
        );
        let rows: Vec<JobRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now.timestamp_millis())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(job).collect())
    }

    /// Claims a due job until `lease_until` (one attempt counted); false when another worker
    /// has it or it is no longer due.
    ///
    /// # Errors
    /// The database failed.
    pub async fn claim_job(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET lease_until_ms = $3, attempts = attempts + 1 WHERE id = $1 \
                 AND state = 'pending' AND run_after_ms <= $2 \
                 AND (lease_until_ms IS NULL OR lease_until_ms < $2)",
            )
            .bind(id)
            .bind(now.timestamp_millis())
            .bind(lease_until.timestamp_millis())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Records a job's attempt: sent, or failed with the time of the next attempt (`None`: that
    /// was the last one, the job is dead).
    ///
    /// # Errors
    /// The database failed.
    pub async fn finish_job(
        &self,
        id: Uuid,
        outcome: Result<(), (String, Option<DateTime<Utc>>)>,
    ) -> Result<(), StoreError> {
        let now = Utc::now().timestamp_millis();
        on_pool!(self, |pool| {
            match &outcome {
                Ok(()) => sqlx::query(
                    "UPDATE outbox SET state = 'sent', done_ms = $2, lease_until_ms = NULL \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(pool)
                .await
                .map(|_| ()),
                Err((error, next)) => sqlx::query(
                    "UPDATE outbox SET state = $2, run_after_ms = $3, last_error = $4, \
                     lease_until_ms = NULL, done_ms = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(if next.is_some() { "pending" } else { "dead" })
                .bind(next.map_or(now, |t| t.timestamp_millis()))
                .bind(error.chars().take(500).collect::<String>())
                .bind(next.is_none().then_some(now))
                .execute(pool)
                .await
                .map(|_| ()),
            }
        })?;
        Ok(())
    }

    /// Jobs in a state, newest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn jobs(&self, state: JobState, limit: u32) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM outbox WHERE state = $1 ORDER BY created_ms DESC LIMIT $2"
        );
        let rows: Vec<JobRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(state.as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(job).collect())
    }

    /// Puts a dead job back in line, with fresh attempts; false when it is not dead.
    ///
    /// # Errors
    /// The database failed.
    pub async fn retry_job(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET state = 'pending', attempts = 0, run_after_ms = $2, \
                 done_ms = NULL WHERE id = $1 AND state = 'dead'",
            )
            .bind(id)
            .bind(Utc::now().timestamp_millis())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Writes an invitation and the mail that carries its link, in one transaction.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_invitation(
        &self,
        inv: &Invitation,
        token_hash: &str,
        mail: &Mail,
    ) -> Result<(), StoreError> {
        let now = inv.created_at.timestamp_millis();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO invitations (id, workspace_id, email, role, token_hash, invited_by, \
                 created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(inv.id)
            .bind(inv.workspace_id.as_uuid())
            .bind(&inv.email)
            .bind(inv.role.as_str())
            .bind(token_hash)
            .bind(inv.invited_by.as_uuid())
            .bind(now)
            .bind(inv.expires_at.timestamp_millis())
            .execute(&mut *tx)
            .await?;
            enqueue_mail!(tx, mail, now);
            tx.commit().await?;
            Ok(())
        })
    }

    /// A workspace's invitations, newest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn invitations(&self, workspace: WorkspaceId) -> Result<Vec<Invitation>, StoreError> {
        let sql = format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations WHERE workspace_id = $1 \
             ORDER BY created_ms DESC LIMIT 500"
        );
        let rows: Vec<InvitationRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(workspace.as_uuid())
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(invitation).collect()
    }

    /// How many invitations of a workspace are still open (not accepted, revoked or expired).
    ///
    /// # Errors
    /// The database failed.
    pub async fn open_invitations(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM invitations WHERE workspace_id = $1 AND accepted_ms IS NULL \
                 AND revoked_ms IS NULL AND expires_ms > $2",
            )
            .bind(workspace.as_uuid())
            .bind(Utc::now().timestamp_millis())
            .fetch_one(pool)
            .await
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Revokes an open invitation; false when there is none (or it was used).
    ///
    /// # Errors
    /// The database failed.
    pub async fn revoke_invitation(
        &self,
        workspace: WorkspaceId,
        id: Uuid,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE invitations SET revoked_ms = $3 WHERE workspace_id = $1 AND id = $2 \
                 AND accepted_ms IS NULL AND revoked_ms IS NULL",
            )
            .bind(workspace.as_uuid())
            .bind(id)
            .bind(Utc::now().timestamp_millis())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Takes an invitation by its token for `user`: marks it accepted if it is open, once.
    ///
    /// # Errors
    /// [`TokenRefused::Invalid`] inside `Ok(Err(..))`; the database failed.
    pub async fn take_invitation(
        &self,
        token_hash: &str,
        user: UserId,
    ) -> Result<Result<Invitation, TokenRefused>, StoreError> {
        let now = Utc::now().timestamp_millis();
        let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1");
        let row: Option<InvitationRow> = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let taken = sqlx::query(
                "UPDATE invitations SET accepted_ms = $2, accepted_by = $3 WHERE token_hash = $1 \
                 AND accepted_ms IS NULL AND revoked_ms IS NULL AND expires_ms > $2",
            )
            .bind(token_hash)
            .bind(now)
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await?;
            let row = if taken.rows_affected() == 0 {
                None
            } else {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await?
            };
            tx.commit().await?;
            Ok::<_, StoreError>(row)
        })?;
        Ok(match row {
            Some(row) => Ok(invitation(row)?),
            None => Err(TokenRefused::Invalid),
        })
    }

    /// The open invitation a token names, without taking it.
    ///
    /// # Errors
    /// The database failed.
    pub async fn open_invitation(
        &self,
        token_hash: &str,
    ) -> Result<Option<Invitation>, StoreError> {
        let sql = format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1 \
             AND accepted_ms IS NULL AND revoked_ms IS NULL AND expires_ms > $2"
        );
        let row: Option<InvitationRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(token_hash)
                .bind(Utc::now().timestamp_millis())
                .fetch_optional(pool)
                .await
        })?;
        row.map(invitation).transpose()
    }

    /// Gives an invitation back after its acceptance failed (it can be used again).
    ///
    /// # Errors
    /// The database failed.
    pub async fn untake_invitation(&self, id: Uuid) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE invitations SET accepted_ms = NULL, accepted_by = NULL WHERE id = $1",
            )
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Writes a password reset token and the mail that carries it, in one transaction.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_password_reset(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        mail: &Mail,
    ) -> Result<(), StoreError> {
        let now = Utc::now().timestamp_millis();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO password_resets (token_hash, user_id, created_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(user.as_uuid())
            .bind(now)
            .bind(expires_at.timestamp_millis())
            .execute(&mut *tx)
            .await?;
            enqueue_mail!(tx, mail, now);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Uses a reset token: sets the password and revokes every refresh token of the account, in
    /// one transaction; the token works once. Returns the account.
    ///
    /// # Errors
    /// [`TokenRefused::Invalid`] inside `Ok(Err(..))`; the database failed.
    pub async fn use_password_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
    ) -> Result<Result<UserId, TokenRefused>, StoreError> {
        let now = Utc::now();
        let ms = now.timestamp_millis();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let user: Option<(Uuid,)> = sqlx::query_as(
                "SELECT user_id FROM password_resets WHERE token_hash = $1 AND used_ms IS NULL \
                 AND expires_ms > $2",
            )
            .bind(token_hash)
            .bind(ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((user,)) = user else {
                return Ok(Err(TokenRefused::Invalid));
            };
            let used = sqlx::query(
                "UPDATE password_resets SET used_ms = $2 WHERE token_hash = $1 AND used_ms IS NULL",
            )
            .bind(token_hash)
            .bind(ms)
            .execute(&mut *tx)
            .await?;
            if used.rows_affected() == 0 {
                return Ok(Err(TokenRefused::Invalid));
            }
            // The other reset links of the account die with this one.
            sqlx::query(
                "UPDATE password_resets SET used_ms = $2 WHERE user_id = $1 AND used_ms IS NULL",
            )
            .bind(user)
            .bind(ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(user)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(UserId::from_uuid(user)))
        })
    }
}
