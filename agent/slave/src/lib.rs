//! The slave protocol: Cocaine 0.12-compatible msgpack RPC (DESIGN §2).
//!
//! [`frame`](sosna_proto::slave::frame) is the codec, [`session`] multiplexes channels over a connection and
//! dispatches to a [`session::Service`], [`graph`](sosna_proto::slave::graph) declares protocols once for both Rust and
//! the wire. Services: [`locator`] (plus [`gateway`] mode), [`storage`], [`logging`] and
//! [`node`]. [`client`] is the async client the CLI and tests use. [`start`] brings it all
//! up for the agent.

pub mod apps;
pub mod client;
pub mod gateway;
pub mod locator;
pub mod logging;
pub mod node;
pub mod session;
pub mod storage;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use gateway::Gateway;
use locator::{Locator, LocatorService};
use session::Service;

#[derive(Debug, thiserror::Error)]
pub enum SlaveError {
    #[error("slave: bind {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: String,
        source: std::io::Error,
    },
}

/// The running locator and services; [`Slave::stop`] ends them.
pub struct Slave {
    pub locator_addr: SocketAddr,
    pub locator: Arc<Locator>,
    /// Every service by name, the locator's included: for transports other than TCP.
    pub services: std::collections::BTreeMap<&'static str, Arc<dyn Service>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Slave {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        futures::future::join_all(self.tasks).await;
    }
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, SlaveError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SlaveError::Bind {
            what: what.to_string(),
            addr: addr.to_string(),
            source,
        })
}

/// Binds the storage and logging services, any `extra` ones (the node service, once a
/// container runtime is plugged in), then the locator, and serves them all.
pub async fn start(
    cfg: &SlaveConfig,
    state_dir: &Path,
    extra: Vec<Arc<dyn Service>>,
) -> Result<Slave, SlaveError> {
    let (stop, stop_rx) = watch::channel(false);
    let gateway = (!cfg.gateway_peers.is_empty()).then(|| {
        Gateway::new(
            &cfg.gateway_peers,
            cfg.policy,
            Duration::from_millis(cfg.health_interval_ms.clamp(200, 5000)),
        )
    });
    let slave_dir: PathBuf = state_dir.join("slave");
    let locator = Locator::new(
        locator::node_uuid(&slave_dir),
        cfg.locator_port,
        gateway.clone(),
    );
    let mut services: Vec<Arc<dyn Service>> = vec![
        Arc::new(storage::StorageService(Arc::new(storage::Store::new(
            state_dir.join("storage"),
        )))),
        Arc::new(logging::LoggingService),
    ];
    services.extend(extra);
    let mut tasks = Vec::new();
    let mut by_name = std::collections::BTreeMap::new();
    for svc in services {
        let name = svc.protocol().name;
        by_name.insert(name, svc.clone());
        let listener = bind(name, SocketAddr::new(cfg.listen, 0)).await?;
        let addr = listener.local_addr().map_err(|source| SlaveError::Bind {
            what: name.to_string(),
            addr: cfg.listen.to_string(),
            source,
        })?;
        locator.register(svc.protocol(), addr);
        tasks.push(tokio::spawn(session::serve_tcp(
            listener,
            svc,
            cfg.max_frame_bytes,
            stop_rx.clone(),
        )));
    }
    let listener = bind("locator", SocketAddr::new(cfg.listen, cfg.locator_port)).await?;
    let locator_addr = listener.local_addr().map_err(|source| SlaveError::Bind {
        what: "locator".into(),
        addr: cfg.listen.to_string(),
        source,
    })?;
    locator.set_port(locator_addr.port());
    locator.register(&locator::LocatorMethod::PROTOCOL, locator_addr);
    let loc_svc: Arc<dyn Service> = Arc::new(LocatorService(locator.clone()));
    by_name.insert(loc_svc.protocol().name, loc_svc.clone());
    if !cfg.socket.is_empty() {
        let path = Path::new(&cfg.socket);
        let _ = std::fs::remove_file(path);
        let unix = tokio::net::UnixListener::bind(path).map_err(|source| SlaveError::Bind {
            what: "locator".into(),
            addr: cfg.socket.clone(),
            source,
        })?;
        tasks.push(tokio::spawn(session::serve_unix(
            unix,
            loc_svc.clone(),
            cfg.max_frame_bytes,
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(session::serve_tcp(
        listener,
        loc_svc,
        cfg.max_frame_bytes,
        stop_rx.clone(),
    )));
    if let Some(gw) = gateway {
        tracing::info!(
            "slave: gateway over {} peers ({:?})",
            cfg.gateway_peers.len(),
            cfg.policy
        );
        tasks.push(tokio::spawn(gw.run(
            Duration::from_millis(cfg.health_interval_ms),
            stop_rx.clone(),
        )));
    }
    tracing::info!(
        "slave: locator listening on {locator_addr} (uuid {})",
        locator.uuid()
    );
    Ok(Slave {
        locator_addr,
        locator,
        services: by_name,
        stop,
        tasks,
    })
}

/// The agent's entry point: starts the slave when `cfg` enables it. A failure is logged,
/// not fatal: the node stays reachable on its console.
pub async fn start_or_log(
    cfg: &SlaveConfig,
    state_dir: &Path,
    extra: Vec<Arc<dyn Service>>,
) -> Option<Slave> {
    if !cfg.enabled {
        return None;
    }
    match start(cfg, state_dir, extra).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    }
}

/// The slave protocol (DESIGN §2): locator and services.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaveConfig {
    /// Serve the locator, storage and logging services.
    pub enabled: bool,
    /// Address the locator and services listen on. Callers from elsewhere than this
    /// machine reach only the locator's resolve, cluster and uuid: everything else is for
    /// local callers and trusted bus peers (`trusted_peers`, the hub this miner joined).
    pub listen: IpAddr,
    /// Bus peer ids (the operator's) that may call every service over the bus.
    pub trusted_peers: Vec<String>,
    /// The locator's port; services take ephemeral ports and are found through it.
    pub locator_port: u16,
    /// Also serve the locator on this unix socket; empty for none.
    pub socket: String,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Gateway mode: other nodes' locators as `host:port`; empty for a plain locator.
    pub gateway_peers: Vec<String>,
    /// Gateway choice among live nodes: `round-robin` or `random`.
    pub policy: gateway::Policy,
    /// Gateway health probe interval, in milliseconds.
    pub health_interval_ms: u64,
}

impl Default for SlaveConfig {
    fn default() -> Self {
        SlaveConfig {
            enabled: true,
            // This machine only: remote callers come over the bus, authenticated.
            listen: IpAddr::from([127, 0, 0, 1]),
            locator_port: 10053,
            trusted_peers: Vec::new(),
            socket: String::new(),
            max_frame_bytes: sosna_proto::slave::frame::DEFAULT_MAX_FRAME,
            gateway_peers: Vec::new(),
            policy: gateway::Policy::RoundRobin,
            health_interval_ms: 1000,
        }
    }
}
