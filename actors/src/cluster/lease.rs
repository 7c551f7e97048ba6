//! Room leases: a room runs on a node only while that node holds the room's lease in Redis,
//! `{prefix}:lease:{room} = "{node}:{epoch}"`, which expires unless renewed.
//!
//! Taking a room: [`Cluster::take_lease`] (set only if free or already this node's), then the
//! room claims its next epoch in the store, then [`Cluster::confirm_lease`] writes that epoch
//! in. The lease keeps two nodes from running a room at once in the normal case; the store's
//! epoch keeps a node that lost its lease without knowing (paused, cut off from Redis) from
//! writing: its appends carry an older epoch and are refused.
//!
//! Every heartbeat renews all of this node's leases in one script. A lease found held by another
//! node is lost: the room is stopped ([`Cluster::lost_leases`]). A lease found missing (Redis
//! restarted empty) is taken again.

use std::collections::HashMap;
use std::sync::{MutexGuard, PoisonError};

use fred::interfaces::{KeysInterface, LuaInterface};

use super::{Cluster, ClusterError};

/// Sets the lease to `ARGV[1]:0` unless another node holds it; returns that holder, or nothing.
const TAKE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. ':' then
  return v
end
redis.call('SET', KEYS[1], ARGV[1] .. ':0', 'PX', ARGV[2])
return false
";

/// Writes the epoch into the lease if this node still holds it; 1 if so.
const CONFIRM: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. ':' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
";

/// Renews every lease in KEYS (their epochs in ARGV[3..]); returns the 1-based indexes of
/// those another node holds.
const RENEW: &str = r"
local lost = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if not v then
    redis.call('SET', key, ARGV[1] .. ':' .. ARGV[i + 2], 'PX', ARGV[2])
  elseif string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
";

/// Deletes the lease if this node holds it.
const RELEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// Sets the lease to `ARGV[2]:0` if this node (`ARGV[1]`) holds it.
const PASS: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  redis.call('SET', KEYS[1], ARGV[2] .. ':0', 'PX', ARGV[3])
end
return 1
";

/// Leases this node holds: room key -> epoch (0 until confirmed).
pub(crate) type Held = HashMap<String, u64>;

impl Cluster {
    /// Takes `room`'s lease for this node (free, expired, or already this node's).
    ///
    /// # Errors
    /// [`ClusterError::Elsewhere`] with the holder when another node holds it; Redis errors.
    pub async fn take_lease(&self, room: &str) -> Result<(), ClusterError> {
        let holder: Option<String> = self
            .redis
            .eval(
                TAKE,
                vec![self.lease_key(room)],
                vec![self.config.node_id.clone(), self.ttl_ms().to_string()],
            )
            .await?;
        if let Some(holder) = holder {
            let node = holder.rsplit_once(':').map_or(holder.as_str(), |(n, _)| n);
            return Err(ClusterError::Elsewhere(node.to_owned()));
        }
        self.held().entry(room.to_owned()).or_insert(0);
        Ok(())
    }

    /// The node holding `room`'s lease, if any.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn lease_holder(&self, room: &str) -> Result<Option<String>, ClusterError> {
        let value: Option<String> = self.redis.get(self.lease_key(room)).await?;
        Ok(value.map(|v| v.rsplit_once(':').map_or(v.as_str(), |(n, _)| n).to_owned()))
    }

    /// Records the epoch the room claimed in its lease.
    ///
    /// # Errors
    /// [`ClusterError::Elsewhere`] when the lease was lost in between; Redis errors.
    pub async fn confirm_lease(&self, room: &str, epoch: u64) -> Result<(), ClusterError> {
        let kept: i64 = self
            .redis
            .eval(
                CONFIRM,
                vec![self.lease_key(room)],
                vec![
                    self.config.node_id.clone(),
                    epoch.to_string(),
                    self.ttl_ms().to_string(),
                ],
            )
            .await?;
        if kept != 1 {
            self.held().remove(room);
            return Err(ClusterError::Elsewhere("another node".into()));
        }
        self.held().insert(room.to_owned(), epoch);
        Ok(())
    }

    /// Gives `room`'s lease up (the room stopped here); another node may take it at once.
    pub async fn release_lease(&self, room: &str) {
        self.held().remove(room);
        let released: Result<i64, _> = self
            .redis
            .eval(
                RELEASE,
                vec![self.lease_key(room)],
                vec![self.config.node_id.clone()],
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(room, error = %e, "could not release a room lease; it expires");
        }
    }

    /// Passes `room`'s lease to node `to` (the room stopped here to run there): the lease says
    /// `to` until it expires, so that the room's members, joining again, are sent there at once.
    /// Released instead if this node no longer holds it.
    pub async fn pass_lease(&self, room: &str, to: &str) {
        self.held().remove(room);
        let passed: Result<i64, _> = self
            .redis
            .eval(
                PASS,
                vec![self.lease_key(room)],
                vec![
                    self.config.node_id.clone(),
                    to.to_owned(),
                    self.ttl_ms().to_string(),
                ],
            )
            .await;
        if let Err(e) = passed {
            tracing::warn!(room, error = %e, "could not pass a room lease on; it expires");
        }
    }

    /// How many room leases this node holds.
    pub fn leases_held(&self) -> usize {
        self.held().len()
    }

    /// Renews every lease this node holds; the rooms whose lease another node now holds are
    /// forgotten and sent to [`Cluster::lost_leases`].
    pub(crate) async fn renew_leases(&self) -> Result<(), ClusterError> {
        let held: Vec<(String, u64)> = self.held().iter().map(|(k, e)| (k.clone(), *e)).collect();
        if held.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = held.iter().map(|(room, _)| self.lease_key(room)).collect();
        let mut args = vec![self.config.node_id.clone(), self.ttl_ms().to_string()];
        args.extend(held.iter().map(|(_, epoch)| epoch.to_string()));
        let lost: Vec<i64> = self.redis.eval(RENEW, keys, args).await?;
        let renewed = held.len().saturating_sub(lost.len()) as u64;
        let stats = &self.stats;
        stats
            .lease_renewals
            .fetch_add(renewed, std::sync::atomic::Ordering::Relaxed);
        stats
            .leases_lost
            .fetch_add(lost.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for i in lost {
            let Some((room, _)) = usize::try_from(i - 1).ok().and_then(|i| held.get(i)) else {
                continue;
            };
            tracing::warn!(room = %room, "room lease taken by another node; stopping the room");
            self.held().remove(room);
            let _ = self.lost.send(room.clone());
        }
        Ok(())
    }

    fn lease_key(&self, room: &str) -> String {
        format!("{{{}}}:lease:{room}", self.config.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.config.node_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
