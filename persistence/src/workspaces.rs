//! Workspaces and their members: the relational index of who belongs where. Membership changes
//! made by a room are written through the journal ([`crate::SideEffect`]) so that the table and
//! the room's events never disagree.

use chrono::{DateTime, Utc};
use signaling::workspace::{Member, Role};
use signaling::{UserId, WorkspaceId};
use uuid::Uuid;

use crate::db::{Store, on_pool};
use crate::error::StoreError;

/// A stored workspace.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRecord {
    /// Its id.
    #[sqlx(try_from = "Uuid")]
    pub id: WorkspaceId,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: Uuid,
    role: String,
    name: String,
    email: String,
}

#[derive(sqlx::FromRow)]
struct MyWorkspaceRow {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    role: String,
}

fn parse_role(s: &str) -> Result<Role, StoreError> {
    Role::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown role `{s}`")))
}

impl Store {
    /// Creates a workspace with `owner` as its first owner, in one transaction.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_workspace(
        &self,
        name: &str,
        owner: UserId,
    ) -> Result<WorkspaceRecord, StoreError> {
        let ws = WorkspaceRecord {
            id: WorkspaceId::new(),
            name: name.to_owned(),
            created_at: Utc::now(),
        };
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO workspaces (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(ws.id.as_uuid())
            .bind(&ws.name)
            .bind(owner.as_uuid())
            .bind(ws.created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO workspace_members (workspace_id, user_id, role, added_by, joined_at) VALUES ($1, $2, $3, $2, $4)")
                .bind(ws.id.as_uuid())
                .bind(owner.as_uuid())
                .bind(Role::Owner.as_str())
                .bind(ws.created_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(ws)
    }

    /// The workspaces `user` belongs to, with their role in each, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn workspaces_for_user(
        &self,
        user: UserId,
    ) -> Result<Vec<(WorkspaceRecord, Role)>, StoreError> {
        let rows: Vec<MyWorkspaceRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT w.id, w.name, w.created_at, m.role FROM workspaces w \
                 JOIN workspace_members m ON m.workspace_id = w.id \
                 WHERE m.user_id = $1 ORDER BY w.created_at, w.id",
            )
            .bind(user.as_uuid())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    WorkspaceRecord {
                        id: r.id.into(),
                        name: r.name,
                        created_at: r.created_at,
                    },
                    parse_role(&r.role)?,
                ))
            })
            .collect()
    }

    /// Workspaces, newest first: at most `limit`, older than `before` if given. For the
    /// operator's list.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_workspaces(
        &self,
        before: Option<WorkspaceId>,
        limit: u32,
    ) -> Result<Vec<WorkspaceRecord>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, created_at FROM workspaces \
                 WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(before.map(|b| b.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })?)
    }

    /// One workspace.
    ///
    /// # Errors
    /// The database failed.
    pub async fn workspace(&self, id: WorkspaceId) -> Result<Option<WorkspaceRecord>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, name, created_at FROM workspaces WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await
        })?)
    }

    /// The members of a workspace, in the order they joined.
    ///
    /// # Errors
    /// The database failed.
    pub async fn members(&self, id: WorkspaceId) -> Result<Vec<Member>, StoreError> {
        let rows: Vec<MemberRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT m.user_id, m.role, u.name, u.email FROM workspace_members m \
                 JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 ORDER BY m.joined_at, u.email",
            )
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(Member {
                    user_id: r.user_id.into(),
                    role: parse_role(&r.role)?,
                    name: r.name,
                    email: r.email,
                })
            })
            .collect()
    }

    /// `user`'s role in a workspace, if they are a member.
    ///
    /// # Errors
    /// The database failed.
    pub async fn membership(
        &self,
        id: WorkspaceId,
        user: UserId,
    ) -> Result<Option<Role>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            )
            .bind(id.as_uuid())
            .bind(user.as_uuid())
            .fetch_optional(pool)
            .await
        })?;
        row.map(|(r,)| parse_role(&r)).transpose()
    }

    /// Deletes a workspace with its members, journal, snapshot and epoch.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_workspace(&self, id: WorkspaceId) -> Result<(), StoreError> {
        let key = signaling::RoomKey::Workspace(id).to_string();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for sql in crate::rooms::DELETE_ROOM {
                sqlx::query(sql).bind(&key).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM workspaces WHERE id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }
}
