//! Every open WebSocket connection, by user and by client address: the caps on how many one
//! user or one address may hold, and the way to close all of a user's connections at once (their
//! account was disabled or deleted).
//!
//! A connection is counted from the moment it is admitted (before the upgrade is answered) until
//! its socket is gone: an [`Admission`] holds the place and gives it back when dropped, which the
//! connection task does last.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::{CloseReason, ConnHandle, ConnId};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use signaling::UserId;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapExceeded {
    /// The user holds the most connections allowed.
    PerUser(usize),
    /// The address holds the most connections allowed.
    PerAddress(usize),
    /// The user's connections were closed a moment ago (disabled or deleted account): one
    /// whose account check raced with the closing is refused here.
    Revoked,
}

/// How long a closed user's new connections are refused without asking the database: far
/// longer than an upgrade takes between its account check and its admission.
const REVOKED_FOR: Duration = Duration::from_secs(60);
/// How long an account read at an upgrade vouches for the user's next upgrades (while one of
/// their connections is open): bounds how late a change made outside this process (by hand in
/// the database, or by another node) is seen.
const VOUCH_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
struct UserConns {
    /// Admitted, with or without a connection attached yet.
    count: usize,
    /// Bumped by [`Registry::close_user`], so that a connection admitted before the close but
    /// attached after it is closed too.
    generation: u64,
    conns: Vec<ConnHandle>,
    /// When the account was last read and found enabled.
    checked_at: Option<Instant>,
}

struct Inner {
    per_user: usize,
    per_ip: usize,
    users: DashMap<UserId, UserConns>,
    ips: DashMap<IpAddr, usize>,
    /// Users whose connections were closed, until when new ones are refused.
    revoked: DashMap<UserId, Instant>,
}

/// The open connections. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// A connection's place in the registry, given back on drop.
pub struct Admission {
    inner: Arc<Inner>,
    user: UserId,
    ip: IpAddr,
    generation: u64,
    conn: Option<ConnId>,
    /// Counted in the cluster's caps too: released with it.
    shared: Option<Arc<actors::cluster::Cluster>>,
}

impl Registry {
    /// At most `per_user` connections per user and `per_ip` per client address.
    pub fn new(per_user: usize, per_ip: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                per_user,
                per_ip,
                users: DashMap::new(),
                ips: DashMap::new(),
                revoked: DashMap::new(),
            }),
        }
    }

    /// Takes a place for a new connection of `user` from `ip`.
    ///
    /// # Errors
    /// A cap is reached.
    pub fn admit(&self, user: UserId, ip: IpAddr) -> Result<Admission, CapExceeded> {
        let inner = &self.inner;
        if inner
            .revoked
            .get(&user)
            .is_some_and(|until| *until > Instant::now())
        {
            return Err(CapExceeded::Revoked);
        }
        // The address first: its entry is released if the user's cap refuses.
        match inner.ips.entry(ip) {
            Entry::Occupied(mut e) => {
                if *e.get() >= inner.per_ip {
                    return Err(CapExceeded::PerAddress(inner.per_ip));
                }
                *e.get_mut() += 1;
            }
            Entry::Vacant(e) => {
                if inner.per_ip == 0 {
                    return Err(CapExceeded::PerAddress(0));
                }
                e.insert(1);
            }
        }
        let mut conns = inner.users.entry(user).or_default();
        if conns.count >= inner.per_user {
            drop(conns);
            release_ip(inner, ip);
            self.forget_user_if_empty(user);
            return Err(CapExceeded::PerUser(inner.per_user));
        }
        conns.count += 1;
        Ok(Admission {
            inner: self.inner.clone(),
            user,
            ip,
            generation: conns.generation,
            conn: None,
            shared: None,
        })
    }

    /// Closes every connection of `user` with `reason`, and refuses new ones for a while (see
    /// [`CapExceeded::Revoked`]). Returns how many there were.
    pub fn close_user(&self, user: UserId, reason: CloseReason) -> usize {
        self.inner
            .revoked
            .insert(user, Instant::now() + REVOKED_FOR);
        let Some(mut conns) = self.inner.users.get_mut(&user) else {
            return 0;
        };
        conns.generation += 1;
        for c in &conns.conns {
            c.close(reason);
        }
        conns.count
    }

    /// Whether `user` has an open connection here, was not closed since, and had their account
    /// read less than [`VOUCH_FOR`] ago: it was found enabled then, and disabling or deleting it
    /// closes every connection of theirs through [`Registry::close_user`] (before the store
    /// changes). A new connection of such a user needs no second account read: if the account
    /// is being disabled at this moment, the closing catches the new connection too (see
    /// [`Admission::attach`]). This spares the store one read per connection when clients
    /// reconnect in a storm, or a user opens tabs.
    pub fn vouches_for(&self, user: UserId) -> bool {
        let inner = &self.inner;
        if inner.revoked.contains_key(&user) {
            return false;
        }
        inner.users.get(&user).is_some_and(|u| {
            u.checked_at.is_some_and(|t| t.elapsed() < VOUCH_FOR)
                && u.conns.iter().any(|c| !c.is_closed())
        })
    }

    /// Notes that `user`'s account was just read and found enabled (by an upgrade admitted
    /// here): it vouches for their next upgrades for [`VOUCH_FOR`].
    pub fn account_read(&self, user: UserId) {
        if let Some(mut u) = self.inner.users.get_mut(&user) {
            u.checked_at = Some(Instant::now());
        }
    }

    /// Lets `user` connect again at once (their account was enabled again).
    pub fn reopen_user(&self, user: UserId) {
        self.inner.revoked.remove(&user);
    }

    /// Forgets closings old enough not to matter (called periodically).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.inner.revoked.retain(|_, until| *until > now);
    }

    /// Open connections of `user`.
    #[cfg(test)]
    fn count_of(&self, user: UserId) -> usize {
        self.inner.users.get(&user).map_or(0, |c| c.count)
    }

    fn forget_user_if_empty(&self, user: UserId) {
        self.inner
            .users
            .remove_if(&user, |_, c| c.count == 0 && c.conns.is_empty());
    }
}

