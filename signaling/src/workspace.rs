//! Workspace membership and presence as they appear on the wire.

use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// A member's role in a workspace, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including deleting the workspace. A workspace always keeps one.
    Owner,
    /// Manages members (but not owners) and the board.
    Admin,
    /// Works on the board.
    Member,
    /// Reads only.
    Viewer,
}

impl Role {
    /// May create, change and delete tasks.
    pub const fn can_write_tasks(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// May add and remove members and change their roles.
    pub const fn can_manage_members(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// The role as stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a stored role.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "member" => Role::Member,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }
}

/// A member of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    /// The account.
    pub user_id: UserId,
    /// Their role here.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// What a member shows others. `offline` is only ever sent by the hub, when a member's last
/// connection leaves the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Connected and active.
    Online,
    /// Connected, not at the keyboard.
    Away,
    /// Connected, do not disturb.
    Busy,
    /// Not connected to this room.
    Offline,
    /// The node the member was connected through was lost: they may be reconnecting. Sent by
    /// the hub only; after a grace period they are `offline`, unless they came back.
    Suspect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_what_they_print() {
        for role in [Role::Owner, Role::Admin, Role::Member, Role::Viewer] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert!(!Role::Viewer.can_write_tasks());
        assert!(Role::Member.can_write_tasks());
        assert!(!Role::Member.can_manage_members());
    }
}
