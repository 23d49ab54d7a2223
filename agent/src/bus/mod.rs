//! The P2P bus (DESIGN §3): libp2p swarm, signed envelopes, hub announcements and the
//! miners' trust flow.
//!
//! [`swarm`] owns the libp2p swarm; [`envelope`] signs and verifies every message;
//! [`hub`] announces a hub and answers miners; [`miner`] runs the trust flow over the
//! [`hubbook`], reading the chain through [`chain::ChainView`]. [`start`] wires these up
//! from the provisioning file's `[bus]` section.

pub mod chain;
pub mod envelope;
pub mod hub;
pub mod hubbook;
pub mod identity;
pub mod messages;
pub mod miner;
pub mod rpc;
pub mod settings;
pub mod swarm;
pub mod testnet;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use identity::Identity;
pub use settings::BusConfig;
pub use swarm::{spawn, Bus, BusError, BusEvent, InboundRequest, Status, SwarmSettings};

use crate::config::{Config, Role};
use crate::runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bus identity: {0}")]
    Identity(#[from] identity::IdentityError),
    #[error("bus: {0}")]
    Swarm(#[from] BusError),
    #[error("bus deployment file: {0}")]
    Deployment(#[from] sosna_contracts::DeploymentError),
    #[error("bus chain: {0}")]
    Chain(#[from] chain::ChainError),
}

/// The running bus: its role task and the switch that stops it.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops the role task; the swarm ends with its last handle.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the bus in the configured role on the current tokio runtime; a miner with a
/// `runtime` and a chain takes work from the hub it joins.
pub async fn start(config: &Config, runtime: Option<Runtime>) -> Result<Running, StartError> {
    let cfg = &config.bus;
    // Creating keys reads the kernel's CRNG, which may still be seeding on a first boot;
    // off the async threads so nothing else waits for it.
    let dir = BusConfig::state_dir(&config.state_dir);
    let identity = tokio::task::spawn_blocking(move || Identity::load_or_create(&dir))
        .await
        .expect("identity loader does not panic")?;
    let (bus, events) = swarm::spawn(&identity, cfg.swarm())?;
    let (stop, stop_rx) = watch::channel(false);
    let task = match config.role {
        Role::Hub => {
            let name = if config.hostname.is_empty() {
                "sosna-hub"
            } else {
                &config.hostname
            };
            tokio::spawn(hub::run(bus, events, cfg.hub(name), stop_rx))
        }
        Role::Miner => {
            let deployment = if config.chain.enabled() {
                Some(sosna_contracts::Deployment::from_path(
                    &config.chain.deployment,
                )?)
            } else {
                None
            };
            let chain: Option<Arc<dyn chain::ChainView>> = match deployment {
                Some(d) => Some(Arc::new(chain::RpcChain::connect(
                    &config.chain.rpc_url,
                    d,
                    cfg.payout_lookback_blocks,
                    config.chain.timeout(),
                )?)),
                None => None,
            };
            // Results are signed for the Verification contract, so work needs the chain.
            let worker = runtime.zip(deployment).map(|(rt, d)| {
                let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
                crate::market::worker::Worker::new(
                    bus.clone(),
                    rt,
                    identity.eth.clone(),
                    crate::market::attest::domain(d.chain_id, d.verification),
                    slots,
                    cfg.test_fault_wrong_result,
                )
            });
            let settings = cfg.miner(&config.state_dir);
            tokio::spawn(miner::run_with_worker(
                bus, events, chain, settings, worker, stop_rx,
            ))
        }
    };
    tracing::info!(
        "bus: started as {:?}, peer {}, address {}",
        config.role,
        identity.peer_id(),
        identity.address()
    );
    Ok(Running { stop, task })
}

/// Starts the bus in the background when `[bus] enabled`, so boot never waits for it; a
/// failure is logged, not fatal, like the network's.
pub fn start_if_enabled(config: &Config, runtime: Option<Runtime>) -> Option<Running> {
    if !config.bus.enabled {
        return None;
    }
    let config = config.clone();
    let (stop, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let running = tokio::select! {
            r = start(&config, runtime) => r,
            _ = stop_rx.changed() => return,
        };
        match running {
            Ok(running) => {
                let _ = stop_rx.changed().await;
                running.stop().await;
            }
            Err(e) => tracing::error!("{e}"),
        }
    });
    Some(Running { stop, task })
}