impl Admission {
    /// Attaches the connection that holds this place. Returns false when the user's
    /// connections were closed since the place was taken: the caller closes it at once.
    pub fn attach(&mut self, conn: &ConnHandle) -> bool {
        let Some(mut conns) = self.inner.users.get_mut(&self.user) else {
            return false;
        };
        conns.conns.push(conn.clone());
        self.conn = Some(conn.id());
        conns.generation == self.generation
    }
}

impl Admission {
    /// Counts this connection in the cluster's caps as well (cluster mode): over the whole
    /// cluster, a user and an address hold at most the configured connections. A refusal is the
    /// same as the node's own; Redis not answering leaves the node's own caps alone in charge.
    ///
    /// # Errors
    /// Over a cap, counted over every live node.
    pub async fn count_in_cluster(
        mut self,
        cluster: &Arc<actors::cluster::Cluster>,
    ) -> Result<Admission, CapExceeded> {
        let (user, ip) = (self.user.to_string(), self.ip.to_string());
        let admitted = cluster
            .conn_admit(&user, &ip, self.inner.per_user, self.inner.per_ip)
            .await;
        match admitted {
            Ok(Ok(())) => {
                self.shared = Some(cluster.clone());
                Ok(self)
            }
            Ok(Err(actors::cluster::limits::ConnCap::User)) => {
                Err(CapExceeded::PerUser(self.inner.per_user))
            }
            Ok(Err(actors::cluster::limits::ConnCap::Address)) => {
                Err(CapExceeded::PerAddress(self.inner.per_ip))
            }
            Err(e) => {
                tracing::debug!(error = %e, "cluster connection caps unreachable; this node's own hold");
                Ok(self)
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(cluster) = self.shared.take() {
            let (user, ip) = (self.user.to_string(), self.ip.to_string());
            // Outside a runtime (a test's teardown) it is dropped with this node's instance.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = cluster.conn_release(&user, &ip).await;
                });
            }
        }
        release_ip(&self.inner, self.ip);
        if let Entry::Occupied(mut e) = self.inner.users.entry(self.user) {
            let conns = e.get_mut();
            conns.count = conns.count.saturating_sub(1);
            if let Some(id) = self.conn {
                conns.conns.retain(|c| c.id() != id);
            }
            if conns.count == 0 {
                e.remove();
            }
        }
    }
}

