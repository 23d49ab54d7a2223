//! The locator: maps service names to endpoints, versions and dispatch graphs.
//!
//! Services on this node register here with their port; `resolve` answers with the address
//! the caller reached the locator at, so a node listening on every interface advertises one
//! its callers can use. Remote nodes may `publish` their services; in gateway mode names are
//! resolved on other nodes' locators first (see [`super::gateway`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, RwLock};

use rmpv::Value;

use super::client::{endpoint_from_value, endpoint_to_value, Resolved};
use super::gateway::Gateway;
use super::session::{Call, Service};
use sosna_proto::slave::error::RpcError;
use sosna_proto::slave::graph::{Method, Protocol};

sosna_proto::protocol! {
    /// Locator protocol (Cocaine 0.12, version 3); ids 1, 2 and 5 are not served.
    pub enum LocatorMethod = "locator", version 3 {
        /// `resolve(name) -> value(endpoints, version, graph)`
        0 Resolve "resolve": Terminal -> Option,
        /// `cluster() -> value({uuid: [host, port]})`
        3 Cluster "cluster": Terminal -> Option,
        /// `publish(name, endpoints, [version, graph]) -> value()`
        4 Publish "publish": Terminal -> Option,
        /// `uuid() -> value(uuid)`
        6 Uuid "uuid": Terminal -> Option,
    }
}

/// Most services others may publish here.
const MAX_PUBLISHED: usize = 256;

/// A service bound on this node.
#[derive(Debug, Clone)]
struct LocalService {
    addr: SocketAddr,
    version: u64,
    graph: Value,
}

/// Services known to this node's locator.
pub struct Locator {
    uuid: String,
    port: AtomicU16,
    local: RwLock<BTreeMap<String, LocalService>>,
    published: RwLock<BTreeMap<String, Resolved>>,
    gateway: Option<Arc<Gateway>>,
}

impl Locator {
    pub fn new(uuid: String, port: u16, gateway: Option<Arc<Gateway>>) -> Arc<Locator> {
        Arc::new(Locator {
            uuid,
            port: AtomicU16::new(port),
            local: RwLock::default(),
            published: RwLock::default(),
            gateway,
        })
    }

    /// The gateway, in gateway mode.
    pub fn gateway(&self) -> Option<&Arc<Gateway>> {
        self.gateway.as_ref()
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// Registers a service of this node bound at `addr`.
    pub fn register(&self, protocol: &Protocol, addr: SocketAddr) {
        let entry = LocalService {
            addr,
            version: protocol.version,
            graph: protocol.graph(),
        };
        tracing::info!("slave: service {} at {addr}", protocol.name);
        self.local
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(protocol.name.to_string(), entry);
    }

    /// The port clients use to reach this locator (after binding port 0, the real one).
    pub fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::Relaxed);
    }

    /// Local or published services only (no gateway).
    fn resolve_here(&self, name: &str, seen_as: Option<IpAddr>) -> Option<Resolved> {
        if let Some(s) = self
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(Resolved {
                endpoints: vec![(advertised(s.addr.ip(), seen_as), s.addr.port())],
                version: s.version,
                graph: s.graph.clone(),
            });
        }
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub async fn resolve(&self, name: &str, seen_as: Option<IpAddr>) -> Result<Resolved, RpcError> {
        if let Some(gw) = &self.gateway {
            match gw.resolve(name).await {
                Ok(r) => return Ok(r),
                Err(e) => tracing::debug!("gateway resolve {name}: {e}"),
            }
        }
        self.resolve_here(name, seen_as)
            .ok_or_else(|| RpcError::not_found(format!("service {name:?} is not available")))
    }

    fn cluster(&self, seen_as: Option<IpAddr>) -> Value {
        let unspecified = IpAddr::from([0, 0, 0, 0]);
        let mut nodes = vec![(
            Value::from(self.uuid.as_str()),
            endpoint_to_value(
                &advertised(unspecified, seen_as),
                self.port.load(Ordering::Relaxed),
            ),
        )];
        if let Some(gw) = &self.gateway {
            for (uuid, (host, port)) in gw.live_nodes() {
                nodes.push((Value::from(uuid), endpoint_to_value(&host, port)));
            }
        }
        Value::Map(nodes)
    }

    fn publish(&self, args: &[Value]) -> Result<(), RpcError> {
        let bad = || {
            RpcError::invalid(format!(
                "publish takes (name, [[host, port]…], [version, graph]); got {}",
                Value::Array(args.to_vec())
            ))
        };
        let name = args.first().and_then(Value::as_str).ok_or_else(bad)?;
        let endpoints = args
            .get(1)
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(endpoint_from_value)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let meta = args.get(2).and_then(Value::as_array).ok_or_else(bad)?;
        let version = meta.first().and_then(Value::as_u64).ok_or_else(bad)?;
        let graph = meta.get(1).filter(|g| g.is_map()).ok_or_else(bad)?.clone();
        if endpoints.is_empty() {
            return Err(RpcError::invalid(format!(
                "publish {name:?} without endpoints"
            )));
        }
        let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
        if published.len() >= MAX_PUBLISHED && !published.contains_key(name) {
            return Err(RpcError::service(
                sosna_proto::slave::error::service::UNAVAILABLE,
                format!("{MAX_PUBLISHED} services are published here already"),
            ));
        }
        tracing::info!("slave: {name} published at {endpoints:?}");
        published.insert(
            name.to_string(),
            Resolved {
                endpoints,
                version,
                graph,
            },
        );
        Ok(())
    }
}

