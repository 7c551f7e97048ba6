//! The journal writer: one task that appends the durable events of every room, group-committing
//! whatever has queued up into one transaction (one fsync) per batch.
//!
//! A room sends an [`AppendRequest`] and waits for the reply before it acknowledges or broadcasts
//! anything, so an event a client heard about is always on disk. Under load, the requests that
//! arrive while a batch commits form the next batch: latency stays near one commit while
//! throughput grows with the number of rooms.

use std::time::Instant;

use chrono::Utc;
use signaling::category::Category;
use signaling::session::Staff;
use signaling::sync::{Choice, Conflict};
use signaling::workspace::Role;
use signaling::{CategoryId, SessionId, TaskId, UserId, WorkspaceId};
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
    /// A conference session's indexed fields changed (info, or where it stands).
    UpdateSession {
        /// The session's row as it now is (`created_by` and `created_at` are not touched).
        session: Box<crate::SessionRecord>,
    },
    /// Someone joined a session's staff or changed role in it.
    SetSessionStaff {
        /// The session.
        session: SessionId,
        /// The account.
        user: UserId,
        /// Their role.
        role: Staff,
    },
    /// A question was asked in a session (indexes it for lookups by id).
    IndexQuestion {
        /// The session.
        session: SessionId,
        /// The question.
        question: uuid::Uuid,
        /// When.
        at: chrono::DateTime<Utc>,
    },
    /// Someone left a session's staff.
    RemoveSessionStaff {
        /// The session.
        session: SessionId,
        /// The account.
        user: UserId,
    },
    /// A task of the board's index was created or changed.
    PutTask(Box<crate::board::TaskRow>),
    /// Tasks left the board.
    DeleteTasks {
        /// The workspace.
        workspace: WorkspaceId,
        /// Which.
        tasks: Vec<TaskId>,
    },
    /// A category was created or changed.
    PutCategory {
        /// The workspace.
        workspace: WorkspaceId,
        /// The category.
        category: Box<Category>,
        /// It, as clients see it.
        doc: String,
    },
    /// A category was deleted.
    DeleteCategory {
        /// The workspace.
        workspace: WorkspaceId,
        /// Which.
        category: CategoryId,
    },
    /// Conflict ledger entries were made.
    PutConflicts {
        /// The workspace.
        workspace: WorkspaceId,
        /// The entries.
        conflicts: Vec<Conflict>,
    },
    /// An entry of the activity feed, for the event of the append at `seq`.
    Activity(Box<crate::activity::ActivityRow>),
    /// A ledger entry was settled.
    ResolveConflict {
        /// The workspace.
        workspace: WorkspaceId,
        /// The entry.
        id: uuid::Uuid,
        /// The choice.
        choice: Choice,
        /// Who.
        by: UserId,
    },
}

/// A room's events (and their side effects) to append atomically.
#[derive(Debug)]
pub struct AppendRequest {
    /// The room's key.
    pub room: String,
    /// The writer's fencing epoch.
    pub epoch: u64,
    /// The events, in offset order.
    pub entries: Vec<JournalEntry>,
    /// The relational changes to commit with them.
    pub effects: Vec<SideEffect>,
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
        self.submit(request).await?.await
    }

    /// Queues an append and returns at once with its outcome to come: appends are committed in
    /// the order they are queued, so a room can keep deciding while its earlier appends are in
    /// flight (each append must follow the previous one: see [`StoreError::OutOfOrder`]).
    ///
    /// # Errors
    /// [`StoreError::Closed`] when the writer has stopped.
    pub async fn submit(&self, request: AppendRequest) -> Result<Committed, StoreError> {
        let (reply, done) = oneshot::channel();
        let queued = Queued {
            request,
            enqueued: Instant::now(),
            reply,
        };
        self.tx.send(queued).await.map_err(|_| StoreError::Closed)?;
        Ok(Committed(done))
    }
}

/// The outcome of a submitted append, once it is committed (or refused).
#[derive(Debug)]
pub struct Committed(oneshot::Receiver<Result<(), StoreError>>);

