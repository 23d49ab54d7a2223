//! The agent as an ordinary process on a host (hubs, tests): no mounts, no network
//! changes, no power control; SIGINT/SIGTERM end it after services have stopped.

use crate::config::Config;
use crate::node::{self, Mode};
use sosna_init::{logging, reaper};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("become subreaper: {0}")]
    Subreaper(nix::Error),
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
}

pub fn run(config: &Config) -> Result<(), DaemonError> {
    logging::init(&config.log.level);
    // Orphans of our services come back to us instead of the host's init.
    reaper::become_subreaper().map_err(DaemonError::Subreaper)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    tracing::info!(
        "sosna {} starting as a {:?} daemon",
        env!("CARGO_PKG_VERSION"),
        config.role
    );
    rt.block_on(node::run(config, Mode::Daemon, None))
        .map_err(DaemonError::Runtime)?;
    tracing::info!("stopped");
    Ok(())
}
