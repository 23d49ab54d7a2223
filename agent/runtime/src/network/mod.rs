//! Container networking for `network = "nat"`: a veth pair per container (host side
//! `sx<id>`, container side `eth0`) addressed with a /30 out of [`POOL`], and one nftables
//! table (`ip sosna`) per host that masquerades the pool out of the uplink while keeping
//! containers away from the host itself and from private networks.
//!
//! The agent allocates the addresses and installs the table; the shim wires the veth into
//! the container's namespace between create and start, and removes it in its teardown.
//!
//! nftables is spoken over raw nfnetlink by [`nft`], a small encoder written here: the
//! full client crates bind C libnftnl/libmnl (Debian ships no static libmnl) or are
//! GPL-3.0 (`rustables`; this project is Apache-2.0), and the pure-Rust codec
//! `netlink-packet-netfilter` (0.4) has no `ct` or `masq` expressions, both of which the
//! ruleset needs.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use serde::{Deserialize, Serialize};

/// Container addresses come from here, one /30 per container.
pub const POOL: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 0);
pub const POOL_PREFIX: u8 = 16;
const SLOT_PREFIX: u8 = 30;
/// Host-side veth names start with this; the firewall matches on it.
pub const HOST_IF_PREFIX: &str = "sx";
/// Used when the host names no usable IPv4 nameserver.
pub const FALLBACK_DNS: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);
/// Destinations a container may not reach through the host (besides the host itself).
const PRIVATE: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
];

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("netlink socket: {0}")]
    Socket(io::Error),
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        source: rtnetlink::Error,
    },
    #[error("no link {0}")]
    NoLink(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("no free /30 left in 10.89.0.0/16")]
    PoolExhausted,
    #[error("resolv.conf mount: {0}")]
    Mount(#[from] oci_spec::OciSpecError),
    #[error("nftables: {op}: {source}")]
    Nftables { op: String, source: io::Error },
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let op = op.into();
    move |source| NetworkError::Netlink { op, source }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// One container's link: written into its plan by the agent, carried out by the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatPlan {
    /// Host side of the veth; the container side is `eth0`.
    pub host_if: String,
    /// The host side's address: the container's gateway.
    pub host_addr: Ipv4Addr,
    pub container_addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl NatPlan {
    /// The container side's name on the host, before it moves into the container.
    fn peer_if(&self) -> String {
        let tail = self.host_if.get(2..).unwrap_or(&self.host_if);
        format!("sy{tail}")
    }
}

/// The /30 for container `id`: where its id hashes to in the pool, or the next free one
/// after it. `taken` are addresses in use on the host or planned for other containers.
pub fn allocate(id: &str, taken: &[Ipv4Addr]) -> Result<NatPlan, NetworkError> {
    let slots = 1u32 << (SLOT_PREFIX - POOL_PREFIX);
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let start = id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    }) % slots;
    let base = u32::from(POOL);
    let block = |a: &Ipv4Addr| u32::from(*a) & !3;
    for i in 0..slots {
        let net = base + ((start + i) % slots) * 4;
        if taken.iter().any(|a| block(a) == net) {
            continue;
        }
        let short: String = id.chars().take(8).collect();
        return Ok(NatPlan {
            host_if: format!("{HOST_IF_PREFIX}{short}"),
            host_addr: Ipv4Addr::from(net + 1),
            container_addr: Ipv4Addr::from(net + 2),
            prefix_len: SLOT_PREFIX,
        });
    }
    Err(NetworkError::PoolExhausted)
}

/// IPv4 nameservers from a resolv.conf a container can use: loopback ones (a local stub
/// resolver) are unreachable from its namespace.
pub fn nameservers(resolv_conf: &str) -> Vec<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .take(3)
        .collect();
    if found.is_empty() {
        found.push(FALLBACK_DNS);
    }
    found
}

pub fn resolv_conf(servers: &[Ipv4Addr]) -> String {
    servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect()
}

/// Bind-mounts `path` read-only at the container's /etc/resolv.conf.
pub fn add_resolv_mount(
    spec: &mut oci_spec::runtime::Spec,
    path: &Path,
) -> Result<(), NetworkError> {
    let mount = oci_spec::runtime::MountBuilder::default()
        .destination("/etc/resolv.conf")
        .typ("bind")
        .source(path)
        .options(
            ["rbind", "ro", "nosuid", "nodev", "noexec"]
                .map(String::from)
                .to_vec(),
        )
        .build()?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

fn connect() -> Result<Handle, NetworkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
    tokio::spawn(conn);
    Ok(handle)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, NetworkError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("tokio runtime"))?;
    Ok(rt.block_on(f))
}

