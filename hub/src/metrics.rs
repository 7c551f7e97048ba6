//! Prometheus metrics. Each hub owns its recorder (no global), so several hubs can run in one
//! process (as the tests do); handles are registered once and cloned where they are recorded.
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `hub_connections_open` | gauge | WebSocket connections open |
//! | `hub_rooms_active` | gauge | room actors running |
//! | `hub_frames_in_total` | counter | frames received from clients |
//! | `hub_frames_out_total` | counter | frames written to clients |
//! | `hub_events_fanned_out_total` | counter | frames handed to member outboxes by rooms |
//! | `hub_journal_append_seconds` | histogram | append-to-commit latency of the journal |
//! | `hub_room_mailbox_depth` | summary | messages waiting in a room's mailbox when one is handled |
//! | `hub_room_restarts_total` | counter | rooms restarted after a crash |
//! | `hub_slow_consumers_total` | counter | connections closed for not keeping up |
//! | `hub_events_dropped_total` | counter | droppable frames skipped for members falling behind |
//! | `hub_events_conflated_total` | counter | presence frames that replaced an older one still queued |
//! | `hub_rate_limited_total` | counter | requests, upgrades and frames refused by a limit or cap |
//! | `hub_http_requests_total{route,method,status}` | counter | REST (and upgrade) requests answered |
//! | `hub_http_request_duration_seconds{route,method,status}` | histogram | time to the response's head |
//! | `hub_cluster_forwarded_commands_total` | counter | client commands sent to the node running their room |
//! | `hub_cluster_link_frames_total` | counter | room frames sent to other nodes (one per frame per node) |
//! | `hub_cluster_remote_deliveries_total` | counter | member deliveries those frames stood for |
//! | `hub_cluster_lease_renewals_total` | counter | room leases renewed (each lease, each heartbeat) |
//! | `hub_cluster_leases_lost_total` | counter | room leases found taken by another node |
//! | `hub_cluster_handoffs_total` | counter | rooms handed to another node (drain, move, a node joining) |
//! | `hub_cluster_failovers_total` | counter | nodes lost while members here were in their rooms (those members resynced) |

use actors::RoomMetrics;
use metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// The hub's metric handles and the renderer for `/metrics`.
#[derive(Clone)]
pub struct HubMetrics {
    /// Renders the text exposition.
    pub handle: PrometheusHandle,
    /// Open WebSocket connections.
    pub connections_open: Gauge,
    /// Frames received.
    pub frames_in: Counter,
    /// Frames written.
    pub frames_out: Counter,
    /// Requests, upgrades and frames refused by a rate limit or a cap.
    pub rate_limited: Counter,
    /// What rooms record into.
    pub rooms: RoomMetrics,
    /// The cluster's counters (copied in from the cluster layer when rendered).
    pub cluster: ClusterCounters,
    /// Requests by route, method and status.
    pub http: HttpMetrics,
}

/// HTTP requests by route (the route's pattern, never the raw path: ids would make a series
/// per id), method and status; the handles are made once per combination and kept.
#[derive(Clone)]
pub struct HttpMetrics {
    recorder: std::sync::Arc<PrometheusRecorder>,
    handles: std::sync::Arc<dashmap::DashMap<HttpSeries, (Counter, Histogram)>>,
}

/// Route, method, status.
type HttpSeries = (String, String, u16);

/// Combinations kept at most (routes × methods × statuses is small; this is a backstop).
const MAX_HTTP_SERIES: usize = 4096;

impl HttpMetrics {
    /// Counts one request.
    pub fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let key = (route.to_owned(), method.to_owned(), status);
        if let Some(h) = self.handles.get(&key) {
            h.0.increment(1);
            h.1.record(seconds);
            return;
        }
        if self.handles.len() >= MAX_HTTP_SERIES {
            return;
        }
        let labels = vec![
            metrics::Label::new("route", route.to_owned()),
            metrics::Label::new("method", method.to_owned()),
            metrics::Label::new("status", status.to_string()),
        ];
        let counter = self.recorder.register_counter(
            &Key::from_parts("hub_http_requests_total", labels.clone()),
            &META,
        );
        let histogram = self.recorder.register_histogram(
            &Key::from_parts("hub_http_request_duration_seconds", labels),
            &META,
        );
        counter.increment(1);
        histogram.record(seconds);
        self.handles.insert(key, (counter, histogram));
    }
}

/// The cluster counters, as exported.
#[derive(Clone)]
pub struct ClusterCounters {
    forwarded: Counter,
    link_frames: Counter,
    remote_deliveries: Counter,
    lease_renewals: Counter,
    leases_lost: Counter,
    handoffs: Counter,
    failovers: Counter,
}

