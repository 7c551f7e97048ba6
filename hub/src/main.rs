//! The hub binary: read the configuration, start, run until SIGTERM or Ctrl-C, shut down cleanly.

use clap::Parser;
use hub::{Config, Hub};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    hub::server::raise_fd_limit();
    let hub = Hub::start(config).await?;
    let drain = hub.drain_requested();
    tokio::select! {
        () = hub::server::shutdown_signal() => tracing::info!("shutdown signal received"),
        () = drain.cancelled() => tracing::info!("drain requested by the operator"),
    }
    hub.shutdown().await
}
