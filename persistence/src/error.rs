//! What can go wrong in storage.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is already taken (an email, a task id...), or a deletion found a record
    /// still in use.
    #[error("already exists")]
    Conflict,
    /// A record the write refers to no longer exists (a foreign key to a deleted user or
    /// workspace): the caller's view was stale, storage is fine.
    #[error("a referenced record no longer exists")]
    Missing,
    /// The room's fencing epoch has moved on: another owner took the room, so this writer must
    /// stop writing.
    #[error("stale room epoch: the room is owned by a newer writer")]
    StaleEpoch,
    /// An append does not follow the room's last journaled offset (an earlier append of the
    /// room failed): nothing was written.
    #[error("append out of order: an earlier append of this room failed")]
    OutOfOrder,
    /// The journal writer has stopped (the hub is shutting down).
    #[error("journal writer closed")]
    Closed,
    /// A stored value could not be read back (corruption or a bug).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Missing,
            _ => StoreError::Database(e),
        }
    }
}
