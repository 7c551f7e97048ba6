//! The journal writer: one task that appends the durable events of every room, group-committing
//! whatever has queued up into one transaction (one fsync) per batch.
//!
//! A room sends an [`AppendRequest`] and waits for the reply before it acknowledges or broadcasts
//! anything, so an event a client heard about is always on disk. Under load, the requests that
//! arrive while a batch commits form the next batch: latency stays near one commit while
//! throughput grows with the number of rooms.

use std::time::Instant;

use chrono::Utc;
use signaling::workspace::Role;
use signaling::{UserId, WorkspaceId};
use tokio::sync::{mpsc, oneshot};

use crate::db::{Store, on_pool};
use crate::error::StoreError;
use crate::rooms::to_i64;

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;
/// Requests that may wait for the writer before `append` itself waits.
const QUEUE_DEPTH: usize = 8192;

/// One durable event to append.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// Its offset in the room (the room's previous offset + 1).
    pub seq: u64,
    /// The event, as JSON.
    pub event: String,
}

/// A relational change that must commit together with the events that announce it.
#[derive(Debug, Clone)]
pub enum SideEffect {
    /// Add a member or change their role.
    UpsertMember {
        /// The workspace.
        workspace: WorkspaceId,
        /// The member.
        user: UserId,
        /// Their role.
        role: Role,
        /// Who made the change.
        by: UserId,
    },
    /// Remove a member.
    RemoveMember {
        /// The workspace.
        workspace: WorkspaceId,
        /// The member.
        user: UserId,
    },
    /// Rename a workspace.
    RenameWorkspace {
        /// The workspace.
        workspace: WorkspaceId,
        /// The new name.
        name: String,
    },
}

/// A room's events (and an optional side effect) to append atomically.
#[derive(Debug)]
pub struct AppendRequest {
    /// The room's key.
    pub room: String,
    /// The writer's fencing epoch.
    pub epoch: u64,
    /// The events, in offset order.
    pub entries: Vec<JournalEntry>,
    /// A relational change to commit with them.
    pub effect: Option<SideEffect>,
}

struct Queued {
    request: AppendRequest,
    enqueued: Instant,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// A handle to the journal writer; cheap to clone. The writer stops once every handle is gone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Queued>,
}

impl Journal {
    /// Starts the writer task on the current runtime. `latency` records, per request, the time
    /// from `append` to commit.
    pub fn spawn(store: Store, latency: metrics::Histogram) -> Journal {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(store, rx, latency));
        Journal { tx }
    }

    /// Appends atomically and durably; returns once committed.
    ///
    /// # Errors
    /// [`StoreError::StaleEpoch`] when the room has a newer owner (nothing was written);
    /// [`StoreError::Closed`] when the writer has stopped; or the database failed.
    pub async fn append(&self, request: AppendRequest) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        let queued = Queued {
            request,
            enqueued: Instant::now(),
            reply,
        };
        self.tx.send(queued).await.map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Queued>, latency: metrics::Histogram) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = match commit_batch(&store, &batch).await {
            Ok(results) => results,
            // One bad request must not fail its neighbours: retry each on its own.
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, size = batch.len(), "journal batch failed; retrying one by one");
                let mut results = Vec::with_capacity(batch.len());
                for q in &batch {
                    results.push(match commit_batch(&store, std::slice::from_ref(q)).await {
                        Ok(mut r) => r.pop().unwrap_or(Ok(())),
                        Err(e) => Err(e),
                    });
                }
                results
            }
            Err(e) => vec![Err(e)],
        };
        for (q, result) in batch.drain(..).zip(results) {
            latency.record(q.enqueued.elapsed().as_secs_f64());
            // The room may have stopped waiting; nothing to do then.
            let _ = q.reply.send(result);
        }
    }
    tracing::debug!("journal writer stopped");
}

/// Commits a batch in one transaction. Returns one result per request: a request whose epoch is
/// stale is skipped (its result is [`StoreError::StaleEpoch`]) without failing the others.
async fn commit_batch(
    store: &Store,
    batch: &[Queued],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let now = Utc::now();
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await?;
        let mut results = Vec::with_capacity(batch.len());
        for q in batch {
            let r = &q.request;
            let mut fenced = false;
            for entry in &r.entries {
                let done = sqlx::query(
                    "INSERT INTO room_journal (room_key, seq, epoch, event, recorded_at) \
                     SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM rooms WHERE room_key = $1 AND epoch = $3)",
                )
                .bind(&r.room)
                .bind(to_i64(entry.seq))
                .bind(to_i64(r.epoch))
                .bind(&entry.event)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    fenced = true;
                    break;
                }
            }
            if fenced {
                results.push(Err(StoreError::StaleEpoch));
                continue;
            }
            match &r.effect {
                None => {}
                Some(SideEffect::UpsertMember {
                    workspace,
                    user,
                    role,
                    by,
                }) => {
                    sqlx::query(
                        "INSERT INTO workspace_members (workspace_id, user_id, role, added_by, joined_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
                    )
                    .bind(workspace.as_uuid())
                    .bind(user.as_uuid())
                    .bind(role.as_str())
                    .bind(by.as_uuid())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Some(SideEffect::RemoveMember { workspace, user }) => {
                    sqlx::query(
                        "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
                    )
                    .bind(workspace.as_uuid())
                    .bind(user.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                }
                Some(SideEffect::RenameWorkspace { workspace, name }) => {
                    sqlx::query("UPDATE workspaces SET name = $1 WHERE id = $2")
                        .bind(name)
                        .bind(workspace.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            results.push(Ok(()));
        }
        tx.commit().await?;
        Ok(results)
    })
}
