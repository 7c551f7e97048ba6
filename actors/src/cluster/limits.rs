//! Shared rate limits kept in Redis, so that a client's allowance is the same whichever node it
//! reaches (and however many there are): the GCRA of `hub::limits::gcra`, one key per limit,
//! run as one script so that the read-modify-write is atomic across nodes, on Redis's clock so
//! that the nodes' clocks need not agree.

use std::time::Duration;

use fred::interfaces::{KeysInterface, LuaInterface};

use super::{Cluster, ClusterError};

/// Takes one unit: returns -1 when allowed, or the microseconds until a unit is available.
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
  return -1
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

fn micros(d: Duration) -> String {
    d.as_micros().to_string()
}

impl Cluster {
    /// Takes one unit of `key`'s allowance (an interval per unit, a burst tolerance).
    ///
    /// # Errors
    /// `Ok(Err(wait))`: none is available for `wait`. `Err`: Redis did not answer.
    pub async fn limit_acquire(
        &self,
        key: &str,
        interval: Duration,
        tolerance: Duration,
    ) -> Result<Result<(), Duration>, ClusterError> {
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
            Err(_) => Ok(()),
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

    fn limit_key(&self, key: &str) -> String {
        format!("{{{}}}:limit:{key}", self.config.prefix)
    }
}
