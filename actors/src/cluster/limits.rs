//! Shared rate limits kept in Redis, so that a client's allowance is the same whichever node it
//! reaches (and however many there are): the GCRA of `hub::limits::gcra`, one key per limit,
//! run as one script so that the read-modify-write is atomic across nodes, on Redis's clock so
//! that the nodes' clocks need not agree.

use std::time::Duration;

use fred::interfaces::{KeysInterface, LuaInterface};

use super::{Cluster, ClusterError};

/// Takes one unit: returns `-1 - ahead` when allowed (`ahead`: microseconds the allowance is now
/// spent ahead of Redis's clock), or the microseconds until a unit is available.
/// `ARGV[1]`: the emission interval, `ARGV[2]`: the burst tolerance, in microseconds.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
local ahead = nxt - now
if ahead <= tolerance then
  redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.floor(ahead / 1000) + 1)
  return -1 - ahead
end
return ahead - tolerance
";

/// Gives one unit back (`ARGV[1]`: the interval in microseconds).
const REFUND: &str = r"
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat then
  redis.call('SET', KEYS[1], string.format('%.0f', tat - tonumber(ARGV[1])), 'KEEPTTL')
end
return 1
";

/// Admits a connection against the caps counted over the live node instances: `KEYS[1]` the
/// user's counts, `KEYS[2]` the address's (hashes: `<node>@<start ms>` -> connections);
/// `ARGV[1]` this instance, `ARGV[2]`/`ARGV[3]` the caps, `ARGV[4]` the prefix of the nodes'
/// registration keys. An instance counts while its node's registration exists with that start
/// time (read here, not from any node's view, which may lag); the counts of one gone without
/// releasing them are dropped. 0: admitted; 1: the user's cap; 2: the address's.
const CONN_ADMIT: &str = r"
local alive = {}
local function live(instance)
  if alive[instance] == nil then
    local at = string.find(instance, '@', 1, true)
    local info = at and redis.call('GET', ARGV[4] .. string.sub(instance, 1, at - 1))
    local ok = false
    if info then
      local started = cjson.decode(info)['started_at_ms']
      ok = started ~= nil and string.format('%.0f', started) == string.sub(instance, at + 1)
    end
    alive[instance] = ok
  end
  return alive[instance]
end
local function total(key)
  local sum = 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    if fields[i] == ARGV[1] or live(fields[i]) then
      sum = sum + tonumber(fields[i + 1])
    else
      redis.call('HDEL', key, fields[i])
    end
  end
  return sum
end
if total(KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if total(KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
for i = 1, 2 do
  redis.call('HINCRBY', KEYS[i], ARGV[1], 1)
  redis.call('PEXPIRE', KEYS[i], 86400000)
end
return 0
";

/// Releases a connection admitted by [`CONN_ADMIT`].
const CONN_RELEASE: &str = r"
for i = 1, #KEYS do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 1
";

/// Which cluster-wide connection cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnCap {
    /// Connections per user.
    User,
    /// Connections per client address.
    Address,
}

fn micros(d: Duration) -> String {
    d.as_micros().to_string()
}

impl Cluster {
    /// Takes one unit of `key`'s allowance (an interval per unit, a burst tolerance).
    ///
    /// `Ok(Ok(ahead))`: taken; the allowance is now spent `ahead` of time (it is whole again
    /// after that long).
    ///
    /// # Errors
    /// `Ok(Err(wait))`: none is available for `wait`. `Err`: Redis did not answer.
    pub async fn limit_acquire(
        &self,
        key: &str,
        interval: Duration,
        tolerance: Duration,
    ) -> Result<Result<Duration, Duration>, ClusterError> {
        let wait: i64 = self
            .redis
            .eval(
                ACQUIRE,
                vec![self.limit_key(key)],
                vec![micros(interval), micros(tolerance)],
            )
            .await?;
        Ok(match u64::try_from(wait) {
            Ok(us) => Err(Duration::from_micros(us)),
            Err(_) => Ok(Duration::from_micros(u64::try_from(-1 - wait).unwrap_or(0))),
        })
    }

    /// Gives back one unit taken from `key`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn limit_refund(&self, key: &str, interval: Duration) -> Result<(), ClusterError> {
        let _: i64 = self
            .redis
            .eval(REFUND, vec![self.limit_key(key)], vec![micros(interval)])
            .await?;
        Ok(())
    }

    /// Forgets `key`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn limit_reset(&self, key: &str) -> Result<(), ClusterError> {
        let _: i64 = self.redis.del(self.limit_key(key)).await?;
        Ok(())
    }

    /// Counts a new connection of `user` from `address` against the caps over the whole cluster.
    ///
    /// # Errors
    /// `Ok(Err(cap))`: over a cap. `Err`: Redis did not answer (the node's own caps still hold).
    pub async fn conn_admit(
        &self,
        user: &str,
        address: &str,
        per_user: usize,
        per_address: usize,
    ) -> Result<Result<(), ConnCap>, ClusterError> {
        let args = vec![
            self.instance(),
            per_user.to_string(),
            per_address.to_string(),
            self.node_prefix(),
        ];
        let verdict: i64 = self
            .redis
            .eval(CONN_ADMIT, self.conn_keys(user, address), args)
            .await?;
        Ok(match verdict {
            0 => Ok(()),
            1 => Err(ConnCap::User),
            _ => Err(ConnCap::Address),
        })
    }

    /// Releases a connection [`Cluster::conn_admit`] counted.
    ///
    /// # Errors
    /// Redis did not answer (the count is dropped when this node's instance is gone).
    pub async fn conn_release(&self, user: &str, address: &str) -> Result<(), ClusterError> {
        let _: i64 = self
            .redis
            .eval(
                CONN_RELEASE,
                self.conn_keys(user, address),
                vec![self.instance()],
            )
            .await?;
        Ok(())
    }

    /// This process as a node instance: a node restarted under its id is another instance, so
    /// its predecessor's counts are not taken for its own.
    fn instance(&self) -> String {
        format!("{}@{}", self.config.node_id, self.started_at_ms)
    }

    fn conn_keys(&self, user: &str, address: &str) -> Vec<String> {
        let p = &self.config.prefix;
        vec![
            format!("{{{p}}}:conns:user:{user}"),
            format!("{{{p}}}:conns:ip:{address}"),
        ]
    }

    fn limit_key(&self, key: &str) -> String {
        format!("{{{}}}:limit:{key}", self.config.prefix)
    }
}