fn release_ip(inner: &Inner, ip: IpAddr) {
    if let Entry::Occupied(mut e) = inner.ips.entry(ip) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn caps_hold_per_user_and_per_address_and_places_come_back() {
        let r = Registry::new(2, 3);
        let (ada, bob) = (UserId::new(), UserId::new());
        let a1 = r.admit(ada, ip(1)).unwrap();
        let _a2 = r.admit(ada, ip(1)).unwrap();
        assert_eq!(r.admit(ada, ip(2)).err(), Some(CapExceeded::PerUser(2)));
        let _b1 = r.admit(bob, ip(1)).unwrap();
        assert_eq!(r.admit(bob, ip(1)).err(), Some(CapExceeded::PerAddress(3)));
        assert!(r.admit(bob, ip(2)).is_ok(), "another address is fine");
        drop(a1);
        assert_eq!(r.count_of(ada), 1);
        assert!(r.admit(ada, ip(2)).is_ok());
    }

    #[test]
    fn closing_a_user_closes_attached_and_late_connections() {
        let r = Registry::new(10, 10);
        let ada = UserId::new();
        let (c1, mut o1) = ConnHandle::new(1, ada, 4);
        let mut early = r.admit(ada, ip(1)).unwrap();
        assert!(early.attach(&c1));
        let mut late = r.admit(ada, ip(1)).unwrap();
        assert_eq!(r.close_user(ada, CloseReason::ACCESS_REVOKED), 2);
        // One that passed its account check before the closing but comes after it.
        assert_eq!(r.admit(ada, ip(1)).err(), Some(CapExceeded::Revoked));
        assert_eq!(o1.close_reason(), Some(CloseReason::ACCESS_REVOKED));
        let (c2, _o2) = ConnHandle::new(2, ada, 4);
        assert!(
            !late.attach(&c2),
            "admitted before the close, attached after"
        );
        drop((early, late));
        assert_eq!(r.count_of(ada), 0);
        assert!(r.inner.users.is_empty() && r.inner.ips.is_empty());
        r.reopen_user(ada);
        assert!(r.admit(ada, ip(1)).is_ok(), "enabled again");
        let _ = o1.try_recv();
    }

    #[test]
    fn only_an_open_connection_not_closed_since_vouches_for_its_user() {
        let r = Registry::new(10, 10);
        let (ada, bob) = (UserId::new(), UserId::new());
        let mut pending = r.admit(ada, ip(1)).unwrap();
        assert!(!r.vouches_for(ada), "admitted, not connected yet");
        let (c1, _o1) = ConnHandle::new(1, ada, 4);
        assert!(pending.attach(&c1));
        assert!(
            !r.vouches_for(ada),
            "connected, but its account was not read here"
        );
        r.account_read(ada);
        assert!(r.vouches_for(ada));
        assert!(
            !r.vouches_for(bob),
            "someone else's connection vouches for no one"
        );
        c1.close(CloseReason::GOING_AWAY);
        assert!(
            !r.vouches_for(ada),
            "a closing connection vouches for nothing"
        );
        let (c2, _o2) = ConnHandle::new(2, ada, 4);
        let mut second = r.admit(ada, ip(1)).unwrap();
        assert!(second.attach(&c2));
        assert!(r.vouches_for(ada), "the read still counts for a while");
        r.close_user(ada, CloseReason::ACCESS_REVOKED);
        assert!(!r.vouches_for(ada), "disabled: the store is asked again");
        r.reopen_user(ada);
        let (c3, _o3) = ConnHandle::new(3, ada, 4);
        let mut third = r.admit(ada, ip(1)).unwrap();
        assert!(third.attach(&c3));
        r.account_read(ada);
        assert!(r.vouches_for(ada), "enabled again, read and connected");
        r.inner.users.get_mut(&ada).unwrap().checked_at =
            Some(Instant::now().checked_sub(VOUCH_FOR).unwrap());
        assert!(
            !r.vouches_for(ada),
            "a read too long ago vouches for nothing"
        );
        r.account_read(ada);
        drop((pending, second, third));
        assert!(!r.vouches_for(ada), "all gone");
    }
}
