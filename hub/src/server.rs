//! Starting and stopping a hub.
//!
//! Shutdown, in order: stop accepting (the listener closes, in-flight HTTP requests finish);
//! close every WebSocket with 1001 "going away"; stop every room, each writing a final snapshot;
//! close the database. Nothing acknowledged is lost at any step: acknowledged events are already
//! in the journal, and the snapshots only shorten the next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actors::Router;
use actors::cluster::link::Links;
use actors::cluster::{Cluster, Load};
use anyhow::Context;
use persistence::{Journal, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, load_or_create_secret};
use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::HubMetrics;
use crate::state::AppState;
use crate::ws::registry::Registry;

/// A running hub.
pub struct Hub {
    /// Where it listens (useful with port 0).
    pub addr: SocketAddr,
    state: AppState,
    server: JoinHandle<()>,
    /// The cluster heartbeat (cluster mode): ends, leaving the cluster, at shutdown.
    heartbeat: Option<JoinHandle<()>>,
}

impl Hub {
    /// Opens the database (migrating it), starts the room system and listens.
    ///
    /// # Errors
    /// The data folder, the database or the address cannot be used.
    pub async fn start(mut config: Config) -> anyhow::Result<Hub> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
        let url = config.database_url();
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("opening the database {}", redact(&url)))?;
        tracing::info!(backend = ?store.backend(), "database ready");
        if let Some(token) = &config.admin_token {
            anyhow::ensure!(
                token.len() >= crate::auth::MIN_SECRET_BYTES,
                "HUB_ADMIN_TOKEN must be at least {} bytes",
                crate::auth::MIN_SECRET_BYTES
            );
        }
        let secret = load_or_create_secret(config.jwt_secret.as_deref(), &config.data_dir)?;
        let auth = Auth::new(&secret, &config.auth)?;
        let metrics = HubMetrics::new();
        let journal = Journal::spawn(store.clone(), metrics.rooms.journal_append.clone());
        let listener = crate::http::listen(config.listen)
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // What it listens on, port 0 resolved: the address it reports (admin nodes, cluster).
        config.listen = addr;
        let (cluster, links) = if config.cluster.redis_url.is_some() {
            let link_at = config
                .cluster
                .link_addr
                .unwrap_or_else(|| SocketAddr::new(addr.ip(), 0));
            let link_listener = tokio::net::TcpListener::bind(link_at)
                .await
                .with_context(|| format!("listening for cluster links on {link_at}"))?;
            let cluster_config = config
                .cluster_config(addr, link_listener.local_addr()?)?
                .context("cluster settings")?;
            let cluster = Cluster::join(cluster_config)
                .await
                .context("joining the cluster")?;
            let links = Links::new(cluster.clone(), &secret);
            (Some(cluster), Some((links, link_listener)))
        } else {
            (None, None)
        };
        let router = Router::start(
            store.clone(),
            journal,
            config.room_config(),
            metrics.rooms.clone(),
            links.as_ref().map(|(l, _)| l.clone()),
        )
        .await
        .context("starting the room supervisor")?;
        let limits = Arc::new(match &cluster {
            Some(c) => Limits::with_store(
                config.limits.clone(),
                crate::limits::LimitStore::redis(c.clone()),
            ),
            None => Limits::new(config.limits.clone()),
        });
        let registry = Registry::new(config.ws.max_conns_per_user, config.ws.max_conns_per_ip);
        let mut state = AppState {
            store,
            router,
            auth: Arc::new(auth),
            metrics: metrics.clone(),
            config: Arc::new(config),
            limits,
            registry,
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            next_conn: Arc::new(AtomicU64::new(1)),
            cluster,
            links: None,
            drain: CancellationToken::new(),
            jobs: Arc::new(tokio::sync::Notify::new()),
            openapi: Default::default(),
        };
        tokio::spawn(upkeep(state.clone()));
        let mail = &state.config.mail;
        if mail.job_poll_ms > 0 {
            let worker = crate::jobs::Worker {
                store: state.store.clone(),
                mailer: crate::jobs::Mailer::new(mail, &state.config.data_dir)?,
                from: mail
                    .mail_from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("HUB_MAIL_FROM: {e}"))?,
                max_attempts: mail.job_max_attempts.max(1),
                backoff: Duration::from_millis(mail.job_backoff_ms),
                poll: Duration::from_millis(mail.job_poll_ms),
                wake: state.jobs.clone(),
            };
            let shutdown = state.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = worker.run() => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
        if let Some((links, listener)) = links {
            tokio::spawn(links.clone().serve(
                listener,
                state.router.clone(),
                state.shutdown.clone(),
            ));
            state.links = Some(links);
        }
        let heartbeat = state.cluster.as_ref().map(|cluster| {
            let (router, connections) = (state.router.clone(), state.connections.clone());
            cluster.spawn_heartbeat(
                move || Load {
                    rooms: router.active_rooms() as u64,
                    connections: connections.len() as u64,
                },
                state.shutdown.clone(),
            )
        });
        let app = crate::api::app(state.clone());
        let timeouts = crate::http::Timeouts {
            header: Duration::from_secs(state.config.http.header_timeout_secs.max(1)),
            write: Duration::from_secs(state.config.ws.write_timeout_secs.max(1)),
        };
        let server = tokio::spawn(crate::http::serve(
            listener,
            app,
            timeouts,
            state.shutdown.clone(),
        ));
        tracing::info!(%addr, "hub listening");
        Ok(Hub {
            addr,
            state,
            server,
            heartbeat,
        })
    }

    /// Cancelled when the operator asks this node to drain (`POST /admin/nodes/{id}/drain`):
    /// the binary then shuts down as on SIGTERM.
    pub fn drain_requested(&self) -> CancellationToken {
        self.state.drain.clone()
    }

    /// The shared state (for tests that reach inside).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Shuts down gracefully (see the module docs).
    ///
    /// # Errors
    /// The HTTP server failed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(self.state.config.shutdown_timeout_secs);
        if let Some(cluster) = &self.state.cluster {
            // Drain: the others stop placing rooms here; each room here is handed to its next
            // node with a final snapshot, and its members elsewhere resync there by offset.
            let started = tokio::time::Instant::now();
            if let Err(e) = cluster.announce_draining().await {
                tracing::warn!(error = %e, "could not announce the drain; the others learn it as this node leaves");
            }
            let rooms = self.state.router.active_rooms();
            let placed = cluster.clone();
            self.state
                .router
                .drain(move |room| placed.placed(&room.to_string()), timeout)
                .await;
            if let Some(links) = &self.state.links {
                links
                    .stats
                    .handoffs
                    .fetch_add(rooms as u64, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::info!(rooms, took = ?started.elapsed(), "rooms handed off");
        }
        self.state.shutdown.cancel();
        // In-flight requests finish (each is bounded by the request deadline).
        let served = match tokio::time::timeout(timeout, self.server).await {
            Ok(joined) => joined.context("server task"),
            Err(_) => {
                tracing::warn!("some HTTP requests did not finish in time");
                Ok(())
            }
        };
        self.state.connections.close();
        if tokio::time::timeout(timeout, self.state.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close in time");
        }
        self.state.router.shutdown(timeout).await;
        if let Some(heartbeat) = self.heartbeat {
            // Cancelled above with everything else: it leaves the cluster and ends.
            let _ = tokio::time::timeout(timeout, heartbeat).await;
        }
        self.state.store.close().await;
        tracing::info!("hub stopped");
        served
    }
}

