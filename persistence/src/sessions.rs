//! Conference sessions as tables: what each session is and who runs it (so that "my sessions"
//! is one indexed query, not a walk over room snapshots), and the attendees who joined it.
//!
//! The session's room owns its live state (journal and snapshot); changes it makes to what is
//! indexed here will be written through the journal like workspace memberships, so the two never
//! disagree. A guest attendee is stored with what they gave and nothing more: a display name and,
//! only if they chose to, an email.

use chrono::{DateTime, Utc};
use signaling::session::{SessionStatus, Staff};
use signaling::{AttendeeId, SessionId, UserId};
use uuid::Uuid;

use crate::db::{Store, on_pool};
use crate::error::StoreError;

/// A session as indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id (time-ordered: newer sessions sort after older ones).
    pub id: SessionId,
    /// Who created it (gone if their account was deleted).
    pub created_by: Option<UserId>,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// Where it stands.
    pub status: SessionStatus,
    /// When it is planned to start.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Most attendees present at once.
    pub capacity: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An attendee who joined a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeRecord {
    /// The attendee.
    pub id: AttendeeId,
    /// The session.
    pub session: SessionId,
    /// Their account, when they joined signed in; `None` for a guest.
    pub user: Option<UserId>,
    /// The name they gave.
    pub display_name: String,
    /// The email they chose to give, if any.
    pub email: Option<String>,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// When they left, if they did.
    pub left_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    created_by: Option<Uuid>,
    title: String,
    description: String,
    status: String,
    scheduled_at: Option<DateTime<Utc>>,
    capacity: i64,
    created_at: DateTime<Utc>,
}

impl SessionRow {
    fn record(self) -> Result<SessionRecord, StoreError> {
        Ok(SessionRecord {
            id: self.id.into(),
            created_by: self.created_by.map(UserId::from),
            title: self.title,
            description: self.description,
            status: SessionStatus::parse(&self.status).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown session status `{}`", self.status))
            })?,
            scheduled_at: self.scheduled_at,
            capacity: u32::try_from(self.capacity)
                .map_err(|_| StoreError::Corrupt(format!("capacity {}", self.capacity)))?,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MySessionRow {
    #[sqlx(flatten)]
    session: SessionRow,
    role: String,
}

#[derive(sqlx::FromRow)]
struct AttendeeRow {
    id: Uuid,
    session_id: Uuid,
    user_id: Option<Uuid>,
    display_name: String,
    email: Option<String>,
    joined_at: DateTime<Utc>,
    left_at: Option<DateTime<Utc>>,
}

impl AttendeeRow {
    fn into_record(self) -> AttendeeRecord {
        AttendeeRecord {
            id: self.id.into(),
            session: self.session_id.into(),
            user: self.user_id.map(UserId::from),
            display_name: self.display_name,
            email: self.email,
            joined_at: self.joined_at,
            left_at: self.left_at,
        }
    }
}

const SESSION_COLUMNS: &str = "s.id, s.created_by, s.title, s.description, s.status, \
                               s.scheduled_at, s.capacity, s.created_at";

fn parse_staff(s: &str) -> Result<Staff, StoreError> {
    Staff::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown staff role `{s}`")))
}

impl Store {
    /// Stores a new session with its creator as presenter, in one transaction.
    ///
    /// # Errors
    /// The database failed (a taken id included).
    pub async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let creator = session.created_by.map(|u| u.as_uuid());
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO sessions (id, created_by, title, description, status, scheduled_at, \
                 capacity, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(session.id.as_uuid())
            .bind(creator)
            .bind(&session.title)
            .bind(&session.description)
            .bind(session.status.as_str())
            .bind(session.scheduled_at)
            .bind(i64::from(session.capacity))
            .bind(session.created_at)
            .execute(&mut *tx)
            .await?;
            if let Some(creator) = creator {
                sqlx::query(
                    "INSERT INTO session_staff (session_id, user_id, role, added_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(session.id.as_uuid())
                .bind(creator)
                .bind(Staff::Presenter.as_str())
                .bind(session.created_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }

    /// One session.
    ///
    /// # Errors
    /// The database failed.
    pub async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1");
        let row: Option<SessionRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await
        })?;
        row.map(SessionRow::record).transpose()
    }

    /// The sessions `user` runs (as presenter or moderator), newest first, at most `limit`,
    /// starting after `before` (the last id of the previous page).
    ///
    /// # Errors
    /// The database failed.
    pub async fn sessions_for_user(
        &self,
        user: UserId,
        before: Option<SessionId>,
        limit: u32,
    ) -> Result<Vec<(SessionRecord, Staff)>, StoreError> {
        // Ids are time-ordered (UUIDv7) and compare as bytes on both backends, so the id alone
        // is a stable cursor; on the staff row's id, the (user_id, session_id) index serves both
        // the filter and the order.
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, m.role FROM sessions s \
             JOIN session_staff m ON m.session_id = s.id \
             WHERE m.user_id = $1 AND ($2 IS NULL OR m.session_id < $2) \
             ORDER BY m.session_id DESC LIMIT $3"
        );
        let rows: Vec<MySessionRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(user.as_uuid())
                .bind(before.map(|b| b.as_uuid()))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter()
            .map(|r| Ok((r.session.record()?, parse_staff(&r.role)?)))
            .collect()
    }

    /// Sessions, newest first: at most `limit`, older than `before` if given. For the
    /// operator's list.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_sessions(
        &self,
        before: Option<SessionId>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s \
             WHERE ($1 IS NULL OR s.id < $1) ORDER BY s.id DESC LIMIT $2"
        );
        let rows: Vec<SessionRow> = on_pool!(self, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(before.map(|b| b.as_uuid()))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(SessionRow::record).collect()
    }

