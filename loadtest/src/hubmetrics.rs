//! The hub's own count of what it did, from its Prometheus endpoint (`GET /metrics`), read
//! before connecting and after the run: how many connections it closed as slow consumers and
//! how many requests, upgrades and frames its limits refused. A cross-check of what the
//! harness saw from the outside (a slow reader that never reads cannot receive the 4008 close
//! frame the hub meant to send it). Best effort: an unreachable endpoint leaves the figures
//! empty.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::target::Target;

/// Longest wait for the metrics page.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest metrics page read.
const MAX_PAGE_BYTES: usize = 1 << 20;
/// `hub_slow_consumers_total`: connections closed for not keeping up.
const SLOW_CONSUMERS: &str = "hub_slow_consumers_total";
/// `hub_rate_limited_total`: requests, upgrades and frames refused by a rate limit or a cap.
const RATE_LIMITED: &str = "hub_rate_limited_total";

/// The counters read at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HubCounters {
    slow_consumers: Option<f64>,
    rate_limited: Option<f64>,
}

/// What the hub counted during the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HubCounted {
    /// Connections the hub closed as slow consumers.
    pub slow_consumers: Option<u64>,
    /// Requests, upgrades and frames the hub's limits refused.
    pub rate_limited: Option<u64>,
}

impl HubCounted {
    /// The increase from `before` to `after`.
    pub fn between(before: HubCounters, after: HubCounters) -> HubCounted {
        let delta = |a: Option<f64>, b: Option<f64>| {
            // Counters are integers well below 2^53.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some((b? - a?).max(0.0).round() as u64)
        };
        HubCounted {
            slow_consumers: delta(before.slow_consumers, after.slow_consumers),
            rate_limited: delta(before.rate_limited, after.rate_limited),
        }
    }
}

/// Reads the hub's counters; `None` when the page cannot be had.
pub async fn scrape(target: &Target) -> Option<HubCounters> {
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, page(target))
        .await
        .ok()
        .flatten()?;
    Some(HubCounters {
        slow_consumers: sample(&text, SLOW_CONSUMERS),
        rate_limited: sample(&text, RATE_LIMITED),
    })
}

/// [`scrape`] of every node, summed (`None` if any cannot be read).
pub async fn scrape_all(nodes: &[Target]) -> Option<HubCounters> {
    let mut total = HubCounters {
        slow_consumers: Some(0.0),
        rate_limited: Some(0.0),
    };
    for node in nodes {
        let c = scrape(node).await?;
        let add = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
        total.slow_consumers = add(total.slow_consumers, c.slow_consumers);
        total.rate_limited = add(total.rate_limited, c.rate_limited);
    }
    Some(total)
}

/// The metrics page as text (no timeout of its own: callers bound it).
pub(crate) async fn page(target: &Target) -> Option<String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(target.http_uri("/metrics"))
        .body(Empty::new())
        .ok()?;
    let resp = client.request(req).await.ok()?;
    if resp.status() != StatusCode::OK {
        return None;
    }
    let body = Limited::new(resp.into_body(), MAX_PAGE_BYTES)
        .collect()
        .await
        .ok()?;
    String::from_utf8(body.to_bytes().to_vec()).ok()
}

/// The value of the unlabelled sample `name` in a Prometheus text page.
pub(crate) fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP hub_rate_limited_total Requests refused\n\
                        # TYPE hub_rate_limited_total counter\n\
                        hub_rate_limited_total 973\n\
                        # HELP hub_slow_consumers_total Connections closed for not keeping up\n\
                        hub_slow_consumers_total 2\n\
                        hub_slow_consumers_total_extra 9\n\
                        hub_connections_open 20\n";

    #[test]
    fn counters_are_read_by_exact_name() {
        assert_eq!(sample(PAGE, SLOW_CONSUMERS), Some(2.0));
        assert_eq!(sample(PAGE, RATE_LIMITED), Some(973.0));
        assert_eq!(sample(PAGE, "hub_connections"), None);
        assert_eq!(sample(PAGE, "absent_total"), None);
    }

    #[test]
    fn the_run_counts_the_increase() {
        let before = HubCounters {
            slow_consumers: Some(2.0),
            rate_limited: Some(10.0),
        };
        let after = HubCounters {
            slow_consumers: Some(7.0),
            rate_limited: None,
        };
        let c = HubCounted::between(before, after);
        assert_eq!(c.slow_consumers, Some(5));
        assert_eq!(c.rate_limited, None);
    }
}