/// Every IPv4 address configured on the host (for [`allocate`]'s collision check).
pub async fn host_ipv4_addrs() -> Result<Vec<Ipv4Addr>, NetworkError> {
    let handle = connect()?;
    let mut out = Vec::new();
    let mut s = handle.address().get().execute();
    while let Some(msg) = s.try_next().await.map_err(nl("list addresses"))? {
        for attr in msg.attributes {
            if let AddressAttribute::Address(IpAddr::V4(a))
            | AddressAttribute::Local(IpAddr::V4(a)) = attr
            {
                out.push(a);
            }
        }
    }
    Ok(out)
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut s = handle.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers a lookup of a missing name with ENODEV.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("look up link {name}"))(e)),
    }
}

async fn need_index(handle: &Handle, name: &str) -> Result<u32, NetworkError> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| NetworkError::NoLink(name.into()))
}

/// Names of the host's links (tests and diagnostics). Blocking, like [`attach`] and
/// [`detach`]: each runs its own small tokio runtime, so none may be called from async code.
pub fn host_links() -> Result<Vec<String>, NetworkError> {
    block_on(async {
        let handle = connect()?;
        let mut names = Vec::new();
        let mut s = handle.link().get().execute();
        while let Some(m) = s.try_next().await.map_err(nl("list links"))? {
            names.extend(m.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }));
        }
        Ok(names)
    })?
}

/// Wires the container whose network namespace is `netns` (e.g. `/proc/PID/ns/net`) to
/// the host: the veth pair, both addresses, `lo`, and a default route via the host side.
pub fn attach(plan: &NatPlan, netns: &Path) -> Result<(), NetworkError> {
    let ns = File::open(netns).map_err(io_err(format!("open {}", netns.display())))?;
    let peer = plan.peer_if();
    block_on(async {
        let handle = connect()?;
        handle
            .link()
            .add(LinkVeth::new(&plan.host_if, &peer).build())
            .execute()
            .await
            .map_err(nl(format!("create veth {}", plan.host_if)))?;
        let peer_index = need_index(&handle, &peer).await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(peer_index)
                    .setns_by_fd(ns.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("move {peer} into {}", netns.display())))?;
        let host_index = need_index(&handle, &plan.host_if).await?;
        disable_ipv6(&plan.host_if)?;
        handle
            .address()
            .add(host_index, plan.host_addr.into(), plan.prefix_len)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("address {}", plan.host_if)))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(host_index).up().build())
            .execute()
            .await
            .map_err(nl(format!("set {} up", plan.host_if)))
    })??;

    // A netlink socket belongs to the namespace it was opened in; open one there from a
    // thread of our own, so the shim's other threads stay in the host's namespace.
    let plan = plan.clone();
    std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd; it only affects this thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io_err("enter the container's network namespace")(
                io::Error::last_os_error(),
            ));
        }
        block_on(configure_inside(&plan, &peer))?
    })
    .join()
    .map_err(|_| io_err("configure eth0")(io::Error::other("thread panicked")))?
}

/// The firewall is IPv4-only, so the link must carry no IPv6 at all: not even link-local
/// addresses, through which the container could reach the host's services. Must run in
/// the link's namespace (/proc/sys/net is the reader's).
fn disable_ipv6(ifname: &str) -> Result<(), NetworkError> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    match std::fs::write(&path, "1") {
        // A kernel without IPv6 has nothing to disable.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound && !Path::new("/proc/sys/net/ipv6").exists() =>
        {
            Ok(())
        }
        r => r.map_err(io_err(format!("write {path}"))),
    }
}

async fn configure_inside(plan: &NatPlan, peer: &str) -> Result<(), NetworkError> {
    let handle = connect()?;
    let lo = need_index(&handle, "lo").await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(nl("set lo up"))?;
    let index = need_index(&handle, peer).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).name("eth0").build())
        .execute()
        .await
        .map_err(nl("rename the container's veth to eth0"))?;
    disable_ipv6("eth0")?;
    handle
        .address()
        .add(index, plan.container_addr.into(), plan.prefix_len)
        .execute()
        .await
        .map_err(nl("address eth0"))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl("set eth0 up"))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(index)
        .gateway(plan.host_addr)
        .build();
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(nl("add the default route"))
}

