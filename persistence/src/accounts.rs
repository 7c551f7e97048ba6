//! Users and refresh tokens.

use chrono::{DateTime, Utc};
use signaling::UserId;
use uuid::Uuid;

use crate::db::{Store, on_pool};
use crate::error::StoreError;

/// A stored account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    /// Its id.
    #[sqlx(try_from = "Uuid")]
    pub id: UserId,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// When it registered.
    pub created_at: DateTime<Utc>,
    /// Set while an operator has disabled it.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Whether an account may act, as every authenticated request checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// It may.
    Active,
    /// An operator disabled it.
    Disabled,
    /// It no longer exists.
    Deleted,
}

/// What registering stores.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// A refresh token as stored: only its hash, never the token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshToken {
    /// Row id.
    pub id: Uuid,
    /// Owner.
    #[sqlx(try_from = "Uuid")]
    pub user_id: UserId,
    /// Every token rotated from the same login shares a family; reuse revokes the family.
    pub family_id: Uuid,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Issued.
    pub created_at: DateTime<Utc>,
    /// Expires.
    pub expires_at: DateTime<Utc>,
    /// Set when it was exchanged for a new one.
    pub rotated_at: Option<DateTime<Utc>>,
    /// Set when its family was revoked (logout or reuse).
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The name a deleted account's past session attendance keeps.
pub const DELETED_ATTENDEE: &str = "Deleted account";

impl Store {
    /// Stores a new account.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the email is taken.
    pub async fn create_user(&self, new: NewUser) -> Result<UserRecord, StoreError> {
        let user = UserRecord {
            id: UserId::new(),
            email: new.email,
            name: new.name,
            password_hash: new.password_hash,
            created_at: Utc::now(),
            disabled_at: None,
        };
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(user.id.as_uuid())
                .bind(&user.email)
                .bind(&user.name)
                .bind(&user.password_hash)
                .bind(user.created_at)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(user)
    }

    /// Finds an account by (lower-cased) email.
    ///
    /// # Errors
    /// The database failed.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, email, name, password_hash, created_at, disabled_at FROM users WHERE email = $1",
            )
            .bind(email)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Accounts, newest first: at most `limit`, older than `before` if given (ids are
    /// time-ordered, so the id is the cursor). For the operator's list.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_users(
        &self,
        before: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, email, name, password_hash, created_at, disabled_at FROM users \
                 WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(before.map(|b| b.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })?)
    }

    /// Finds an account by id.
    ///
    /// # Errors
    /// The database failed.
    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, email, name, password_hash, created_at, disabled_at FROM users WHERE id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Whether an account exists and is enabled: the check behind every authenticated request
    /// (one primary-key read).
    ///
    /// # Errors
    /// The database failed.
    pub async fn account_status(&self, id: UserId) -> Result<AccountStatus, StoreError> {
        let row: Option<(Option<DateTime<Utc>>,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT disabled_at FROM users WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await
        })?;
        Ok(match row {
            None => AccountStatus::Deleted,
            Some((None,)) => AccountStatus::Active,
            Some((Some(_),)) => AccountStatus::Disabled,
        })
    }

    /// Disables or re-enables an account. Disabling also revokes every refresh token it holds.
    /// Returns false when there is no such account.
    ///
    /// # Errors
    /// The database failed.
    pub async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        let now = Utc::now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                .bind(disabled.then_some(now))
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            if disabled {
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Deletes an account and its refresh tokens; its past session attendance keeps no name or
    /// email ([`DELETED_ATTENDEE`]). It must belong to no workspace any more (the
    /// hub removes it from each, through their rooms, first): returns
    /// [`StoreError::Conflict`] if a membership remains, `Ok(false)` if there is no such
    /// account.
    ///
    /// # Errors
    /// The database failed, or a membership remains.
    pub async fn delete_user(&self, id: UserId) -> Result<bool, StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let (members,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM workspace_members WHERE user_id = $1")
                    .bind(id.as_uuid())
                    .fetch_one(&mut *tx)
                    .await?;
            if members > 0 {
                return Err(StoreError::Conflict);
            }
            sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            // Their attendance stays counted in sessions' analytics, without who they were.
            sqlx::query(
                "UPDATE session_attendees SET display_name = $2, email = NULL WHERE user_id = $1",
            )
            .bind(id.as_uuid())
            .bind(DELETED_ATTENDEE)
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Stores a freshly issued refresh token.
    ///
    /// # Errors
    /// The database failed.
    pub async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at, rotated_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
            )
            .bind(token.id)
            .bind(token.user_id.as_uuid())
            .bind(token.family_id)
            .bind(&token.token_hash)
            .bind(token.created_at)
            .bind(token.expires_at)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Finds a refresh token by the hash of its value.
    ///
    /// # Errors
    /// The database failed.
    pub async fn refresh_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<RefreshToken>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, user_id, family_id, token_hash, created_at, expires_at, rotated_at, revoked_at \
                 FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Marks `old` rotated and stores `new` in one transaction. Returns false, storing nothing,
    /// when `old` was already rotated or revoked (two refreshes raced, or a token was reused).
    ///
    /// # Errors
    /// The database failed.
    pub async fn rotate_refresh_token(
        &self,
        old: Uuid,
        new: &RefreshToken,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE refresh_tokens SET rotated_at = $1 WHERE id = $2 AND rotated_at IS NULL AND revoked_at IS NULL")
                .bind(now)
                .bind(old)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at, rotated_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
            )
            .bind(new.id)
            .bind(new.user_id.as_uuid())
            .bind(new.family_id)
            .bind(&new.token_hash)
            .bind(new.created_at)
            .bind(new.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Revokes every token of a family (logout, or reuse of a rotated token).
    ///
    /// # Errors
    /// The database failed.
    pub async fn revoke_refresh_family(&self, family: Uuid) -> Result<u64, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
                .bind(Utc::now())
                .bind(family)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(done)
    }
}