impl std::future::Future for Committed {
    type Output = Result<(), StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
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
        let mut activity: Vec<&crate::activity::ActivityRow> = Vec::new();
        for q in batch {
            let r = &q.request;
            let (Some(first), Some(last)) = (r.entries.first(), r.entries.last()) else {
                results.push(Ok(()));
                continue;
            };
            // The head guard: this append follows the last one journaled, under this epoch.
            // The board index moves with the head when it was in step (this append writes its
            // rows too); one behind stays behind, to be rebuilt when the room loads.
            let moved = sqlx::query(
                "UPDATE rooms SET last_seq = $3, indexed_seq = CASE WHEN indexed_seq = $4 \
                 THEN $3 ELSE indexed_seq END WHERE room_key = $1 AND epoch = $2 \
                 AND last_seq = $4",
            )
            .bind(&r.room)
            .bind(to_i64(r.epoch))
            .bind(to_i64(last.seq))
            .bind(to_i64(first.seq.saturating_sub(1)))
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                let (epoch,): (i64,) =
                    sqlx::query_as("SELECT epoch FROM rooms WHERE room_key = $1")
                        .bind(&r.room)
                        .fetch_optional(&mut *tx)
                        .await?
                        .unwrap_or((0,));
                results.push(Err(if epoch == to_i64(r.epoch) {
                    StoreError::OutOfOrder
                } else {
                    StoreError::StaleEpoch
                }));
                continue;
            }
            for entry in &r.entries {
                sqlx::query(
                    "INSERT INTO room_journal (room_key, seq, epoch, event, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&r.room)
                .bind(to_i64(entry.seq))
                .bind(to_i64(r.epoch))
                .bind(&entry.event)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for effect in &r.effects {
                match effect {
                    SideEffect::UpsertMember {
                        workspace,
                        user,
                        role,
                        by,
                    } => {
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
                    SideEffect::RemoveMember { workspace, user } => {
                        sqlx::query(
                        "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
                    )
                    .bind(workspace.as_uuid())
                    .bind(user.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                    }
                    SideEffect::RenameWorkspace { workspace, name } => {
                        sqlx::query("UPDATE workspaces SET name = $1 WHERE id = $2")
                            .bind(name)
                            .bind(workspace.as_uuid())
                            .execute(&mut *tx)
                            .await?;
                    }
                    SideEffect::UpdateSession { session: s } => {
                        sqlx::query(
                            "UPDATE sessions SET title = $1, description = $2, status = $3, \
                         scheduled_at = $4, capacity = $5 WHERE id = $6",
                        )
                        .bind(&s.title)
                        .bind(&s.description)
                        .bind(s.status.as_str())
                        .bind(s.scheduled_at)
                        .bind(i64::from(s.capacity))
                        .bind(s.id.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    }
                    SideEffect::SetSessionStaff {
                        session,
                        user,
                        role,
                    } => {
                        sqlx::query(
                            "INSERT INTO session_staff (session_id, user_id, role, added_at) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (session_id, user_id) DO UPDATE SET role = excluded.role",
                        )
                        .bind(session.as_uuid())
                        .bind(user.as_uuid())
                        .bind(role.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    SideEffect::IndexQuestion {
                        session,
                        question,
                        at,
                    } => {
                        sqlx::query(
                            "INSERT INTO session_questions (id, session_id, asked_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(question)
                        .bind(session.as_uuid())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    SideEffect::RemoveSessionStaff { session, user } => {
                        sqlx::query(
                            "DELETE FROM session_staff WHERE session_id = $1 AND user_id = $2",
                        )
                        .bind(session.as_uuid())
                        .bind(user.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    }
                    SideEffect::PutTask(row) => crate::board::put_task!(tx, row),
                    SideEffect::DeleteTasks { workspace, tasks } => {
                        for task in tasks {
                            sqlx::query("DELETE FROM tasks WHERE workspace_id = $1 AND id = $2")
                                .bind(workspace.as_uuid())
                                .bind(task.as_uuid())
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    SideEffect::PutCategory {
                        workspace,
                        category,
                        doc,
                    } => {
                        sqlx::query(
                        "INSERT INTO categories (workspace_id, id, name, position, doc) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, id) DO UPDATE \
                         SET name = excluded.name, position = excluded.position, doc = excluded.doc",
                    )
                    .bind(workspace.as_uuid())
                    .bind(category.id.as_uuid())
                    .bind(&category.name)
                    .bind(category.position)
                    .bind(doc)
                    .execute(&mut *tx)
                    .await?;
                    }
                    SideEffect::PutConflicts {
                        workspace,
                        conflicts,
                    } => {
                        for c in conflicts {
                            let doc = serde_json::to_string(c)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                            sqlx::query(
                                "INSERT INTO sync_conflicts (workspace_id, id, task_id, created_ms, doc) \
                                 VALUES ($1, $2, $3, $4, $5)",
                            )
                            .bind(workspace.as_uuid())
                            .bind(c.id)
                            .bind(c.task_id.as_uuid())
                            .bind(c.at.timestamp_millis())
                            .bind(doc)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    SideEffect::ResolveConflict {
                        workspace,
                        id,
                        choice,
                        by,
                    } => {
                        let choice = match choice {
                            Choice::Kept => "kept",
                            Choice::Lost => "lost",
                        };
                        sqlx::query(
                            "UPDATE sync_conflicts SET resolved_ms = $3, resolved_by = $4, \
                             resolution = $5 WHERE workspace_id = $1 AND id = $2 \
                             AND resolved_ms IS NULL",
                        )
                        .bind(workspace.as_uuid())
                        .bind(id)
                        .bind(now.timestamp_millis())
                        .bind(by.as_uuid())
                        .bind(choice)
                        .execute(&mut *tx)
                        .await?;
                    }
                    // Written together at the end of the batch: one statement for many events.
                    SideEffect::Activity(a) => activity.push(a),
                    SideEffect::DeleteCategory {
                        workspace,
                        category,
                    } => {
                        sqlx::query("DELETE FROM categories WHERE workspace_id = $1 AND id = $2")
                            .bind(workspace.as_uuid())
                            .bind(category.as_uuid())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            results.push(Ok(()));
        }
        for chunk in activity.chunks(crate::activity::INSERT_CHUNK) {
            use crate::board::Arg;
            let (sql, args) = crate::activity::insert_statement(chunk);
            crate::board::bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(results)
    })
}