/// Removes the container's veth pair (the peer goes with it); gone already is fine.
pub fn detach(plan: &NatPlan) -> Result<(), NetworkError> {
    block_on(async {
        let handle = connect()?;
        for name in [plan.host_if.clone(), plan.peer_if()] {
            if let Some(index) = link_index(&handle, &name).await? {
                match handle.link().del(index).execute().await {
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                    r => r.map_err(nl(format!("delete {name}")))?,
                }
            }
        }
        Ok(())
    })?
}

/// [`ensure_nat`] with the nameservers of the host's /etc/resolv.conf, which it returns
/// for the containers' resolv.conf.
pub fn install_nat() -> Result<Vec<Ipv4Addr>, NetworkError> {
    let dns = nameservers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    ensure_nat(&dns)?;
    tracing::info!("container NAT installed; nameservers {dns:?}");
    Ok(dns)
}

/// A container's link, decided before it exists: addresses clear of the host's and of
/// `planned` (other containers'), and its resolv.conf written into `dir` and bind-mounted
/// by `spec`.
pub async fn prepare(
    id: &str,
    dir: &Path,
    spec: &mut oci_spec::runtime::Spec,
    dns: &[Ipv4Addr],
    mut planned: Vec<Ipv4Addr>,
) -> Result<NatPlan, NetworkError> {
    planned.extend(host_ipv4_addrs().await?);
    let plan = allocate(id, &planned)?;
    std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, resolv_conf(dns))
        .map_err(io_err(format!("write {}", resolv.display())))?;
    add_resolv_mount(spec, &resolv)?;
    Ok(plan)
}

/// Host-wide NAT, idempotent: IPv4 forwarding on, and the `ip sosna` table replaced in one
/// transaction (so a change of nameservers takes effect and nothing is half-installed).
pub fn ensure_nat(dns: &[Ipv4Addr]) -> Result<(), NetworkError> {
    let fwd = "/proc/sys/net/ipv4/ip_forward";
    std::fs::write(fwd, "1").map_err(io_err(format!("write {fwd}")))?;
    let batch = nat_ruleset(dns);
    nft::send(&batch)
}

/// Removes the `ip sosna` table (agent shutdown, tests); absent is fine.
pub fn remove_nat() -> Result<(), NetworkError> {
    let mut b = nft::Batch::begin();
    b.table(nft::NFT_MSG_NEWTABLE, TABLE);
    b.table(nft::NFT_MSG_DELTABLE, TABLE);
    nft::send(&b.finish())
}

