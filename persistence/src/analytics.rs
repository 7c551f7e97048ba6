//! What happens in a conference session, as rows that analytics are computed from: visits (each
//! presence interval of an attendee), activity (questions, votes, presenter actions) and
//! connection-quality samples. A session room writes them off its own path, in batches
//! ([`Store::record_facts`]); the analytics route reads them back.

use chrono::{DateTime, Utc};
use signaling::{AttendeeId, SessionId};
use uuid::Uuid;

use crate::db::{Store, on_pool};
use crate::error::StoreError;
use crate::sessions::AttendeeRecord;

/// One thing that happened in a session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionFact {
    /// An attendee became present: its row is added (first time) or marked present again, and
    /// a visit opens.
    Arrived(AttendeeRecord),
    /// An attendee stopped being present: its open visit closes.
    Left {
        /// Who.
        attendee: AttendeeId,
        /// When.
        at: DateTime<Utc>,
    },
    /// The session's room (re)started with no one present: visits still open (the room stopped
    /// or crashed while they were) close now.
    Restarted {
        /// The session.
        session: SessionId,
        /// When.
        at: DateTime<Utc>,
    },
    /// A question, a vote, or a presenter action.
    Activity(Activity),
    /// A connection-quality sample.
    Quality(QualitySample),
}

/// A question, a vote, or a presenter action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The session.
    pub session: SessionId,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (the presenter for an action).
    pub attendee: Option<AttendeeId>,
    /// `question`, `vote`, `session_started`, `session_ended`, `screen_share_started`,
    /// `screen_share_stopped`.
    pub kind: String,
    /// The question, for `question` and `vote`.
    pub question: Option<Uuid>,
}

/// A connection-quality sample.
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySample {
    /// The session.
    pub session: SessionId,
    /// When.
    pub at: DateTime<Utc>,
    /// Whose connection.
    pub attendee: AttendeeId,
    /// Round-trip time, ms.
    pub rtt_ms: u32,
    /// Fraction of packets lost.
    pub packet_loss: f64,
    /// Receive bitrate, kbit/s.
    pub bitrate_kbps: u32,
}

/// One presence interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// Who.
    pub attendee: AttendeeId,
    /// Their account, if any (a person with two tabs, or two visits, is one person).
    pub user: Option<signaling::UserId>,
    /// From.
    pub joined_at: DateTime<Utc>,
    /// Until (open while present).
    pub left_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct VisitRow {
    attendee_id: Uuid,
    user_id: Option<Uuid>,
    joined_at: DateTime<Utc>,
    left_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ActivityRow {
    at: DateTime<Utc>,
    attendee_id: Option<Uuid>,
    kind: String,
    question_id: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct QualityRow {
    at: DateTime<Utc>,
    attendee_id: Uuid,
    rtt_ms: i64,
    packet_loss: f64,
    bitrate_kbps: i64,
}

impl Store {
    /// Writes a batch of facts in one transaction, in order.
    ///
    /// # Errors
    /// The database failed (nothing of the batch is written).
    pub async fn record_facts(&self, facts: &[SessionFact]) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for fact in facts {
                match fact {
                    SessionFact::Arrived(a) => {
                        sqlx::query(
                            "INSERT INTO session_attendees (id, session_id, user_id, display_name, \
                             email, joined_at, left_at) VALUES ($1, $2, $3, $4, $5, $6, NULL) \
                             ON CONFLICT (id) DO UPDATE SET left_at = NULL",
                        )
                        .bind(a.id.as_uuid())
                        .bind(a.session.as_uuid())
                        .bind(a.user.map(|u| u.as_uuid()))
                        .bind(&a.display_name)
                        .bind(a.email.as_deref())
                        .bind(a.joined_at)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO session_visits (session_id, attendee_id, joined_at) \
                             VALUES ($1, $2, $3)",
                        )
                        .bind(a.session.as_uuid())
                        .bind(a.id.as_uuid())
                        .bind(a.joined_at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    SessionFact::Left { attendee, at } => {
                        for sql in [
                            "UPDATE session_visits SET left_at = $2 \
                             WHERE attendee_id = $1 AND left_at IS NULL",
                            "UPDATE session_attendees SET left_at = $2 \
                             WHERE id = $1 AND left_at IS NULL",
                        ] {
                            sqlx::query(sql)
                                .bind(attendee.as_uuid())
                                .bind(at)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    SessionFact::Restarted { session, at } => {
                        for sql in [
                            "UPDATE session_visits SET left_at = $2 \
                             WHERE session_id = $1 AND left_at IS NULL",
                            "UPDATE session_attendees SET left_at = $2 \
                             WHERE session_id = $1 AND left_at IS NULL",
                        ] {
                            sqlx::query(sql)
                                .bind(session.as_uuid())
                                .bind(at)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    SessionFact::Activity(a) => {
                        sqlx::query(
                            "INSERT INTO session_activity (session_id, at, attendee_id, kind, \
                             question_id) VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(a.session.as_uuid())
                        .bind(a.at)
                        .bind(a.attendee.map(|x| x.as_uuid()))
                        .bind(&a.kind)
                        .bind(a.question)
                        .execute(&mut *tx)
                        .await?;
                    }
                    SessionFact::Quality(q) => {
                        sqlx::query(
                            "INSERT INTO session_quality (session_id, at, attendee_id, rtt_ms, \
                             packet_loss, bitrate_kbps) VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(q.session.as_uuid())
                        .bind(q.at)
                        .bind(q.attendee.as_uuid())
                        .bind(i64::from(q.rtt_ms))
                        .bind(q.packet_loss)
                        .bind(i64::from(q.bitrate_kbps))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }

    /// A session's visits, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn visits(&self, session: SessionId) -> Result<Vec<Visit>, StoreError> {
        let rows: Vec<VisitRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT v.attendee_id, a.user_id, v.joined_at, v.left_at FROM session_visits v \
                 JOIN session_attendees a ON a.id = v.attendee_id \
                 WHERE v.session_id = $1 ORDER BY v.joined_at",
            )
            .bind(session.as_uuid())
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| Visit {
                attendee: r.attendee_id.into(),
                user: r.user_id.map(Into::into),
                joined_at: r.joined_at,
                left_at: r.left_at,
            })
            .collect())
    }

    /// A session's questions, votes and presenter actions, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn activity(&self, session: SessionId) -> Result<Vec<Activity>, StoreError> {
        let rows: Vec<ActivityRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT at, attendee_id, kind, question_id FROM session_activity \
                 WHERE session_id = $1 ORDER BY at",
            )
            .bind(session.as_uuid())
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| Activity {
                session,
                at: r.at,
                attendee: r.attendee_id.map(Into::into),
                kind: r.kind,
                question: r.question_id,
            })
            .collect())
    }

    /// A session's connection-quality samples, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn quality(&self, session: SessionId) -> Result<Vec<QualitySample>, StoreError> {
        let rows: Vec<QualityRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT at, attendee_id, rtt_ms, packet_loss, bitrate_kbps FROM session_quality \
                 WHERE session_id = $1 ORDER BY at",
            )
            .bind(session.as_uuid())
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| QualitySample {
                session,
                at: r.at,
                attendee: r.attendee_id.into(),
                rtt_ms: u32::try_from(r.rtt_ms).unwrap_or(u32::MAX),
                packet_loss: r.packet_loss,
                bitrate_kbps: u32::try_from(r.bitrate_kbps).unwrap_or(u32::MAX),
            })
            .collect())
    }
}
