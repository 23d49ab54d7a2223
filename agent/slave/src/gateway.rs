//! Gateway mode: resolve names on other nodes' locators, only those that answer.
//!
//! Each configured peer locator is probed with `uuid()` every health interval; a failed
//! probe or a failed resolve marks it dead until a probe succeeds again. `resolve` asks the
//! live peers in policy order (round-robin or random) and returns the first that has the
//! service; dead peers are tried last, so a whole-cluster restart still resolves.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use super::client::{ClientError, LocatorClient, Resolved};
use sosna_proto::slave::error::{service as code, RpcError};

/// How a gateway picks among live nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    RoundRobin,
    Random,
}

struct Peer {
    addr: String,
    client: Mutex<Option<LocatorClient>>,
    alive: AtomicBool,
    uuid: std::sync::Mutex<Option<String>>,
}

pub struct Gateway {
    peers: Vec<Peer>,
    policy: Policy,
    next: AtomicUsize,
    timeout: Duration,
}

impl Gateway {
    /// `peers` are `host:port` of other locators; `timeout` bounds every request to them.
    pub fn new(peers: &[String], policy: Policy, timeout: Duration) -> Arc<Gateway> {
        Arc::new(Gateway {
            peers: peers
                .iter()
                .map(|addr| Peer {
                    addr: addr.clone(),
                    client: Mutex::new(None),
                    alive: AtomicBool::new(false),
                    uuid: std::sync::Mutex::new(None),
                })
                .collect(),
            policy,
            next: AtomicUsize::new(0),
            timeout,
        })
    }

    /// Live peers as `(uuid, (host, port))`.
    pub fn live_nodes(&self) -> Vec<(String, (String, u16))> {
        self.peers
            .iter()
            .filter(|p| p.alive.load(Ordering::Relaxed))
            .filter_map(|p| {
                let uuid = p.uuid.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
                let (host, port) = p.addr.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((uuid, (host.to_string(), port.parse().ok()?)))
            })
            .collect()
    }

    /// Peer addresses currently considered alive.
    pub fn live(&self) -> Vec<String> {
        self.peers
            .iter()
            .filter(|p| p.alive.load(Ordering::Relaxed))
            .map(|p| p.addr.clone())
            .collect()
    }

    async fn client(&self, peer: &Peer) -> Result<LocatorClient, ClientError> {
        let mut slot = peer.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.conn.closed().is_none()) {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout, LocatorClient::connect(&peer.addr))
            .await
            .map_err(|_| {
                ClientError::Disconnected(format!("connect to {} timed out", peer.addr))
            })??;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn mark_dead(&self, peer: &Peer, why: String) {
        if peer.alive.swap(false, Ordering::Relaxed) {
            tracing::warn!("gateway: node {} is down: {why}", peer.addr);
        }
        *peer.client.lock().await = None;
    }

    async fn probe(&self, peer: &Peer) {
        let r = async {
            let c = self.client(peer).await?;
            tokio::time::timeout(self.timeout, c.uuid())
                .await
                .map_err(|_| ClientError::Disconnected("uuid() timed out".into()))?
        }
        .await;
        match r {
            Ok(uuid) => {
                *peer.uuid.lock().unwrap_or_else(|e| e.into_inner()) = Some(uuid);
                if !peer.alive.swap(true, Ordering::Relaxed) {
                    tracing::info!("gateway: node {} is up", peer.addr);
                }
            }
            Err(e) => self.mark_dead(peer, e.to_string()).await,
        }
    }

    /// Probes every peer now, concurrently.
    pub async fn probe_all(&self) {
        futures::future::join_all(self.peers.iter().map(|p| self.probe(p))).await;
    }

    /// Probes every `interval` until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.probe_all().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Peer indices in the order to try: live ones by policy, then the dead.
    fn order(&self) -> Vec<usize> {
        let n = self.peers.len();
        let mut idx: Vec<usize> = (0..n).collect();
        match self.policy {
            Policy::RoundRobin if n > 0 => {
                idx.rotate_left(self.next.fetch_add(1, Ordering::Relaxed) % n)
            }
            Policy::RoundRobin => {}
            Policy::Random => fastrand::shuffle(&mut idx),
        }
        idx.sort_by_key(|i| !self.peers[*i].alive.load(Ordering::Relaxed));
        idx
    }

    /// Resolves `name` on a live node that has it.
    pub async fn resolve(&self, name: &str) -> Result<Resolved, RpcError> {
        let mut missing = 0;
        for i in self.order() {
            let peer = &self.peers[i];
            let r = async {
                let c = self.client(peer).await?;
                tokio::time::timeout(self.timeout, c.resolve(name))
                    .await
                    .map_err(|_| ClientError::Disconnected("resolve timed out".into()))?
            }
            .await;
            match r {
                Ok(r) => {
                    if !peer.alive.load(Ordering::Relaxed) {
                        // It answered; the next probe will record its uuid.
                        peer.alive.store(true, Ordering::Relaxed);
                    }
                    return Ok(r);
                }
                Err(ClientError::Rpc(e)) => {
                    tracing::debug!("gateway: {} cannot resolve {name}: {e}", peer.addr);
                    missing += 1;
                }
                Err(e) => self.mark_dead(peer, e.to_string()).await,
            }
        }
        Err(RpcError::service(
            code::UNAVAILABLE,
            format!(
                "no live node resolves {name:?} ({} peers, {missing} without it)",
                self.peers.len()
            ),
        ))
    }
}
