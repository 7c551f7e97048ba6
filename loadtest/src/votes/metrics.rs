//! The hub's own count of its journal commits (and of the connections and frames its limits
//! refused) over the load phase and drain, from its Prometheus page (`GET /metrics`): whether
//! one commit went with each journaled vote, and how long each took. Best effort: a page that
//! cannot be had leaves the figures empty.

use std::time::Duration;

use serde::Serialize;

use crate::hubmetrics::{page, sample};
use crate::target::Target;

/// Longest wait for the hub's metrics page (a saturated hub answers it late).
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

/// The hub's journal and limits as its `/metrics` counted them over the load phase and drain.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HubJournal {
    /// Journal commits (`hub_journal_append_seconds` count).
    pub journal_commits: Option<u64>,
    /// Their mean append-to-commit time, in milliseconds.
    pub journal_commit_mean_ms: Option<f64>,
    /// Connections closed as slow consumers.
    pub slow_consumers: Option<u64>,
    /// Requests, upgrades and frames refused by a limit.
    pub rate_limited: Option<u64>,
}

/// The hub's journal and limit counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalCounters {
    commits: Option<f64>,
    commit_seconds: Option<f64>,
    slow_consumers: Option<f64>,
    rate_limited: Option<f64>,
}

impl JournalCounters {
    /// What was counted from `self` to `after`.
    pub fn until(&self, after: &JournalCounters) -> HubJournal {
        let delta = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0));
        // Counters are integers far below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = |v: Option<f64>| v.map(|x| x.round() as u64);
        let commits = delta(self.commits, after.commits);
        let seconds = delta(self.commit_seconds, after.commit_seconds);
        HubJournal {
            journal_commits: whole(commits),
            journal_commit_mean_ms: match (commits, seconds) {
                (Some(n), Some(s)) if n > 0.0 => Some(s * 1000.0 / n),
                _ => None,
            },
            slow_consumers: whole(delta(self.slow_consumers, after.slow_consumers)),
            rate_limited: whole(delta(self.rate_limited, after.rate_limited)),
        }
    }
}

/// Reads the hub's journal and limit counters; `None` when its metrics page cannot be had.
pub async fn read(target: &Target) -> Option<JournalCounters> {
    let text = tokio::time::timeout(METRICS_TIMEOUT, page(target))
        .await
        .ok()
        .flatten()?;
    Some(JournalCounters {
        commits: sample(&text, "hub_journal_append_seconds_count"),
        commit_seconds: sample(&text, "hub_journal_append_seconds_sum"),
        slow_consumers: sample(&text, "hub_slow_consumers_total"),
        rate_limited: sample(&text, "hub_rate_limited_total"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_counters_give_commits_and_their_mean() {
        let before = JournalCounters {
            commits: Some(100.0),
            commit_seconds: Some(0.5),
            slow_consumers: Some(0.0),
            rate_limited: None,
        };
        let after = JournalCounters {
            commits: Some(2100.0),
            commit_seconds: Some(2.5),
            slow_consumers: Some(3.0),
            rate_limited: Some(7.0),
        };
        let j = before.until(&after);
        assert_eq!(j.journal_commits, Some(2000));
        assert!((j.journal_commit_mean_ms.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(j.slow_consumers, Some(3));
        assert_eq!(j.rate_limited, None);
        let idle = before.until(&before);
        assert_eq!(idle.journal_commit_mean_ms, None);
    }
}
