//! Every abuse throttle of the hub, in one place.
//!
//! - [`bucket`]: the token bucket of one WebSocket connection (its frames per second).
//! - [`gcra`]: the shared limits (per user, per address, per email), kept in a [`LimitStore`].
//! - [`rate`]: how an allowance is written and read (`10/s+100`).
//! - [`Limits`]: the policy: which limit applies to what, with the configured [`Rate`]s.
//!
//! A refused request is answered `429` with `Retry-After` (REST) or `retry_after_ms`
//! (WebSocket). `SECURITY.md` lists the defaults.

pub mod bucket;
pub mod gcra;
pub mod rate;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;
use signaling::{ErrorCode, UserId};

pub use bucket::TokenBucket;
pub use gcra::LimitStore;
pub use rate::Rate;

use crate::config::LimitsConfig;
use crate::error::ApiError;

/// What is left of an allowance after a request, for the `RateLimit-*` response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Requests allowed at once (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests still allowed at once (`RateLimit-Remaining`).
    pub remaining: u64,
    /// When the allowance is whole again (`RateLimit-Reset`, in seconds).
    pub reset: Duration,
}

impl Allowance {
    /// Sets the `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers.
    pub fn set_headers(&self, headers: &mut axum::http::HeaderMap) {
        let mut set = |name: &'static str, value: u64| {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value.to_string()) {
                headers.insert(name, v);
            }
        };
        set("ratelimit-limit", u64::from(self.limit));
        set("ratelimit-remaining", self.remaining);
        set("ratelimit-reset", retry_secs(self.reset));
    }
}

/// A REST request's kind, for the read and write allowances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `GET` and `HEAD`.
    Read,
    /// Everything else.
    Write,
}

impl Access {
    /// The kind of a request method.
    pub fn of(method: &axum::http::Method) -> Access {
        if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
            Access::Read
        } else {
            Access::Write
        }
    }
}

/// The abuse policy: every shared limit of the hub and the rates it was configured with.
pub struct Limits {
    store: LimitStore,
    config: LimitsConfig,
}

impl Limits {
    /// The policy of `config`, kept in this process's memory.
    pub fn new(config: LimitsConfig) -> Self {
        Self::with_store(config, LimitStore::memory())
    }

    /// The policy of `config`, kept in `store` (the cluster's Redis, so that it holds across
    /// nodes).
    pub fn with_store(config: LimitsConfig, store: LimitStore) -> Self {
        Limits { store, config }
    }

    /// The configured rates.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Drops expired state (called periodically).
    pub fn sweep(&self) {
        self.store.sweep();
    }

    async fn take(&self, key: &str, rate: Rate, what: &'static str) -> Result<(), ApiError> {
        self.allowance(key, rate, what).await.map(|_| ())
    }

    /// Takes one unit and says what is left of the allowance.
    async fn allowance(
        &self,
        key: &str,
        rate: Rate,
        what: &'static str,
    ) -> Result<Allowance, ApiError> {
        match self.store.acquire(key, rate).await {
            Ok(ahead) => Ok(Allowance {
                limit: rate.burst.max(1),
                remaining: rate.remaining(ahead),
                reset: ahead,
            }),
            Err(wait) => {
                let mut err = too_many(wait, what);
                err.allowance = Some(Allowance {
                    limit: rate.burst.max(1),
                    remaining: 0,
                    reset: wait,
                });
                Err(err)
            }
        }
    }

    /// Every `/api/v1` request, per client address.
    ///
    /// # Errors
    /// `429 rate_limited`.
    pub async fn request_from(&self, ip: IpAddr, access: Access) -> Result<Allowance, ApiError> {
        let (kind, rate) = match access {
            Access::Read => ("read", self.config.read_per_ip),
            Access::Write => ("write", self.config.write_per_ip),
        };
        let key = format!("{kind}:ip:{ip}");
        self.allowance(&key, rate, "too many requests from this address")
            .await
    }

    /// Every authenticated `/api/v1` request, per user.
    ///
    /// # Errors
    /// `429 rate_limited`.
    pub async fn request_by(&self, user: UserId, access: Access) -> Result<(), ApiError> {
        let (kind, rate) = match access {
            Access::Read => ("read", self.config.read_per_user),
            Access::Write => ("write", self.config.write_per_user),
        };
        let key = format!("{kind}:user:{user}");
        self.take(&key, rate, "too many requests; slow down").await
    }

    /// An offline-sync call (push, pull, status), per user.
    ///
    /// # Errors
    /// `429 rate_limited`.
    pub async fn sync_by(&self, user: UserId) -> Result<(), ApiError> {
        let key = format!("sync:user:{user}");
        self.take(
            &key,
            self.config.sync_per_user,
            "too many sync requests; slow down",
        )
        .await
    }

    /// Every call to an auth route (login, register, refresh, logout), per address.
    ///
    /// # Errors
    /// `429 rate_limited`.
    pub async fn auth_from(&self, ip: IpAddr) -> Result<(), ApiError> {
        let key = format!("auth:ip:{ip}");
        self.take(
            &key,
            self.config.auth_per_ip,
            "too many sign-in requests from this address",
        )
        .await
    }

    /// A registration attempt, per address, then per email (so that an address that is out of
    /// registrations cannot spend an email's).
    ///
    /// # Errors
    /// `429 rate_limited`.
    pub async fn register(&self, ip: IpAddr, email: &str) -> Result<(), ApiError> {
        let key = format!("register:ip:{ip}");
        self.take(
            &key,
            self.config.register_per_ip,
            "too many registrations from this address",
        )
        .await?;
        let key = format!("register:email:{email}");
        self.take(
            &key,
            self.config.register_per_email,
            "too many registrations for this email",
        )
        .await
    }

