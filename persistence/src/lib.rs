//! Storage for the hub: account records (users, refresh tokens, workspaces, members, conference
//! sessions with their staff and attendees), the task board's queryable index, and room state (the journal of durable events,
//! snapshots, fencing epochs).
//!
//! One [`Store`] speaks to either PostgreSQL or an embedded SQLite file; both run the same SQL
//! (bound with `$n` placeholders, which both accept) against their own migrations. Rooms append
//! durable events through a [`Journal`], a single writer task that group-commits the appends of
//! many rooms in one transaction.
//!
//! Flow position: `hub -> actors -> persistence -> signaling`. The hub uses the account records
//! directly; room actors use the journal and snapshots.

mod accounts;
mod activity;
mod analytics;
mod board;
mod db;
mod error;
mod journal;
mod outbox;
mod rooms;
mod sessions;
mod workspaces;

pub use accounts::{AccountStatus, DELETED_ATTENDEE, NewUser, RefreshToken, UserRecord};
pub use activity::{ActivityRow, Day, Overview, Throughput};
pub use analytics::{Activity, QualitySample, SessionFact, Visit};
pub use board::{
    ConflictRecord, SortValue, TaskCursor, TaskQuery, TaskRow, TaskSort, search_words,
};
pub use db::{Backend, Store};
pub use error::StoreError;
pub use journal::{AppendRequest, Committed, Journal, JournalEntry, SideEffect};
pub use outbox::{Invitation, Job, JobState, Mail, TokenRefused};
pub use rooms::{JournalRecord, Snapshot};
pub use sessions::{AttendeeRecord, SessionRecord};
pub use workspaces::WorkspaceRecord;
