//! The workspace activity feed and the board's analytics. The feed has one row per durable event
//! (written with the event's journal batch, kept past journal trimming for a retention period);
//! the analytics read it and the board index.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use signaling::{UserId, WorkspaceId};
use uuid::Uuid;

use crate::db::{Store, on_pool};
use crate::error::StoreError;
use crate::rooms::to_i64;

/// One entry of the feed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivityRow {
    /// The workspace.
    #[serde(skip)]
    pub workspace: WorkspaceId,
    /// The event's offset.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: UserId,
    /// What: the event's type (`task_created`, …), or `task_completed` for an update that
    /// completed a task.
    pub kind: String,
    /// The task, category or member it was about.
    pub subject: Option<Uuid>,
    /// A few words on it (a title, the fields changed, a role).
    #[schema(value_type = Object)]
    pub detail: Value,
}

type ActivityDbRow = (i64, i64, Uuid, String, Option<Uuid>, String);

/// Entries per multi-row `INSERT` (7 arguments each: well under both backends' limits).
pub(crate) const INSERT_CHUNK: usize = 500;

/// One `INSERT` of many feed entries (an entry already there is left as it is).
pub(crate) fn insert_statement(rows: &[&ActivityRow]) -> crate::board::Statement {
    use crate::board::Arg;
    let mut args = Vec::with_capacity(rows.len() * 7);
    let mut values = Vec::with_capacity(rows.len());
    for a in rows {
        let n = args.len();
        args.extend([
            Arg::Uuid(a.workspace.as_uuid()),
            Arg::Int(to_i64(a.seq)),
            Arg::Int(a.at.timestamp_millis()),
            Arg::Uuid(a.actor.as_uuid()),
            Arg::Text(a.kind.clone()),
            Arg::OptUuid(a.subject),
            Arg::Text(a.detail.to_string()),
        ]);
        let marks: Vec<String> = (n + 1..=n + 7).map(|k| format!("${k}")).collect();
        values.push(format!("({})", marks.join(", ")));
    }
    let sql = format!(
        "INSERT INTO activity (workspace_id, seq, at_ms, actor, kind, subject, detail) VALUES {} \
         ON CONFLICT (workspace_id, seq) DO NOTHING",
        values.join(", ")
    );
    (sql, args)
}

/// Counts of a workspace's board.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// Tasks in all.
    pub total: u64,
    /// By status.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// By priority.
    pub by_priority: std::collections::BTreeMap<String, u64>,
    /// Not completed and due before now.
    pub overdue: u64,
    /// Mean time from creation to completion of the completed tasks, in hours.
    pub mean_completion_hours: Option<f64>,
}

/// One day of the trends.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Day {
    /// The day (UTC), `YYYY-MM-DD`.
    pub date: String,
    /// Tasks created.
    pub created: u64,
    /// Tasks completed.
    pub completed: u64,
}

/// One member's throughput.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Throughput {
    /// The member.
    pub user_id: UserId,
    /// Tasks they completed in the window.
    pub completed: u64,
    /// Tasks they created in the window.
    pub created: u64,
    /// Other changes they made in the window.
    pub updated: u64,
}

const DAY_MS: i64 = 86_400_000;

/// Counts by status, counts by priority rank, overdue, mean completion milliseconds.
type OverviewRows = (Vec<(String, i64)>, Vec<(i64, i64)>, (i64,), (Option<f64>,));

