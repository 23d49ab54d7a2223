//! `sosna call`: one call to any Slave service, through a locator on this machine or, with
//! `--peer`, over the bus to a node that trusts this node's key.

use std::path::Path;

use anyhow::Context;
use sosna::config::bus::BusConfig;
use sosna::config::Config;
use sosna_bus::{Identity, SwarmSettings};
use sosna_slave::client::{call_cli, LocatorClient, ServiceClient};

pub struct Target<'a> {
    /// A locator's `host:port` (this machine's, for anything but lookups).
    pub locator: &'a str,
    /// A node's bus multiaddr ending in `/p2p/<peer id>`; the key is this node's (`config`).
    pub peer: Option<&'a str>,
    pub config: &'a Path,
}

pub fn call(
    target: Target<'_>,
    timeout_secs: u64,
    service: &str,
    method: &str,
    args: &[String],
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = std::time::Duration::from_secs(timeout_secs);
    let call = async {
        // The swarm lives as long as the call: its streams carry it.
        let (svc, _swarm) = match target.peer {
            None => (ServiceClient::resolve(target.locator, service).await?, None),
            Some(peer) => {
                let (svc, swarm) = over_bus(target.config, peer, service).await?;
                (svc, Some(swarm))
            }
        };
        anyhow::Ok(call_cli(&svc, method, args).await?)
    };
    let lines = rt.block_on(async { tokio::time::timeout(timeout, call).await });
    let lines = lines.with_context(|| format!("no reply within {timeout:?}"))??;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// A bus handle and its events: the swarm runs while both are held.
type Swarm = (
    sosna_bus::Bus,
    tokio::sync::mpsc::Receiver<sosna_bus::BusEvent>,
);

/// `service` on the node at `peer`, reached over the bus with the key in `config`'s state.
async fn over_bus(
    config: &Path,
    peer: &str,
    service: &str,
) -> anyhow::Result<(ServiceClient, Swarm)> {
    let addr: libp2p::Multiaddr = peer.parse().with_context(|| format!("--peer {peer}"))?;
    let state = BusConfig::state_dir(&Config::load(config)?.state_dir);
    let identity = Identity::load_or_create(&state).context("bus identity")?;
    let settings = SwarmSettings {
        listen: Vec::new(),
        bootstrap: Vec::new(),
        mdns: false,
        ..SwarmSettings::default()
    };
    let (bus, events) = sosna_bus::spawn(&identity, settings)?;
    // The graph comes from the node's locator, the calls go to the service itself.
    let locator = LocatorClient {
        conn: sosna::slave_bus::connect(&bus, addr.clone(), "locator").await?,
    };
    let resolved = locator.resolve(service).await?;
    let conn = sosna::slave_bus::connect(&bus, addr, service).await?;
    Ok((ServiceClient::over(service, conn, &resolved), (bus, events)))
}