/// The host to advertise for a service bound at `bound`: itself when specific, else the
/// address the caller reached us at, else loopback.
fn advertised(bound: IpAddr, seen_as: Option<IpAddr>) -> String {
    if !bound.is_unspecified() {
        return bound.to_string();
    }
    seen_as
        .filter(|ip| !ip.is_unspecified())
        .map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string())
}

/// The locator as a service on the wire.
pub struct LocatorService(pub Arc<Locator>);

impl Service for LocatorService {
    fn protocol(&self) -> &'static Protocol {
        &LocatorMethod::PROTOCOL
    }

    /// Finding services is open to anyone; publishing one is not.
    fn open_to_strangers(&self, method: &'static Method) -> bool {
        !matches!(
            LocatorMethod::from_id(method.id),
            Some(LocatorMethod::Publish) | None
        )
    }

    fn invoke(&self, method: &'static Method, args: Vec<Value>, call: Call) {
        let seen_as = call.local_addr.map(|a| a.ip());
        let Some(m) = LocatorMethod::from_id(method.id) else {
            return;
        };
        let loc = &self.0;
        match m {
            LocatorMethod::Resolve => {
                let Some(name) = args.first().and_then(Value::as_str).map(str::to_string) else {
                    call.reply.error(RpcError::invalid(format!(
                        "resolve takes (name: str); got {}",
                        Value::Array(args)
                    )));
                    return;
                };
                // Local answers need no task; only the gateway may have to ask the network.
                if loc.gateway.is_none() {
                    let r = loc.resolve_here(&name, seen_as).ok_or_else(|| {
                        RpcError::not_found(format!("service {name:?} is not available"))
                    });
                    call.reply.result(r.map(resolved_args));
                    return;
                }
                let loc = loc.clone();
                tokio::spawn(async move {
                    let r = loc.resolve(&name, seen_as).await;
                    call.reply.result(r.map(resolved_args));
                });
            }
            LocatorMethod::Cluster => call.reply.value(vec![loc.cluster(seen_as)]),
            LocatorMethod::Publish => call.reply.result(loc.publish(&args).map(|()| vec![])),
            LocatorMethod::Uuid => call.reply.value(vec![Value::from(loc.uuid.as_str())]),
        }
    }
}

fn resolved_args(r: Resolved) -> Vec<Value> {
    vec![
        Value::Array(
            r.endpoints
                .iter()
                .map(|(h, p)| endpoint_to_value(h, *p))
                .collect(),
        ),
        Value::from(r.version),
        r.graph,
    ]
}

/// A random v4 uuid that never blocks: at boot the CRNG may not be seeded yet (the RNG
/// driver loads after READY), and getrandom(2) would wait for it. The kernel's own uuid
/// file answers at once.
fn fresh_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .ok()
        .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string()
}

/// A stable node id kept in `dir/uuid`, created on first use; a fresh one each start when
/// `dir`'s parent (the state directory) does not exist or is not writable.
pub fn node_uuid(dir: &std::path::Path) -> String {
    let path = dir.join("uuid");
    if dir.parent().is_some_and(|p| !p.exists()) {
        tracing::debug!("slave: no state directory for {}", path.display());
        return fresh_uuid();
    }
    if let Ok(s) = std::fs::read_to_string(&path) {
        if let Ok(u) = uuid::Uuid::parse_str(s.trim()) {
            return u.to_string();
        }
    }
    let u = fresh_uuid();
    let write = std::fs::create_dir_all(dir).and_then(|()| {
        sosna_durable::write_atomic(&path, u.as_bytes(), sosna_durable::Durability::Synced)
    });
    if let Err(e) = write {
        tracing::warn!("slave: cannot keep node uuid in {}: {e}", path.display());
    }
    u
}