impl Store {
    /// A workspace's feed, newest first: entries before offset `before`, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn workspace_activity(
        &self,
        workspace: WorkspaceId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        let rows: Vec<ActivityDbRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, at_ms, actor, kind, subject, detail FROM activity \
                 WHERE workspace_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(workspace.as_uuid())
            .bind(before.map_or(i64::MAX, to_i64))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(seq, at, actor, kind, subject, detail)| ActivityRow {
                workspace,
                seq: u64::try_from(seq).unwrap_or(0),
                at: DateTime::from_timestamp_millis(at).unwrap_or_default(),
                actor: UserId::from_uuid(actor),
                kind,
                subject,
                detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            })
            .collect())
    }

    /// Deletes feed entries older than `cutoff`, at most `limit` of them; returns how many.
    ///
    /// # Errors
    /// The database failed.
    pub async fn trim_activity(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM activity WHERE (workspace_id, seq) IN (SELECT workspace_id, seq \
                 FROM activity WHERE at_ms < $1 LIMIT $2)",
            )
            .bind(cutoff.timestamp_millis())
            .bind(i64::from(limit))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done)
    }

    /// Counts of a workspace's board, from its index.
    ///
    /// # Errors
    /// The database failed.
    pub async fn overview(&self, workspace: WorkspaceId) -> Result<Overview, StoreError> {
        let now = Utc::now().timestamp_millis();
        let id = workspace.as_uuid();
        let (statuses, priorities, overdue, mean): OverviewRows = on_pool!(self, |pool| {
            let statuses = sqlx::query_as(
                "SELECT status, COUNT(*) FROM tasks WHERE workspace_id = $1 GROUP BY status",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let priorities = sqlx::query_as(
                "SELECT CAST(priority AS BIGINT), COUNT(*) FROM tasks WHERE workspace_id = $1 \
                 GROUP BY priority",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let overdue = sqlx::query_as(
                "SELECT COUNT(*) FROM tasks WHERE workspace_id = $1 AND completed = $2 \
                 AND due_sort < $3",
            )
            .bind(id)
            .bind(false)
            .bind(now)
            .fetch_one(pool)
            .await?;
            let mean = sqlx::query_as(
                "SELECT CAST(AVG(completed_ms - created_ms) AS DOUBLE PRECISION) FROM tasks \
                 WHERE workspace_id = $1 AND completed_ms IS NOT NULL",
            )
            .bind(id)
            .fetch_one(pool)
            .await?;
            Ok::<_, sqlx::Error>((statuses, priorities, overdue, mean))
        })?;
        let mut o = Overview::default();
        for (status, n) in statuses {
            let n = u64::try_from(n).unwrap_or(0);
            o.total += n;
            o.by_status.insert(status, n);
        }
        for s in ["todo", "in_progress", "done"] {
            o.by_status.entry(s.into()).or_insert(0);
        }
        for (rank, n) in priorities {
            let name = match rank {
                0 => "low",
                2 => "high",
                _ => "medium",
            };
            *o.by_priority.entry(name.into()).or_insert(0) += u64::try_from(n).unwrap_or(0);
        }
        for p in ["low", "medium", "high"] {
            o.by_priority.entry(p.into()).or_insert(0);
        }
        o.overdue = u64::try_from(overdue.0).unwrap_or(0);
        o.mean_completion_hours = mean.0.map(|ms| ms / 3_600_000.0);
        Ok(o)
    }

    /// Tasks created and completed per day (UTC) over the last `days` days, from the feed.
    ///
    /// # Errors
    /// The database failed.
    pub async fn trends(&self, workspace: WorkspaceId, days: u32) -> Result<Vec<Day>, StoreError> {
        let today = Utc::now().timestamp_millis().div_euclid(DAY_MS);
        let first = today - i64::from(days.max(1)) + 1;
        let rows: Vec<(i64, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT at_ms / 86400000, kind, COUNT(*) FROM activity WHERE workspace_id = $1 \
                 AND at_ms >= $2 AND kind IN ('task_created', 'task_completed') \
                 GROUP BY at_ms / 86400000, kind",
            )
            .bind(workspace.as_uuid())
            .bind(first * DAY_MS)
            .fetch_all(pool)
            .await
        })?;
        let mut out: Vec<Day> = (first..=today)
            .map(|d| Day {
                date: DateTime::from_timestamp_millis(d * DAY_MS)
                    .unwrap_or_default()
                    .format("%Y-%m-%d")
                    .to_string(),
                created: 0,
                completed: 0,
            })
            .collect();
        for (day, kind, n) in rows {
            let Some(slot) = usize::try_from(day - first)
                .ok()
                .and_then(|i| out.get_mut(i))
            else {
                continue;
            };
            let n = u64::try_from(n).unwrap_or(0);
            if kind == "task_created" {
                slot.created += n;
            } else {
                slot.completed += n;
            }
        }
        Ok(out)
    }

    /// What each member did over the last `days` days, from the feed, busiest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn productivity(
        &self,
        workspace: WorkspaceId,
        days: u32,
    ) -> Result<Vec<Throughput>, StoreError> {
        let since = Utc::now().timestamp_millis() - i64::from(days.max(1)) * DAY_MS;
        let rows: Vec<(Uuid, String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT actor, kind, COUNT(*) FROM activity WHERE workspace_id = $1 \
                 AND at_ms >= $2 GROUP BY actor, kind",
            )
            .bind(workspace.as_uuid())
            .bind(since)
            .fetch_all(pool)
            .await
        })?;
        let mut by: std::collections::HashMap<Uuid, Throughput> = std::collections::HashMap::new();
        for (actor, kind, n) in rows {
            let t = by.entry(actor).or_insert_with(|| Throughput {
                user_id: UserId::from_uuid(actor),
                completed: 0,
                created: 0,
                updated: 0,
            });
            let n = u64::try_from(n).unwrap_or(0);
            match kind.as_str() {
                "task_completed" => t.completed += n,
                "task_created" => t.created += n,
                _ => t.updated += n,
            }
        }
        let mut out: Vec<Throughput> = by.into_values().collect();
        out.sort_by(|a, b| {
            (b.completed, b.created, b.updated, a.user_id).cmp(&(
                a.completed,
                a.created,
                a.updated,
                b.user_id,
            ))
        });
        Ok(out)
    }
}