    /// Charges a login attempt to its failure budgets (the (email, address) pair, the email, the
    /// address) before the password is checked, so that parallel attempts cannot all slip under
    /// a budget; [`Limits::login_succeeded`] gives the charge back. Once a budget is spent, every
    /// attempt it covers waits, even with the right password.
    ///
    /// # Errors
    /// `429 rate_limited`.
    pub async fn begin_login(&self, ip: IpAddr, email: &str) -> Result<(), ApiError> {
        let msg = "too many failed logins; retry later";
        self.charge_budgets(&self.login_budgets(ip, email), msg)
            .await
    }

    /// The attempt did not fail: its charge is given back, and the pair's failures are
    /// forgotten (not the email's or the address's: a spray that guesses one password right
    /// should not reset its count).
    pub async fn login_succeeded(&self, ip: IpAddr, email: &str) {
        let budgets = self.login_budgets(ip, email);
        self.refund_budgets(&budgets).await;
        self.store.reset(&budgets[0].0).await;
    }

    fn login_budgets(&self, ip: IpAddr, email: &str) -> [(String, Rate); 3] {
        let c = &self.config;
        [
            (
                format!("loginfail:pair:{email}:{ip}"),
                c.login_failures_per_pair,
            ),
            (
                format!("loginfail:email:{email}"),
                c.login_failures_per_email,
            ),
            (format!("loginfail:ip:{ip}"), c.login_failures_per_ip),
        ]
    }

    /// Charges a lookup of an account by email for someone else (adding a member) to the
    /// caller's and the address's miss budgets, before it is made; [`Limits::lookup_found`]
    /// gives the charge back when the email had an account.
    ///
    /// # Errors
    /// `429 rate_limited`.
    pub async fn begin_lookup(&self, user: UserId, ip: IpAddr) -> Result<(), ApiError> {
        let msg = "too many lookups of unknown emails; retry later";
        self.charge_budgets(&self.lookup_budgets(user, ip), msg)
            .await
    }

    /// The lookup found an account: not a miss.
    pub async fn lookup_found(&self, user: UserId, ip: IpAddr) {
        self.refund_budgets(&self.lookup_budgets(user, ip)).await;
    }

    fn lookup_budgets(&self, user: UserId, ip: IpAddr) -> [(String, Rate); 2] {
        let c = &self.config;
        [
            (format!("lookupmiss:user:{user}"), c.lookup_misses_per_user),
            (format!("lookupmiss:ip:{ip}"), c.lookup_misses_per_ip),
        ]
    }

    /// A guest joining a conference session from `ip`.
    ///
    /// # Errors
    /// `rate_limited` with `Retry-After`.
    pub async fn guest_join(&self, ip: IpAddr) -> Result<(), ApiError> {
        let budgets = [(format!("guestjoin:ip:{ip}"), self.config.guest_joins_per_ip)];
        self.charge_budgets(
            &budgets,
            "too many guest joins from this address; slow down",
        )
        .await
    }

    /// Takes one unit from each budget, or none: a refusal gives back what it had taken.
    async fn charge_budgets(
        &self,
        budgets: &[(String, Rate)],
        msg: &'static str,
    ) -> Result<(), ApiError> {
        for (i, (key, rate)) in budgets.iter().enumerate() {
            if let Err(wait) = self.store.acquire(key, *rate).await {
                self.refund_budgets(&budgets[..i]).await;
                return Err(too_many(wait, msg));
            }
        }
        Ok(())
    }

    async fn refund_budgets(&self, budgets: &[(String, Rate)]) {
        for (key, rate) in budgets {
            self.store.refund(key, *rate).await;
        }
    }

    /// Creating something, against the user's hourly quota for that kind of thing.
    ///
    /// # Errors
    /// `429 quota_exceeded`.
    pub async fn create(&self, user: UserId, quota: Quota) -> Result<(), ApiError> {
        let (what, per_hour) = match quota {
            Quota::Workspaces => ("workspaces", self.config.workspaces_per_hour.max(1)),
            Quota::Sessions => ("sessions", self.config.sessions_per_hour.max(1)),
        };
        let rate = Rate {
            count: per_hour,
            period: Duration::from_secs(3600),
            burst: per_hour,
        };
        self.store
            .acquire(&format!("quota:{what}:{user}"), rate)
            .await
            .map(|_| ())
            .map_err(|wait| {
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::QuotaExceeded,
                    format!("at most {per_hour} {what} may be created per hour"),
                );
                err.retry_after = Some(retry_secs(wait));
                err
            })
    }
}

/// What a user may only create so many of per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Workspaces (`HUB_QUOTA_WORKSPACES_PER_HOUR`).
    Workspaces,
    /// Conference sessions (`HUB_QUOTA_SESSIONS_PER_HOUR`).
    Sessions,
}

/// Whole seconds to wait, rounded up (a `Retry-After` of 0 would invite an immediate retry).
pub fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn too_many(wait: Duration, what: &'static str) -> ApiError {
    let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, what);
    err.retry_after = Some(retry_secs(wait).max(1));
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_secs(Duration::from_secs(180)), 180);
        assert_eq!(retry_secs(Duration::from_millis(180_001)), 181);
    }
}
