//! Who is in the room right now: the joined connections and each user's presence. A user may
//! hold several connections; they show as one presence, `offline` only when the last one leaves.

use std::collections::HashMap;
use std::time::Instant;

use signaling::UserId;
use signaling::server::Presence;
use signaling::workspace::PresenceStatus;

use crate::conn::{Class, ConnHandle, ConnId, Delivery, WireFrame};

struct UserPresence {
    status: PresenceStatus,
    conns: u32,
    /// With no connection left: shown `suspect` until then (their node was lost).
    suspect_until: Option<Instant>,
}

/// The joined connections of a room.
#[derive(Default)]
pub struct Sessions {
    conns: HashMap<ConnId, ConnHandle>,
    users: HashMap<UserId, UserPresence>,
}

/// What a fan-out did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Frames queued.
    pub queued: u64,
    /// Droppable frames skipped for members falling behind.
    pub dropped: u64,
    /// Conflatable frames that replaced an older one still waiting.
    pub conflated: u64,
    /// Connections closed as slow consumers.
    pub evicted: Vec<ConnId>,
    /// Connections found closed.
    pub gone: Vec<ConnId>,
}

impl Sessions {
    /// Adds a connection. Returns true when it is its user's first (they came online), or
    /// their first since they turned `suspect` (they are back: online again).
    pub fn join(&mut self, conn: ConnHandle) -> bool {
        let user = conn.user();
        if self.conns.insert(conn.id(), conn).is_some() {
            return false;
        }
        let p = self.users.entry(user).or_insert(UserPresence {
            status: PresenceStatus::Online,
            conns: 0,
            suspect_until: None,
        });
        if p.suspect_until.take().is_some() {
            p.status = PresenceStatus::Online;
        }
        p.conns += 1;
        p.conns == 1
    }

    /// Removes a connection whose node was lost. Returns its user when it was their last: they
    /// show as `suspect` until `until` (see [`Sessions::expire`]) rather than `offline` at once.
    pub fn lose(&mut self, id: ConnId, until: Instant) -> Option<UserId> {
        let user = self.conns.remove(&id)?.user();
        let p = self.users.get_mut(&user)?;
        p.conns -= 1;
        if p.conns > 0 {
            return None;
        }
        p.status = PresenceStatus::Suspect;
        p.suspect_until = Some(until);
        Some(user)
    }

    /// The suspects whose grace ended by `now` without a connection back: gone (`offline`).
    pub fn expire(&mut self, now: Instant) -> Vec<UserId> {
        let gone: Vec<UserId> = self
            .users
            .iter()
            .filter(|(_, p)| p.conns == 0 && p.suspect_until.is_some_and(|t| t <= now))
            .map(|(u, _)| *u)
            .collect();
        for user in &gone {
            self.users.remove(user);
        }
        gone
    }

    /// Removes a connection. Returns its user when it was their last (they went offline).
    pub fn leave(&mut self, id: ConnId) -> Option<UserId> {
        let user = self.conns.remove(&id)?.user();
        let p = self.users.get_mut(&user)?;
        p.conns -= 1;
        if p.conns == 0 && p.suspect_until.is_none() {
            self.users.remove(&user);
            Some(user)
        } else {
            None
        }
    }

    /// A joined connection.
    pub fn get(&self, id: ConnId) -> Option<&ConnHandle> {
        self.conns.get(&id)
    }

    /// The connections of `user` (to close them when they stop being a member).
    pub fn conns_of(&self, user: UserId) -> Vec<ConnId> {
        self.conns
            .values()
            .filter(|c| c.user() == user)
            .map(ConnHandle::id)
            .collect()
    }

    /// Sets a joined user's status. Returns false when it did not change.
    pub fn set_status(&mut self, user: UserId, status: PresenceStatus) -> bool {
        match self.users.get_mut(&user) {
            Some(p) if p.status != status => {
                p.status = status;
                true
            }
            _ => false,
        }
    }

