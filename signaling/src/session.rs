//! Conference sessions: where a session stands and who runs it. Shared by the room that owns a
//! session and the tables that index it.

use serde::{Deserialize, Serialize};

/// Where a session stands: `scheduled -> live -> ended`, each step once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Not started yet.
    Scheduled,
    /// Running.
    Live,
    /// Over.
    Ended,
}

impl SessionStatus {
    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Scheduled => "scheduled",
            SessionStatus::Live => "live",
            SessionStatus::Ended => "ended",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<SessionStatus> {
        [
            SessionStatus::Scheduled,
            SessionStatus::Live,
            SessionStatus::Ended,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A member of a session's staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Staff {
    /// The creator, or a co-presenter they added.
    Presenter,
    /// Moderates questions.
    Moderator,
}

impl Staff {
    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Staff::Presenter => "presenter",
            Staff::Moderator => "moderator",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Staff> {
        [Staff::Presenter, Staff::Moderator]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One vote on a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// +1.
    Up,
    /// -1.
    Down,
}

/// What a presenter or moderator does to a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Moderation {
    /// Publishes a pending question.
    Approve,
    /// Hides it from attendees.
    Dismiss,
    /// Marks it answered.
    Answer,
    /// Pins it to the top.
    Pin,
    /// Unpins it.
    Unpin,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms_round_trip_and_match_the_wire() {
        for s in [
            SessionStatus::Scheduled,
            SessionStatus::Live,
            SessionStatus::Ended,
        ] {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in [Staff::Presenter, Staff::Moderator] {
            assert_eq!(Staff::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(SessionStatus::parse("Live"), None);
        assert_eq!(Staff::parse("owner"), None);
    }
}
