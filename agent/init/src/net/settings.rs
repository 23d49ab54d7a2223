//! The host network's settings: the `[network]` section of the provisioning file.

use std::net::Ipv4Addr;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UplinkMode {
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
    pub mode: UplinkMode,
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
            mode: UplinkMode::Dhcp,
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

/// What is wrong with an address in CIDR form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not CIDR (expected a.b.c.d/len)")]
    NotCidr(String),
    #[error("{0:?} is not an IPv4 address")]
    Address(String),
    #[error("{0:?} is not a prefix length 0-32")]
    Prefix(String),
}

/// Parses `a.b.c.d/len` into an address and prefix length.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), CidrError> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| CidrError::NotCidr(text.to_owned()))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| CidrError::Address(addr.to_owned()))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| CidrError::Prefix(len.to_owned()))?;
    Ok((addr, len))
}