impl ClusterCounters {
    /// Copies the cluster layer's counts in (before a render).
    pub fn update(&self, cluster: &actors::cluster::Cluster, links: &actors::cluster::link::Links) {
        use std::sync::atomic::Ordering::Relaxed;
        let l = &links.stats;
        let c = &cluster.stats;
        self.forwarded.absolute(l.forwarded.load(Relaxed));
        self.link_frames.absolute(l.frames_sent.load(Relaxed));
        self.remote_deliveries
            .absolute(l.remote_deliveries.load(Relaxed));
        self.handoffs.absolute(l.handoffs.load(Relaxed));
        self.failovers.absolute(l.links_lost.load(Relaxed));
        self.lease_renewals.absolute(c.lease_renewals.load(Relaxed));
        self.leases_lost.absolute(c.leases_lost.load(Relaxed));
    }
}

const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const JOURNAL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl HubMetrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> HubMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("hub_journal_append_seconds".into()),
                JOURNAL_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("hub_http_request_duration_seconds".into()),
                    HTTP_BUCKETS,
                )
            })
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let r = Registrar {
            recorder: &recorder,
        };
        recorder.describe_counter(
            "hub_http_requests_total".into(),
            None,
            "HTTP requests answered, by route, method and status".into(),
        );
        recorder.describe_histogram(
            "hub_http_request_duration_seconds".into(),
            Some(Unit::Seconds),
            "Time from a request to its response's head, by route, method and status".into(),
        );
        HubMetrics {
            connections_open: r.gauge("hub_connections_open", "WebSocket connections open"),
            frames_in: r.counter("hub_frames_in_total", "Frames received from clients"),
            frames_out: r.counter("hub_frames_out_total", "Frames written to clients"),
            rate_limited: r.counter(
                "hub_rate_limited_total",
                "Requests, upgrades and frames refused by a rate limit or a cap",
            ),
            rooms: RoomMetrics {
                rooms_active: r.gauge("hub_rooms_active", "Room actors running"),
                events_fanned_out: r.counter(
                    "hub_events_fanned_out_total",
                    "Frames handed to member outboxes by rooms",
                ),
                mailbox_depth: r.histogram(
                    "hub_room_mailbox_depth",
                    "Messages waiting in a room's mailbox when one is handled",
                    None,
                ),
                room_restarts: r
                    .counter("hub_room_restarts_total", "Rooms restarted after a crash"),
                events_dropped: r.counter(
                    "hub_events_dropped_total",
                    "Droppable frames skipped for members falling behind",
                ),
                events_conflated: r.counter(
                    "hub_events_conflated_total",
                    "Conflatable frames (presence) that replaced an older one still queued",
                ),
                slow_consumers: r.counter(
                    "hub_slow_consumers_total",
                    "Connections closed for not keeping up",
                ),
                journal_append: r.histogram(
                    "hub_journal_append_seconds",
                    "Time from a room's journal append to its commit",
                    Some(Unit::Seconds),
                ),
            },
            cluster: ClusterCounters {
                forwarded: r.counter(
                    "hub_cluster_forwarded_commands_total",
                    "Client commands sent to the node running their room",
                ),
                link_frames: r.counter(
                    "hub_cluster_link_frames_total",
                    "Room frames sent to other nodes (one per frame per node)",
                ),
                remote_deliveries: r.counter(
                    "hub_cluster_remote_deliveries_total",
                    "Member deliveries the frames sent to other nodes stood for",
                ),
                lease_renewals: r.counter(
                    "hub_cluster_lease_renewals_total",
                    "Room leases renewed (each lease, each heartbeat)",
                ),
                leases_lost: r.counter(
                    "hub_cluster_leases_lost_total",
                    "Room leases found taken by another node",
                ),
                handoffs: r.counter(
                    "hub_cluster_handoffs_total",
                    "Rooms handed to another node (drain, move, a node joining)",
                ),
                failovers: r.counter(
                    "hub_cluster_failovers_total",
                    "Nodes lost while members here were in their rooms",
                ),
            },
            handle: recorder.handle(),
            http: HttpMetrics {
                recorder: std::sync::Arc::new(recorder),
                handles: std::sync::Arc::default(),
            },
        }
    }
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}

struct Registrar<'a> {
    recorder: &'a PrometheusRecorder,
}

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Registrar<'_> {
    fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.recorder
            .describe_counter(name.into(), None, help.into());
        self.recorder
            .register_counter(&Key::from_static_name(name), &META)
    }

    fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.recorder.describe_gauge(name.into(), None, help.into());
        self.recorder
            .register_gauge(&Key::from_static_name(name), &META)
    }

    fn histogram(&self, name: &'static str, help: &'static str, unit: Option<Unit>) -> Histogram {
        self.recorder
            .describe_histogram(name.into(), unit, help.into());
        self.recorder
            .register_histogram(&Key::from_static_name(name), &META)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_show_in_the_exposition() {
        let m = HubMetrics::new();
        m.frames_in.increment(3);
        m.connections_open.set(2.0);
        m.rooms.journal_append.record(0.002);
        let text = m.handle.render();
        assert!(text.contains("hub_frames_in_total 3"), "{text}");
        assert!(text.contains("hub_connections_open 2"), "{text}");
        assert!(text.contains("hub_journal_append_seconds_bucket"), "{text}");
    }
}