    /// `user`'s staff role in a session, if they have one.
    ///
    /// # Errors
    /// The database failed.
    pub async fn session_staff(
        &self,
        id: SessionId,
        user: UserId,
    ) -> Result<Option<Staff>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT role FROM session_staff WHERE session_id = $1 AND user_id = $2")
                .bind(id.as_uuid())
                .bind(user.as_uuid())
                .fetch_optional(pool)
                .await
        })?;
        row.map(|(r,)| parse_staff(&r)).transpose()
    }

    /// Records an attendee's join.
    ///
    /// # Errors
    /// The database failed (no such session included).
    pub async fn add_attendee(&self, a: &AttendeeRecord) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO session_attendees (id, session_id, user_id, display_name, email, \
                 joined_at, left_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(a.id.as_uuid())
            .bind(a.session.as_uuid())
            .bind(a.user.map(|u| u.as_uuid()))
            .bind(&a.display_name)
            .bind(a.email.as_deref())
            .bind(a.joined_at)
            .bind(a.left_at)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// The session a question was asked in.
    ///
    /// # Errors
    /// The database failed.
    pub async fn question_session(&self, question: Uuid) -> Result<Option<SessionId>, StoreError> {
        let row: Option<(Uuid,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT session_id FROM session_questions WHERE id = $1")
                .bind(question)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(|(s,)| SessionId::from_uuid(s)))
    }

    /// One attendee.
    ///
    /// # Errors
    /// The database failed.
    pub async fn attendee(&self, id: AttendeeId) -> Result<Option<AttendeeRecord>, StoreError> {
        let row: Option<AttendeeRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, session_id, user_id, display_name, email, joined_at, left_at \
                 FROM session_attendees WHERE id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.map(AttendeeRow::into_record))
    }

    /// A session's attendees in the order they joined.
    ///
    /// # Errors
    /// The database failed.
    pub async fn attendees(&self, id: SessionId) -> Result<Vec<AttendeeRecord>, StoreError> {
        let rows: Vec<AttendeeRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, session_id, user_id, display_name, email, joined_at, left_at \
                 FROM session_attendees WHERE session_id = $1 ORDER BY joined_at, id",
            )
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().map(AttendeeRow::into_record).collect())
    }

    /// Deletes a session with its staff, attendees, journal, snapshot and epoch.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_session(&self, id: SessionId) -> Result<(), StoreError> {
        let key = signaling::RoomKey::Session(id).to_string();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for sql in crate::rooms::DELETE_ROOM {
                sqlx::query(sql).bind(&key).execute(&mut *tx).await?;
            }
            for sql in [
                "DELETE FROM session_visits WHERE session_id = $1",
                "DELETE FROM session_activity WHERE session_id = $1",
                "DELETE FROM session_quality WHERE session_id = $1",
                "DELETE FROM session_attendees WHERE session_id = $1",
                "DELETE FROM session_questions WHERE session_id = $1",
                "DELETE FROM session_staff WHERE session_id = $1",
                "DELETE FROM sessions WHERE id = $1",
            ] {
                sqlx::query(sql)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }
}
