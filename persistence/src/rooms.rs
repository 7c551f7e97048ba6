//! Room state in storage: fencing epochs, reading the journal, and snapshots.
//!
//! A room's state is its latest snapshot plus the journal entries after it. Every write is
//! fenced: it only lands while the room's row in `rooms` still holds the writer's epoch, so a
//! writer that lost the room (a paused node, a restarted actor) cannot write over its successor.

use chrono::{DateTime, Utc};

use crate::db::{Store, on_pool};
use crate::error::StoreError;

/// Deletes everything stored for one room (bind its key as `$1`), in this order, inside the
/// transaction that deletes what the room belonged to.
pub(crate) const DELETE_ROOM: [&str; 3] = [
    "DELETE FROM room_journal WHERE room_key = $1",
    "DELETE FROM room_snapshots WHERE room_key = $1",
    "DELETE FROM rooms WHERE room_key = $1",
];

/// A journal entry as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JournalRecord {
    /// Its offset in the room.
    pub seq: i64,
    /// The epoch of the writer that appended it.
    pub epoch: i64,
    /// The event, as JSON.
    pub event: String,
}

/// A snapshot of a room's state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Snapshot {
    /// The epoch of the writer that took it.
    pub epoch: i64,
    /// The offset of the last event it includes.
    pub seq: i64,
    /// The state, as JSON.
    pub state: String,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

impl Store {
    /// Takes ownership of a room: bumps and returns its fencing epoch. Any writer still holding an
    /// older epoch is refused from now on.
    ///
    /// # Errors
    /// The database failed.
    pub async fn claim_room(&self, room: &str) -> Result<u64, StoreError> {
        let (epoch,): (i64,) = on_pool!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO rooms (room_key, epoch) VALUES ($1, 1) \
                 ON CONFLICT (room_key) DO UPDATE SET epoch = rooms.epoch + 1 RETURNING epoch",
            )
            .bind(room)
            .fetch_one(pool)
            .await
        })?;
        u64::try_from(epoch).map_err(|_| StoreError::Corrupt("negative epoch".into()))
    }

    /// Journal entries with offset greater than `after`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn journal_since(
        &self,
        room: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, epoch, event FROM room_journal WHERE room_key = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(room)
            .bind(to_i64(after))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })?)
    }

    /// The lowest offset still in the journal, if any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn journal_first(&self, room: &str) -> Result<Option<u64>, StoreError> {
        let (min,): (Option<i64>,) = on_pool!(self, |pool| {
            sqlx::query_as("SELECT MIN(seq) FROM room_journal WHERE room_key = $1")
                .bind(room)
                .fetch_one(pool)
                .await
        })?;
        Ok(min.and_then(|m| u64::try_from(m).ok()))
    }

    /// The room's latest snapshot.
    ///
    /// # Errors
    /// The database failed.
    pub async fn snapshot(&self, room: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT epoch, seq, state, taken_at FROM room_snapshots WHERE room_key = $1",
            )
            .bind(room)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Stores a snapshot at offset `seq` and drops journal entries at or below `seq - retain`,
    /// fenced by `epoch`.
    ///
    /// # Errors
    /// [`StoreError::StaleEpoch`] when the room has a newer owner; or the database failed.
    /// Declares the room's journaled head after its owner loaded it (see the `rooms.last_seq`
    /// migration): appends continue from `head`.
    ///
    /// # Errors
    /// [`StoreError::StaleEpoch`] when a newer owner took the room; or the database failed.
    pub async fn set_room_head(&self, room: &str, epoch: u64, head: u64) -> Result<(), StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query("UPDATE rooms SET last_seq = $3 WHERE room_key = $1 AND epoch = $2")
                .bind(room)
                .bind(to_i64(epoch))
                .bind(to_i64(head))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Err(StoreError::StaleEpoch);
        }
        Ok(())
    }

    pub async fn put_snapshot(
        &self,
        room: &str,
        epoch: u64,
        seq: u64,
        state: &str,
        retain: u64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "INSERT INTO room_snapshots (room_key, epoch, seq, state, taken_at) \
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS \
                 (SELECT 1 FROM rooms WHERE room_key = $1 AND epoch = $2 AND last_seq >= $3) \
                 ON CONFLICT (room_key) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, \
                 state = excluded.state, taken_at = excluded.taken_at",
            )
            .bind(room)
            .bind(to_i64(epoch))
            .bind(to_i64(seq))
            .bind(state)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::StaleEpoch);
            }
            sqlx::query("DELETE FROM room_journal WHERE room_key = $1 AND seq <= $2")
                .bind(room)
                .bind(to_i64(seq.saturating_sub(retain)))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Offsets and epochs are `u64` in the hub and `BIGINT` in storage; they never get near 2^63.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
