//! Typed ids. Every id is a UUID underneath; the newtypes keep a `UserId` from being passed where
//! a `WorkspaceId` is expected, and parse (and so validate) at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not a valid id.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id")]
pub struct InvalidId {
    /// Which kind of id was expected.
    pub kind: &'static str,
    /// What was given (truncated).
    pub value: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                // Parsed from the string ourselves so that a bad id is described in the
                // protocol's words, not the uuid crate's.
                let text = std::borrow::Cow::<'de, str>::deserialize(de)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps an existing UUID (as read from storage).
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The UUID underneath.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId {
                    kind: $kind,
                    value: s.chars().take(64).collect(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

uuid_id!(
    /// A registered account.
    UserId,
    "user"
);
uuid_id!(
    /// A team workspace (and so its room).
    WorkspaceId,
    "workspace"
);
uuid_id!(
    /// A conference session (and so its room).
    SessionId,
    "session"
);
uuid_id!(
    /// An attendee of a conference session: a registered user's or a guest's.
    AttendeeId,
    "attendee"
);
uuid_id!(
    /// A task on a workspace's board.
    TaskId,
    "task"
);
uuid_id!(
    /// A category of a workspace's tasks.
    CategoryId,
    "category"
);

impl AttendeeId {
    /// A registered user's attendee id in `session`: the same every time they join it, and
    /// different in every session (a name-based UUID of the pair), so that attendance, votes and
    /// signaling know them as one attendee across tabs and reconnects.
    pub fn of_user(session: SessionId, user: UserId) -> AttendeeId {
        AttendeeId::from_uuid(Uuid::new_v5(&session.as_uuid(), user.as_uuid().as_bytes()))
    }
}

/// Names a room across all room kinds: the journal, the snapshots and the registry are keyed by
/// it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RoomKey {
    /// The room of a team workspace.
    Workspace(WorkspaceId),
    /// The room of a conference session.
    Session(SessionId),
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Workspace(id) => write!(f, "ws:{id}"),
            RoomKey::Session(id) => write!(f, "session:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = WorkspaceId::new();
        assert_eq!(id.to_string().parse::<WorkspaceId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<WorkspaceId>(&json).unwrap(), id);
    }

    #[test]
    fn garbage_is_not_an_id() {
        let err = "not-a-uuid".parse::<UserId>().unwrap_err();
        assert_eq!(err.kind, "user");
        assert!(serde_json::from_str::<TaskId>("\"x\"").is_err());
    }

    #[test]
    fn room_keys_name_their_kind() {
        let id = WorkspaceId::new();
        assert_eq!(RoomKey::Workspace(id).to_string(), format!("ws:{id}"));
    }
}