/// Whether the `ip sosna` table is installed.
pub fn nat_installed() -> Result<bool, NetworkError> {
    match nft::send(&nft::get_table(TABLE)) {
        Ok(()) => Ok(true),
        Err(NetworkError::Nftables { source, .. })
            if source.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

const TABLE: &str = "sosna";

/// The whole `ip sosna` table as one nfnetlink batch:
///
/// ```text
/// chain postrouting { type nat hook postrouting priority 100;
///     ip saddr 10.89.0.0/16 ip daddr != 10.89.0.0/16 masquerade }
/// chain forward { type filter hook forward priority 0;
///     iifname "sx*" ip saddr != 10.89.0.0/16 drop       # no spoofing
///     iifname "sx*" ip daddr DNS accept                 # for each nameserver
///     iifname "sx*" ip daddr PRIVATE drop }              # for each private range
/// chain input { type filter hook input priority 0;
///     iifname "sx*" ct state established,related accept
///     iifname "sx*" ip daddr DNS accept
///     iifname "sx*" drop }
/// ```
pub fn nat_ruleset(dns: &[Ipv4Addr]) -> nft::Wire {
    use nft::Expr::*;
    let from_veth = || {
        vec![
            Meta(nft::NFT_META_IIFNAME),
            Cmp(nft::NFT_CMP_EQ, HOST_IF_PREFIX.as_bytes().to_vec()),
        ]
    };
    let net = |offset: u32, (addr, prefix): (Ipv4Addr, u8), op: u32| {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let mut e = vec![Payload(offset, 4)];
        if prefix < 32 {
            e.push(Bitwise(mask.to_be_bytes().to_vec()));
        }
        e.push(Cmp(op, (u32::from(addr) & mask).to_be_bytes().to_vec()));
        e
    };
    const SADDR: u32 = 12;
    const DADDR: u32 = 16;
    let pool = (POOL, POOL_PREFIX);

    let mut b = nft::Batch::begin();
    b.table(nft::NFT_MSG_NEWTABLE, TABLE);
    b.table(nft::NFT_MSG_DELTABLE, TABLE);
    b.table(nft::NFT_MSG_NEWTABLE, TABLE);

    b.chain(TABLE, "postrouting", "nat", nft::NF_INET_POST_ROUTING, 100);
    let mut masq = net(SADDR, pool, nft::NFT_CMP_EQ);
    masq.extend(net(DADDR, pool, nft::NFT_CMP_NEQ));
    masq.push(Masquerade);
    b.rule(TABLE, "postrouting", &masq);

    b.chain(TABLE, "forward", "filter", nft::NF_INET_FORWARD, 0);
    let mut spoof = from_veth();
    spoof.extend(net(SADDR, pool, nft::NFT_CMP_NEQ));
    spoof.push(Verdict(nft::NF_DROP));
    b.rule(TABLE, "forward", &spoof);
    for d in dns {
        let mut r = from_veth();
        r.extend(net(DADDR, (*d, 32), nft::NFT_CMP_EQ));
        r.push(Verdict(nft::NF_ACCEPT));
        b.rule(TABLE, "forward", &r);
    }
    for p in PRIVATE {
        let mut r = from_veth();
        r.extend(net(DADDR, *p, nft::NFT_CMP_EQ));
        r.push(Verdict(nft::NF_DROP));
        b.rule(TABLE, "forward", &r);
    }

    b.chain(TABLE, "input", "filter", nft::NF_INET_LOCAL_IN, 0);
    let mut est = from_veth();
    est.extend([
        CtState,
        Bitwise(nft::CT_ESTABLISHED_RELATED.to_ne_bytes().to_vec()),
        Cmp(nft::NFT_CMP_NEQ, 0u32.to_ne_bytes().to_vec()),
        Verdict(nft::NF_ACCEPT),
    ]);
    b.rule(TABLE, "input", &est);
    for d in dns {
        let mut r = from_veth();
        r.extend(net(DADDR, (*d, 32), nft::NFT_CMP_EQ));
        r.push(Verdict(nft::NF_ACCEPT));
        b.rule(TABLE, "input", &r);
    }
    let mut drop = from_veth();
    drop.push(Verdict(nft::NF_DROP));
    b.rule(TABLE, "input", &drop);
    b.finish()
}

pub mod nft;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_deterministic_in_the_pool_and_skips_taken_blocks() {
        let a = allocate("0123456789abcdef", &[]).unwrap();
        assert_eq!(a, allocate("0123456789abcdef", &[]).unwrap());
        assert_eq!(a.host_if, "sx01234567");
        assert_eq!(a.prefix_len, 30);
        let host = u32::from(a.host_addr);
        assert_eq!(host & 3, 1);
        assert_eq!(u32::from(a.container_addr), host + 1);
        assert_eq!(host >> 16, u32::from(POOL) >> 16);

        // Any address in the block makes it taken; the next block is used instead.
        let b = allocate("0123456789abcdef", &[Ipv4Addr::from(host + 2)]).unwrap();
        assert_eq!(
            u32::from(b.host_addr),
            ((host + 4) & 0xffff) | (host & 0xffff_0000)
        );
        assert_ne!(allocate("fedcba9876543210", &[]).unwrap(), a);

        // Wraps around the end of the pool, and says so when full.
        let all: Vec<Ipv4Addr> = (0..1u32 << 14)
            .map(|i| Ipv4Addr::from(u32::from(POOL) + i * 4))
            .collect();
        assert!(matches!(
            allocate("x", &all),
            Err(NetworkError::PoolExhausted)
        ));
        let free = Ipv4Addr::from(u32::from(POOL) + 1);
        let almost: Vec<Ipv4Addr> = all.into_iter().filter(|a| *a != POOL).collect();
        assert_eq!(allocate("x", &almost).unwrap().host_addr, free);
    }

    #[test]
    fn nameservers_skip_loopback_and_fall_back() {
        let text = "# c\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\n\
                    search x\nnameserver 9.9.9.9\n";
        assert_eq!(
            nameservers(text),
            vec![Ipv4Addr::new(10, 255, 255, 53), Ipv4Addr::new(9, 9, 9, 9)]
        );
        assert_eq!(nameservers("nameserver 127.0.0.53\n"), vec![FALLBACK_DNS]);
        assert_eq!(
            resolv_conf(&[FALLBACK_DNS]),
            "nameserver 1.1.1.1\n".to_string()
        );
    }

    #[test]
    fn expressions_encode_as_netlink_attributes() {
        let mut b = Vec::new();
        nft::encode_expr(&mut b, &nft::Expr::Cmp(nft::NFT_CMP_EQ, b"sx".to_vec()));
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // NFTA_LIST_ELEM, nested, 44 bytes
            &[44u8, 0, 1, 0x80][..],
            // NFTA_EXPR_NAME "cmp\0"
            &[8, 0, 1, 0], b"cmp\0",
            // NFTA_EXPR_DATA, nested
            &[32, 0, 2, 0x80],
            &[8, 0, 1, 0], &1u32.to_be_bytes(),          // sreg 1
            &[8, 0, 2, 0], &0u32.to_be_bytes(),          // op eq
            &[12, 0, 3, 0x80], &[6, 0, 1, 0], b"sx", &[0, 0], // data value, padded
        ]
        .concat();
        assert_eq!(b, want);

        let mut m = Vec::new();
        nft::encode_expr(&mut m, &nft::Expr::Masquerade);
        assert_eq!(
            m,
            [
                &[16u8, 0, 1, 0x80][..],
                &[9, 0, 1, 0],
                b"masq\0",
                &[0, 0, 0]
            ]
            .concat()
        );
    }

    #[test]
    fn ruleset_is_one_well_framed_batch() {
        let batch = nat_ruleset(&[Ipv4Addr::new(10, 255, 255, 53)]);
        let (wire, ops) = (&batch.bytes[..], &batch.ops);
        let mut msgs = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(len >= 20 && len % 4 == 0 && len <= rest.len());
            msgs.push(u16::from_ne_bytes(rest[4..6].try_into().unwrap()));
            rest = &rest[len..];
        }
        assert_eq!(msgs.first(), Some(&0x10), "batch begin");
        assert_eq!(msgs.last(), Some(&0x11), "batch end");
        assert_eq!(msgs.len(), ops.len() + 2);
        // add, delete, add the table; three chains; then rules.
        assert_eq!(&msgs[1..4], &[0xa00, 0xa02, 0xa00]);
        assert_eq!(msgs.iter().filter(|t| **t == 0xa03).count(), 3);
        let rules = msgs.iter().filter(|t| **t == 0xa06).count();
        // masq; spoof + dns + 6 private; established + dns + drop
        assert_eq!(rules, 1 + 1 + 1 + PRIVATE.len() + 3);
        assert!(ops.iter().any(|(_, w)| w == "add chain sosna forward"));
        // The nameserver is let through, as a /32 compare without a mask.
        assert!(wire
            .windows(4)
            .any(|w| w == Ipv4Addr::new(10, 255, 255, 53).octets()));
    }

    #[test]
    fn resolv_conf_is_bound_read_only() {
        let mut spec = oci_spec::runtime::Spec::default();
        let before = spec.mounts().as_ref().map_or(0, Vec::len);
        add_resolv_mount(&mut spec, Path::new("/c/resolv.conf")).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        assert_eq!(mounts.len(), before + 1);
        let m = mounts.last().unwrap();
        assert_eq!(m.destination(), Path::new("/etc/resolv.conf"));
        assert_eq!(m.source().as_deref(), Some(Path::new("/c/resolv.conf")));
        assert!(m.options().as_ref().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn acks_are_read_from_error_messages() {
        let mut d = Vec::new();
        for (seq, err) in [(3u32, 0i32), (4, -libc::EINVAL)] {
            d.extend_from_slice(&36u32.to_ne_bytes());
            d.extend_from_slice(&2u16.to_ne_bytes());
            d.extend_from_slice(&0u16.to_ne_bytes());
            d.extend_from_slice(&seq.to_ne_bytes());
            d.extend_from_slice(&0u32.to_ne_bytes());
            d.extend_from_slice(&err.to_ne_bytes());
            d.extend_from_slice(&[0; 16]);
        }
        assert_eq!(nft::acks(&d), vec![(3, 0), (4, -libc::EINVAL)]);
    }
}
