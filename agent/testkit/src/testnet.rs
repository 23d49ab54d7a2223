//! In-process networks of bus nodes over the memory transport, shared by the integration
//! tests and the propagation benchmark. Readiness is always a condition polled against a
//! deadline, never a fixed sleep.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use tokio::sync::mpsc;

use sosna_bus::swarm::{self, Bus, BusError, BusEvent, SwarmSettings};
use sosna_bus::Identity;

/// Memory "ports" are process-global; start from a per-process base so that concurrently
/// running tests in one binary never collide.
static NEXT_PORT: AtomicU64 = AtomicU64::new(0);

fn next_port() -> u64 {
    let _ = NEXT_PORT.compare_exchange(
        0,
        1_000_000 + u64::from(std::process::id()) * 100_000,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    NEXT_PORT.fetch_add(1, Ordering::SeqCst)
}

pub struct LocalNode {
    pub identity: Identity,
    pub bus: Bus,
    /// Dialable address, including `/p2p/<peer id>`.
    pub addr: Multiaddr,
}

/// Starts one node listening on a fresh memory address.
pub fn spawn_node(identity: Identity) -> Result<(LocalNode, mpsc::Receiver<BusEvent>), BusError> {
    spawn_node_with(identity, SwarmSettings::memory(next_port()))
}

/// Starts one node with `settings`, whose first listen address must be a memory address.
pub fn spawn_node_with(
    identity: Identity,
    settings: SwarmSettings,
) -> Result<(LocalNode, mpsc::Receiver<BusEvent>), BusError> {
    let addr = settings.listen[0]
        .clone()
        .with(Protocol::P2p(identity.peer_id()));
    let (bus, events) = swarm::spawn(&identity, settings)?;
    Ok((
        LocalNode {
            identity,
            bus,
            addr,
        },
        events,
    ))
}

/// A network of nodes whose events are merged into one stream tagged with the node index.
pub struct LocalNet {
    pub nodes: Vec<LocalNode>,
    pub events: mpsc::UnboundedReceiver<(usize, BusEvent)>,
}

/// Spawns `n` nodes and connects each to up to `links` earlier ones chosen by a seeded
/// generator, which gives a connected graph of average degree about `2 * links`.
pub async fn spawn_net(n: usize, links: usize, seed: u64) -> Result<LocalNet, BusError> {
    spawn_net_with(n, links, seed, SwarmSettings::memory(0).heartbeat).await
}

/// [`spawn_net`] with a given gossipsub heartbeat: short for quick meshes in tests, longer
/// to keep 100 in-process nodes from spending their CPU on heartbeats.
pub async fn spawn_net_with(
    n: usize,
    links: usize,
    seed: u64,
    heartbeat: Duration,
) -> Result<LocalNet, BusError> {
    let (tx, events) = mpsc::unbounded_channel();
    let mut nodes: Vec<LocalNode> = Vec::with_capacity(n);
    let mut rng = seed | 1;
    let mut links_of = Vec::with_capacity(n);
    for i in 0..n {
        let settings = SwarmSettings {
            heartbeat,
            ..SwarmSettings::memory(next_port())
        };
        let (node, mut rx) = spawn_node_with(Identity::ephemeral(), settings)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if tx.send((i, e)).is_err() {
                    break;
                }
            }
        });
        let mut targets = Vec::new();
        for _ in 0..links.min(i) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let j = (rng % i as u64) as usize;
            if !targets.contains(&j) {
                targets.push(j);
            }
        }
        links_of.push(targets);
        nodes.push(node);
    }
    // Dial concurrently: handshakes overlap instead of queueing behind each other.
    let dials = links_of.iter().enumerate().flat_map(|(i, targets)| {
        let nodes = &nodes;
        targets
            .iter()
            .map(move |j| nodes[i].bus.dial(nodes[*j].addr.clone()))
    });
    for result in futures::future::join_all(dials).await {
        result?;
    }
    Ok(LocalNet { nodes, events })
}

/// Polls `check` until it returns true or `timeout` passes; the error says what was awaited.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl LocalNet {
    /// Waits until every node has a gossip mesh on every topic: a message published now
    /// reaches the whole connected network.
    pub async fn wait_for_mesh(&self, timeout: Duration) -> Result<(), String> {
        let buses: Vec<Bus> = self.nodes.iter().map(|n| n.bus.clone()).collect();
        wait_until("every node to join the gossip meshes", timeout, || {
            let buses = buses.clone();
            async move {
                for bus in &buses {
                    match bus.status().await {
                        Ok(s) if s.connected > 0 && s.mesh.iter().all(|m| *m > 0) => {}
                        _ => return false,
                    }
                }
                true
            }
        })
        .await
    }

    /// Next event, or None once `timeout` passes.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<(usize, BusEvent)> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}
