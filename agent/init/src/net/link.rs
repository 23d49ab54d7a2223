//! Interface discovery (sysfs) and configuration (rtnetlink).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::NetError;

/// An interface as sysfs shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

const SYS_NET: &str = "/sys/class/net";

fn read_iface(name: &str) -> Option<Iface> {
    let dir = Path::new(SYS_NET).join(name);
    let index = std::fs::read_to_string(dir.join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let mac = parse_mac(std::fs::read_to_string(dir.join("address")).ok()?.trim())?;
    Some(Iface {
        name: name.to_owned(),
        index,
        mac,
    })
}

fn is_physical_ethernet(name: &str) -> bool {
    let dir = Path::new(SYS_NET).join(name);
    // type 1 = ARPHRD_ETHER; a `device` link means real hardware, not a bridge or veth.
    std::fs::read_to_string(dir.join("type")).is_ok_and(|t| t.trim() == "1")
        && dir.join("device").exists()
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Waits until the named interface (or, when `name` is empty, the first physical
/// ethernet device by index) exists.
pub async fn wait_for_uplink(name: &str, timeout: Duration) -> Result<Iface, NetError> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = if name.is_empty() {
            let mut all: Vec<Iface> = std::fs::read_dir(SYS_NET)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_physical_ethernet(n))
                .filter_map(|n| read_iface(&n))
                .collect();
            all.sort_by_key(|i| i.index);
            all.into_iter().next()
        } else {
            read_iface(name)
        };
        if let Some(iface) = found {
            return Ok(iface);
        }
        if Instant::now() >= deadline {
            return Err(NetError::NoUplink {
                wanted: if name.is_empty() {
                    "any ethernet device".into()
                } else {
                    name.into()
                },
                waited: timeout,
            });
        }
        // Drivers register devices asynchronously after their module loads.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn loopback_index() -> Result<u32, NetError> {
    read_iface("lo")
        .map(|i| i.index)
        .ok_or(NetError::NoLoopback)
}

/// rtnetlink operations the agent needs.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket; its connection task runs on the current tokio runtime.
    pub fn connect() -> Result<Netlink, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn link_up(&self, index: u32) -> Result<(), NetError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetError::Netlink("set link up", e))
    }

    /// Adds (or refreshes) an address on an interface.
    pub async fn add_address(
        &self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(addr), prefix)
            .replace()
            .execute()
            .await
            .map_err(|e| NetError::Netlink("add address", e))
    }

    pub async fn default_route(&self, index: u32, gateway: Ipv4Addr) -> Result<(), NetError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(index)
            .gateway(gateway)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| NetError::Netlink("add default route", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("52:54:00:12:34:5f"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x5f])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:5f:00"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:5f"), None);
    }

    #[test]
    fn loopback_exists_on_any_linux() {
        assert!(loopback_index().unwrap() > 0);
    }
}
