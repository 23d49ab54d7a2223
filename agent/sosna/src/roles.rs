//! The node's roles, wired: the one place where bus, market, rollout and runtime meet.
//!
//! [`start`] brings up the bus from the provisioning file's `[bus]` section, then runs
//! the configured role on it: a hub announces itself, answers miners and (with a chain)
//! takes deals; a miner judges hubs, joins one and (with a runtime and a chain) runs its
//! units, stakes and withdraws its pay. With `[rollout]` on, update notices go to the
//! rollout follower.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use sosna_bus::identity::{self, Identity};
use sosna_bus::{Bus, BusError, BusEvent, Verified};
use sosna_init::health::SlotHealth;
use sosna_market::hub::announce as hub;
use sosna_market::miner::chain_view as chain;
use sosna_market::miner::hubbook;
use sosna_market::miner::join as miner;
use sosna_proto::bus::messages;
use sosna_runtime::Runtime;

use crate::config::bus::BusConfig;
use crate::config::{Config, Role};

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
    bus: watch::Receiver<Option<Bus>>,
}

impl Running {
    /// The bus handle, once the swarm is up (the health check asks it for peers).
    pub fn handle(&self) -> watch::Receiver<Option<Bus>> {
        self.bus.clone()
    }

    /// Stops the role task; the swarm ends with its last handle.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the bus in the configured role on the current tokio runtime; a miner with a
/// `runtime` and a chain takes work from the hub it joins. `health` is the verdict on the
/// booted slot, for rollout reports.
pub async fn start(
    config: &Config,
    runtime: Option<Runtime>,
    health: watch::Receiver<SlotHealth>,
    slave: Option<SlaveServices>,
) -> Result<Running, StartError> {
    let cfg = &config.bus;
    // Creating keys reads the kernel's CRNG, which may still be seeding on a first boot;
    // off the async threads so nothing else waits for it.
    let dir = BusConfig::state_dir(&config.state_dir);
    let identity = tokio::task::spawn_blocking(move || Identity::load_or_create(&dir))
        .await
        .expect("identity loader does not panic")?;
    let (bus, events) = sosna_bus::spawn(&identity, cfg.swarm())?;
    let (_, handle) = watch::channel(Some(bus.clone()));
    let (stop, stop_rx) = watch::channel(false);
    if let Some(services) = slave {
        let trust = crate::slave_bus::Trust {
            peers: config
                .slave
                .trusted_peers
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
            book: (config.role == Role::Miner).then(|| cfg.miner(&config.state_dir).book_path),
        };
        let (bus, max_frame, stop) = (bus.clone(), config.slave.max_frame_bytes, stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::slave_bus::serve(bus, services, trust, max_frame, stop).await {
                tracing::error!("slave over the bus: {e}");
            }
        });
    }
    let events = if config.rollout.enabled() {
        let (updates, events) = split_updates(events);
        tokio::spawn(sosna_ota::rollout::run(
            bus.clone(),
            updates,
            config.rollout.settings(),
            sosna_ota::rollout::system_updater(),
            health,
            stop_rx.clone(),
        ));
        events
    } else {
        events
    };
    let deployment = if config.chain.enabled() {
        Some(sosna_contracts::Deployment::from_path(
            &config.chain.deployment,
        )?)
    } else {
        None
    };
    let task = match config.role {
        Role::Hub => {
            let name = if config.hostname.is_empty() {
                "sosna-hub"
            } else {
                &config.hostname
            };
            let settings = cfg.hub(name);
            match deployment {
                // With a chain, the hub takes deals: its desk needs the chain sender, which
                // waits out an RPC outage, so the hub comes up in its own task.
                Some(d) => {
                    let market = MarketParts {
                        config: config.clone(),
                        deployment: d,
                        key: identity.eth.clone(),
                    };
                    tokio::spawn(async move {
                        let (dispatcher, desk) = match market.hub_desk(&bus, &settings).await {
                            Ok(parts) => parts,
                            Err(e) => {
                                tracing::error!("market: the hub takes no deals: {e}");
                                return;
                            }
                        };
                        hub::run_with_desk(
                            bus,
                            events,
                            settings,
                            Some(dispatcher),
                            Some(desk),
                            stop_rx,
                        )
                        .await
                    })
                }
                None => tokio::spawn(hub::run(bus, events, settings, stop_rx)),
            }
        }
        Role::Miner => {
            let chain: Option<Arc<dyn chain::ChainView>> = match &deployment {
                Some(d) => Some(Arc::new(chain::RpcChain::connect(
                    &config.chain.rpc_url,
                    *d,
                    cfg.payout_lookback_blocks,
                    config.chain.timeout(),
                )?)),
                None => None,
            };
            let settings = cfg.miner(&config.state_dir);
            if let Some(d) = deployment {
                let market = MarketParts {
                    config: config.clone(),
                    deployment: d,
                    key: identity.eth.clone(),
                };
                tokio::spawn(market.miner_money(settings.book_path.clone(), stop_rx.clone()));
            }
            // Results are signed for the Verification contract, so work needs the chain.
            let worker = runtime.zip(deployment).map(|(rt, d)| {
                let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
                let worker = sosna_market::miner::worker::Worker::new(
                    bus.clone(),
                    rt,
                    identity.eth.clone(),
                    sosna_proto::attest::domain(d.chain_id, d.verification),
                    slots,
                );
                #[cfg(feature = "fault-injection")]
                let worker = if cfg.test_fault_wrong_result {
                    tracing::warn!("market: fault injection: this miner forges its results");
                    worker.forging()
                } else {
                    worker
                };
                worker
            });
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
    Ok(Running {
        stop,
        task,
        bus: handle,
    })
}

/// Splits `sosna/updates/1` messages off the swarm's events, for the rollout task; the
/// rest go on to the role. A full rollout queue drops notices: they are repeated.
fn split_updates(
    mut events: tokio::sync::mpsc::Receiver<BusEvent>,
) -> (
    tokio::sync::mpsc::Receiver<Verified>,
    tokio::sync::mpsc::Receiver<BusEvent>,
) {
    let (updates_tx, updates) = tokio::sync::mpsc::channel(64);
    let (role_tx, role) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                BusEvent::Message(v) if v.topic == messages::TOPIC_UPDATES => {
                    let _ = updates_tx.try_send(v);
                }
                other => {
                    if role_tx.send(other).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (updates, role)
}

/// What the market side of a role needs: where the chain is and the node's key.
struct MarketParts {
    config: Config,
    deployment: sosna_contracts::Deployment,
    key: alloy_signer_local::PrivateKeySigner,
}

impl MarketParts {
    async fn sender(&self) -> Result<sosna_chain::sender::Sender, sosna_chain::ChainError> {
        let chain = &self.config.chain;
        let provider = sosna_chain::connect(&chain.rpc_url, chain.timeout())?;
        let dir = sosna_chain::ChainConfig::state_dir(&self.config.state_dir);
        let sender =
            sosna_chain::sender::Sender::open(provider, self.key.clone(), &dir, chain).await?;
        for (tx, result) in sender.resume().await {
            match result {
                Ok(_) => tracing::info!("chain: landed {} from before the restart", tx.label),
                Err(e) => tracing::warn!("chain: {} from before the restart: {e}", tx.label),
            }
        }
        Ok(sender)
    }

    /// The hub's dispatcher and deal desk.
    async fn hub_desk(
        &self,
        bus: &Bus,
        settings: &hub::HubSettings,
    ) -> Result<
        (
            sosna_market::hub::dispatch::Dispatcher,
            sosna_market::hub::desk::Desk,
        ),
        String,
    > {
        use sosna_market::hub::desk::{Desk, DeskSettings};
        let d = self.deployment;
        let sender = self.sender().await.map_err(|e| e.to_string())?;
        let domain = sosna_proto::attest::domain(d.chain_id, d.verification);
        let chain = chain::RpcChain::connect(
            &self.config.chain.rpc_url,
            d,
            self.config.bus.payout_lookback_blocks,
            self.config.chain.timeout(),
        )
        .map_err(|e| e.to_string())?;
        let gate = sosna_market::hub::stake::StakeGate::new(
            Arc::new(chain),
            self.config.bus.min_stake_wei(),
            std::time::Duration::from_secs(60),
        );
        let dispatcher = sosna_market::hub::dispatch::Dispatcher::new(bus.clone(), domain)
            .with_stake_gate(Arc::new(gate));
        let h = &self.config.bus.hub;
        let desk = Desk::open(
            dispatcher.clone(),
            Arc::new(sender),
            d,
            DeskSettings {
                wallet: settings.wallet,
                miner_share_pct: h.miner_share_percent,
                unit_timeout: std::time::Duration::from_secs(h.task_timeout_secs),
                dir: self.config.state_dir.join("market").join("jobs"),
                insecure_registries: self.config.runtime.insecure_registries.clone(),
            },
        )
        .map_err(|e| e.to_string())?;
        tracing::info!("market: hub {} takes deals", settings.wallet);
        Ok((dispatcher, desk))
    }

    /// A miner's stake, then its pay pulled from every hub in its book, until `stop`.
    async fn miner_money(self, book: std::path::PathBuf, stop: watch::Receiver<bool>) {
        use sosna_market::miner::earnings;
        let sender = match self.sender().await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!("market: no chain sender, so no stake or withdrawals: {e}");
                return;
            }
        };
        let every = std::time::Duration::from_secs(self.config.bus.chain_poll_secs);
        let want = alloy_primitives::U256::from(self.config.bus.stake)
            * alloy_primitives::U256::from(messages::MICRO_SNM_WEI);
        if !want.is_zero() {
            // Outages are waited out inside the sender; what fails here is the chain
            // saying no (no SNM to stake, say), which a few more tries will not change.
            for attempt in 1..=3 {
                match earnings::ensure_stake(&sender, &self.deployment, want).await {
                    Ok(_) => break,
                    Err(e) => tracing::warn!("market: staking (attempt {attempt} of 3): {e}"),
                }
                tokio::time::sleep(every).await;
            }
        }
        let wallets = move || {
            hubbook::HubBook::load(&book)
                .map(|b| b.hubs.keys().copied().collect())
                .unwrap_or_default()
        };
        earnings::run(sender, self.deployment, wallets, every, stop).await
    }
}

/// Starts the bus in the background when `[bus] enabled`, so boot never waits for it; a
/// failure is logged, not fatal, like the network's.
/// The Slave services, by name, to serve to trusted bus peers.
pub type SlaveServices =
    std::collections::BTreeMap<&'static str, Arc<dyn sosna_slave::session::Service>>;

pub fn start_if_enabled(
    config: &Config,
    runtime: Option<Runtime>,
    health: watch::Receiver<SlotHealth>,
    slave: Option<SlaveServices>,
    mut clock: watch::Receiver<bool>,
) -> Option<Running> {
    if !config.bus.enabled {
        return None;
    }
    let config = config.clone();
    let (stop, mut stop_rx) = watch::channel(false);
    let (bus_tx, bus) = watch::channel(None);
    let task = tokio::spawn(async move {
        // Envelopes carry timestamps peers check to the second: not before the clock is.
        if !*clock.borrow() {
            tracing::info!("bus: waiting for a plausible clock");
            tokio::select! {
                _ = clock.wait_for(|plausible| *plausible) => {}
                _ = stop_rx.changed() => return,
            }
            tracing::info!("bus: the clock is set; starting");
        }
        let running = tokio::select! {
            r = start(&config, runtime, health, slave) => r,
            _ = stop_rx.changed() => return,
        };
        match running {
            Ok(running) => {
                bus_tx.send_replace(running.bus.borrow().clone());
                let _ = stop_rx.changed().await;
                running.stop().await;
            }
            Err(e) => tracing::error!("{e}"),
        }
    });
    Some(Running { stop, task, bus })
}
