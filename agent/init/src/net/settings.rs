//! The host network's settings: the `[network]` section of the provisioning file.

use std::net::Ipv4Addr;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Lease an address with DHCP (QEMU user networking, most LANs).
    Dhcp,
    /// Use `address`, `gateway` and `dns` as given.
    Static,
    /// Leave the uplink down (loopback only).
    Off,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// `dhcp`, `static` or `off`.
    pub mode: NetworkMode,
    /// Uplink interface name; empty picks the first ethernet device.
    pub interface: String,
    /// Static address in CIDR form, e.g. `192.168.1.20/24` (static mode only).
    pub address: String,
    /// Static default gateway (static mode only; optional).
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers for static mode; DHCP mode uses the servers the lease names.
    pub dns: Vec<Ipv4Addr>,
    /// How long to wait for the uplink device to appear, in seconds.
    pub link_timeout_secs: u64,
    /// How long one DHCP exchange may take before boot goes on without an address, in seconds.
    pub dhcp_timeout_secs: u64,
    /// More interfaces with a static address and no default route, e.g. a rig's LAN
    /// beside its uplink.
    #[serde(rename = "link")]
    pub links: Vec<LinkConfig>,
}

/// One extra interface: `[[network.link]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub interface: String,
    /// CIDR form, e.g. `10.77.0.2/24`.
    pub address: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: NetworkMode::Dhcp,
            interface: String::new(),
            address: String::new(),
            gateway: None,
            dns: Vec::new(),
            link_timeout_secs: 5,
            dhcp_timeout_secs: 10,
            links: Vec::new(),
        }
    }
}

/// Parses `a.b.c.d/len` into an address and prefix length.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not CIDR (expected a.b.c.d/len)"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("{len:?} is not a prefix length 0-32"))?;
    Ok((addr, len))
}
