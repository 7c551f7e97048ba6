//! The connection pool for either backend, migrations, and the `on_pool!` macro that runs the same
//! query code against whichever backend is configured.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreError;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL (cluster-capable).
    Postgres,
    /// An embedded SQLite file (single node).
    Sqlite,
}

impl Backend {
    /// The backend a database URL names: PostgreSQL for `postgres://` and `postgresql://`,
    /// otherwise a SQLite file.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

#[derive(Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the concrete pool. The body is compiled once per backend,
/// so it must only use SQL that both accept.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::db::Pool::Postgres($pool) => $body,
            $crate::db::Pool::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
}

const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_account_status.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_sessions.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_session_questions.sql"),
    ),
    (5, include_str!("../migrations/postgres/0005_room_head.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_session_analytics.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_board_index.sql"),
    ),
    (
        8,
        include_str!("../migrations/postgres/0008_sync_conflicts.sql"),
    ),
    (
        9,
        include_str!("../migrations/postgres/0009_outbox_invitations.sql"),
    ),
    (10, include_str!("../migrations/postgres/0010_activity.sql")),
];
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_account_status.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_sessions.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_session_questions.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_room_head.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_session_analytics.sql"),
    ),
    (7, include_str!("../migrations/sqlite/0007_board_index.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_sync_conflicts.sql"),
    ),
    (
        9,
        include_str!("../migrations/sqlite/0009_outbox_invitations.sql"),
    ),
    (10, include_str!("../migrations/sqlite/0010_activity.sql")),
];

impl Store {
    /// Connects to `url` (`postgres://...` or `sqlite://path`), creating a SQLite file if it does
    /// not exist, and applies any pending migrations.
    ///
    /// # Errors
    /// The database cannot be reached, or a migration fails.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let pool = if Backend::of_url(url) == Backend::Postgres {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Pool::Postgres(pool)
        } else {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Pool::Sqlite(pool)
        };
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Checks that the database answers (for `/ready`).
    ///
    /// # Errors
    /// It does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await);
    }

    /// Applies the migrations not yet recorded in `hub_migrations`, each in its own transaction.
    /// On Postgres an advisory lock keeps two nodes starting at once from racing.
    async fn migrate(&self) -> Result<(), StoreError> {
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS hub_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)";
        let migrations = match self.backend() {
            Backend::Postgres => POSTGRES_MIGRATIONS,
            Backend::Sqlite => SQLITE_MIGRATIONS,
        };
        on_pool!(self, |pool| {
            sqlx::query(CREATE).execute(pool).await?;
            for (version, sql) in migrations {
                let mut tx = pool.begin().await?;
                if self.backend() == Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock(7301)")
                        .execute(&mut *tx)
                        .await?;
                }
                let done: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM hub_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                if done.is_none() {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO hub_migrations (version, applied_at) VALUES ($1, $2)")
                        .bind(version)
                        .bind(chrono::Utc::now().to_rfc3339())
                        .execute(&mut *tx)
                        .await?;
                    tracing::info!(version, "applied migration");
                }
                tx.commit().await?;
            }
            Ok::<(), StoreError>(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `NNNN_*.sql` files of one backend's migrations folder, by number.
    fn files(backend: &str) -> Vec<i64> {
        let dir = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
        let mut numbers: Vec<i64> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".sql")?.get(..4)?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        numbers
    }

    #[test]
    fn every_migration_file_is_applied_in_order() {
        for (backend, list) in [
            ("postgres", POSTGRES_MIGRATIONS),
            ("sqlite", SQLITE_MIGRATIONS),
        ] {
            let registered: Vec<i64> = list.iter().map(|(v, _)| *v).collect();
            assert_eq!(registered, files(backend), "{backend}");
        }
    }
}
