//! Network bring-up for PID 1: loopback, then the uplink by DHCP or static config, and
//! DHCP lease renewal for as long as the agent runs.

pub mod dhcp;
mod link;

use std::net::Ipv4Addr;
use std::time::Duration;

pub use dhcp::{DhcpError, Lease};
pub use link::{parse_mac, wait_for_uplink, Iface, Netlink};

mod settings;

pub use settings::{parse_cidr, CidrError, LinkConfig, NetworkConfig, UplinkMode};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("open netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink {0}: {1}")]
    Netlink(&'static str, rtnetlink::Error),
    #[error("no loopback device")]
    NoLoopback,
    #[error("no uplink: {wanted} did not appear within {waited:?}")]
    NoUplink { wanted: String, waited: Duration },
    #[error("DHCP on {iface}: {source}")]
    Dhcp { iface: String, source: DhcpError },
    #[error("static address: {0}")]
    Static(#[from] CidrError),
    #[error("write {path}: {source}")]
    Resolv {
        path: &'static str,
        source: std::io::Error,
    },
}

/// Where DNS servers are written; the image's /etc/resolv.conf links here so the root
/// filesystem can stay read-only.
pub const RESOLV_CONF: &str = "/run/sosna/resolv.conf";

/// The configured uplink, for logs and for the lease keeper.
#[derive(Debug, Clone)]
pub struct Uplink {
    pub iface: Iface,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub lease: Option<Lease>,
}

/// Brings up loopback. Needed even with networking off: local services listen there.
pub async fn loopback_up(nl: &Netlink) -> Result<(), NetError> {
    nl.link_up(link::loopback_index()?).await
}

/// Configures `iface` as the uplink: DHCP or the static address. Not for `mode = "off"`.
pub async fn uplink_up(
    nl: &Netlink,
    cfg: &NetworkConfig,
    iface: Iface,
) -> Result<Uplink, NetError> {
    nl.link_up(iface.index).await?;
    if cfg.mode == UplinkMode::Static {
        let (address, prefix) = parse_cidr(&cfg.address).map_err(NetError::Static)?;
        apply(nl, &iface, address, prefix, cfg.gateway, &cfg.dns).await?;
        return Ok(Uplink {
            address,
            prefix,
            gateway: cfg.gateway,
            lease: None,
            iface,
        });
    }
    let lease = dhcp::acquire(
        &iface.name,
        iface.mac,
        None,
        Duration::from_secs(cfg.dhcp_timeout_secs),
    )
    .await
    .map_err(|source| NetError::Dhcp {
        iface: iface.name.clone(),
        source,
    })?;
    apply(
        nl,
        &iface,
        lease.address,
        lease.prefix,
        lease.router,
        &lease.dns,
    )
    .await?;
    Ok(Uplink {
        address: lease.address,
        prefix: lease.prefix,
        gateway: lease.router,
        lease: Some(lease),
        iface,
    })
}

/// Brings up an extra interface with its static address and no route beyond its subnet.
pub async fn static_link_up(
    nl: &Netlink,
    link: &LinkConfig,
    timeout: Duration,
) -> Result<(), NetError> {
    let (address, prefix) = parse_cidr(&link.address).map_err(NetError::Static)?;
    let iface = wait_for_uplink(&link.interface, timeout).await?;
    nl.link_up(iface.index).await?;
    nl.add_address(iface.index, address, prefix).await
}

async fn apply(
    nl: &Netlink,
    iface: &Iface,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    dns: &[Ipv4Addr],
) -> Result<(), NetError> {
    nl.add_address(iface.index, address, prefix).await?;
    if let Some(gw) = gateway {
        nl.default_route(iface.index, gw).await?;
    }
    write_resolv_conf(dns)
}

fn write_resolv_conf(dns: &[Ipv4Addr]) -> Result<(), NetError> {
    let text: String = dns.iter().map(|s| format!("nameserver {s}\n")).collect();
    let err = |source| NetError::Resolv {
        path: RESOLV_CONF,
        source,
    };
    // Atomic so a reader never sees half a file; /run does not outlive the boot anyway.
    let path = std::path::Path::new(RESOLV_CONF);
    sosna_durable::write_atomic(path, text.as_bytes(), sosna_durable::Durability::Atomic)
        .map_err(err)
}

/// Renews a DHCP lease at T1 for as long as it runs; on failure retries at half the
/// remaining time, and keeps asking after expiry.
pub async fn keep_lease(nl: Netlink, uplink: Uplink, timeout: Duration) {
    let Some(mut lease) = uplink.lease else {
        return;
    };
    let iface = uplink.iface;
    let mut wait = lease.renew_after;
    loop {
        tokio::time::sleep(wait.max(Duration::from_secs(5))).await;
        match dhcp::acquire(&iface.name, iface.mac, Some(lease.address), timeout).await {
            Ok(new) => {
                if let Err(e) =
                    apply(&nl, &iface, new.address, new.prefix, new.router, &new.dns).await
                {
                    tracing::warn!("applying renewed lease: {e}");
                }
                if new.address != lease.address {
                    tracing::warn!(old = %lease.address, new = %new.address, "DHCP gave a new address");
                }
                wait = new.renew_after;
                lease = new;
            }
            Err(e) => {
                wait = (wait / 2).max(Duration::from_secs(60));
                tracing::warn!(iface = %iface.name, "DHCP renewal failed: {e}; retrying in {wait:?}");
            }
        }
    }
}
