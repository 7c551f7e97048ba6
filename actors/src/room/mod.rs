//! What every room kind shares, whatever its rules: the tunables, the services a room is given
//! ([`RoomContext`]), the roster of connections that outlives a crash, the mailbox depth count,
//! the bookkeeping of a join being caught up ([`PendingJoin`]), and who is in the room with
//! the fan-out to them ([`Sessions`]), the recent past kept in memory ([`Tail`]), and the
//! durable side: epoch, loading, appends and snapshots ([`durable::Durable`]), and the task that
//! brings a far-behind client up to date off the room ([`catchup::CatchUp`]).
//!
//! A room kind (the workspace today, the conference session next) imports from here and never
//! from the router or the supervisor, which import the room kinds: dependencies point one way.

pub mod catchup;
pub mod config;
pub mod context;
pub mod core;
pub mod durable;
pub mod pending;
pub mod reply;
pub mod sessions;
pub mod tail;

pub use config::{RoomConfig, SpamRules};
pub use context::{MAX_CATCHUPS, RoomContext, Roster, RouterError, StartError, depth_down};
pub use pending::PendingJoin;
pub use reply::{Refusal, ReplyTo};
pub use sessions::{FanOut, Sessions};
pub use tail::{Tail, page_size};

/// `resync` (or `session_resync`) for `room`: join again with your `last_offset`. `offset` is
/// the room's, when known (not when the node that ran it was lost).
pub fn resync_frame(room: signaling::RoomKey, offset: Option<u64>) -> crate::conn::WireFrame {
    let text = match room {
        signaling::RoomKey::Workspace(workspace_id) => signaling::server::ServerMsg::Resync {
            workspace_id,
            offset,
        }
        .to_json(),
        signaling::RoomKey::Session(session_id) => {
            crate::session::wire::SessionFrame::SessionResync { session_id, offset }.to_json()
        }
    };
    crate::conn::WireFrame::text(text)
}