    /// True when the connection has joined.
    pub fn is_joined(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// True when no one is connected.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Every joined connection.
    pub fn conns(&self) -> impl Iterator<Item = &ConnHandle> {
        self.conns.values()
    }

    /// Who is connected and how they show.
    pub fn presence(&self) -> Vec<Presence> {
        self.users
            .iter()
            .map(|(user_id, p)| Presence {
                user_id: *user_id,
                status: p.status,
            })
            .collect()
    }

    /// Hands `frame` to every joined connection but `except`, without waiting. Reports who was
    /// evicted or found gone; the caller removes them.
    pub fn fan_out(&self, frame: &WireFrame, class: Class, except: Option<ConnId>) -> FanOut {
        let mut out = FanOut::default();
        for (id, conn) in &self.conns {
            if Some(*id) == except {
                continue;
            }
            match conn.push(frame.clone(), class) {
                Delivery::Queued => out.queued += 1,
                Delivery::Dropped => out.dropped += 1,
                Delivery::Conflated => out.conflated += 1,
                Delivery::Evicted => out.evicted.push(*id),
                Delivery::Gone => out.gone.push(*id),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_online_once_and_offline_after_the_last_connection() {
        let user = UserId::new();
        let (a, _oa) = ConnHandle::new(1, user, 8);
        let (b, _ob) = ConnHandle::new(2, user, 8);
        let mut s = Sessions::default();
        assert!(s.join(a.clone()));
        assert!(!s.join(b));
        assert!(!s.join(a), "joining twice is not a second connection");
        assert!(s.set_status(user, PresenceStatus::Busy));
        assert!(!s.set_status(user, PresenceStatus::Busy));
        assert_eq!(s.presence()[0].status, PresenceStatus::Busy);
        assert_eq!(s.leave(1), None);
        assert_eq!(s.leave(2), Some(user));
        assert!(s.is_empty());
        assert_eq!(s.leave(2), None);
    }

    #[test]
    fn a_member_whose_node_was_lost_is_suspect_until_back_or_the_grace_ends() {
        let (ada, bob) = (UserId::new(), UserId::new());
        let (a, _oa) = ConnHandle::new(1, ada, 8);
        let (b, _ob) = ConnHandle::new(2, bob, 8);
        let mut s = Sessions::default();
        s.join(a);
        s.join(b);
        let now = Instant::now();
        let grace = std::time::Duration::from_secs(10);
        assert_eq!(s.lose(1, now + grace), Some(ada));
        assert_eq!(s.lose(2, now + grace), Some(bob));
        let status = |s: &Sessions, u: UserId| {
            s.presence()
                .iter()
                .find(|p| p.user_id == u)
                .map(|p| p.status)
        };
        assert_eq!(status(&s, ada), Some(PresenceStatus::Suspect));
        // Ada is back within the grace: online again, and never offline.
        let (a2, _oa2) = ConnHandle::new(3, ada, 8);
        assert!(s.join(a2), "back: the others hear she is online");
        assert_eq!(status(&s, ada), Some(PresenceStatus::Online));
        assert_eq!(s.expire(now + grace), vec![bob], "Bob did not come back");
        assert_eq!(status(&s, bob), None);
        assert!(s.expire(now + grace * 2).is_empty(), "each goes once");
        assert_eq!(s.leave(3), Some(ada), "a normal leave is offline at once");
    }

    #[tokio::test]
    async fn fan_out_skips_the_sender_and_reports_slow_members() {
        let mut s = Sessions::default();
        let (fast, mut fast_out) = ConnHandle::new(1, UserId::new(), 8);
        let (slow, _slow_out) = ConnHandle::new(2, UserId::new(), 1);
        let (me, mut my_out) = ConnHandle::new(3, UserId::new(), 8);
        s.join(fast);
        s.join(slow);
        s.join(me);
        let frame = WireFrame::text("{}");
        let first = s.fan_out(&frame, Class::MustDeliver, Some(3));
        assert_eq!(first.queued, 2);
        let second = s.fan_out(&frame, Class::MustDeliver, Some(3));
        assert_eq!(second.queued, 1);
        assert_eq!(second.evicted, vec![2]);
        let got = fast_out.recv().await.unwrap();
        assert_eq!(&got, frame.bytes());
        // Encoded once: every member's outbox holds the room's own buffer, not a copy.
        assert_eq!(got.as_ptr(), frame.bytes().as_ptr());
        assert!(my_out.try_recv().is_none());
    }
}