/// Raises this process's soft limit on open files to its hard limit (every connection is a file
/// descriptor; the usual soft limit of 1024 would cap the hub at about a thousand clients), and
/// logs what it did.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` and `setrlimit` only read and write the struct given to them.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
        if got != 0 {
            return tracing::warn!("could not read the open-file limit");
        }
        let before = limit.rlim_cur;
        if before >= limit.rlim_max {
            return tracing::info!(limit = before, "open-file limit");
        }
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } == 0 {
            tracing::info!(
                from = before,
                to = limit.rlim_cur,
                "raised the open-file limit"
            );
        } else {
            tracing::warn!(limit = before, "could not raise the open-file limit");
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Keeps the Prometheus summaries rolling and the rate limits' memory small.
async fn upkeep(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = every.tick() => {
                state.metrics.handle.run_upkeep();
                state.limits.sweep();
                state.registry.sweep();
                // Once a minute, a bounded slice of the activity past its retention.
                ticks += 1;
                if ticks % 12 == 1 {
                    trim_activity(&state).await;
                }
            }
        }
    }
}

async fn trim_activity(state: &AppState) {
    let days = i64::try_from(state.config.rooms.activity_retention_days).unwrap_or(i64::MAX);
    let Some(cutoff) = chrono::Utc::now().checked_sub_signed(chrono::Duration::days(days)) else {
        return;
    };
    match state.store.trim_activity(cutoff, 10_000).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "activity past its retention trimmed"),
        Err(e) => tracing::warn!(error = %e, "trimming the activity failed"),
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            super::redact("sqlite://./data/hub.db"),
            "sqlite://./data/hub.db"
        );
    }
}
