//! What PID 1 reads before anything else runs: the kernel's text, the image's module
//! lists, the operator's config, DHCP replies from the LAN and the partition tables of
//! whatever disks are attached.

use sosna_init::boot::gpt::read_table_from;
use sosna_init::kmod::{parse_list, DepGraph};
use sosna_init::net::dhcp::{lease_from_ack, Transaction};
use sosna_init::{cmdline::BootArgs, mounts::mount_points};

/// The kernel command line and /proc/self/mountinfo.
pub fn boot_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = BootArgs::parse(&text);
    let _ = mount_points(&text);
}

/// Provisioning files: any bytes give a Config or an error.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sosna::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
    }
}

/// modules.dep, a NUL, then the image's module list: parse, then order every listed module.
pub fn modules_dep(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (dep, list) = text.split_once('\0').unwrap_or((&text, "a\nb"));
    if let Ok(graph) = DepGraph::parse(dep) {
        let _ = graph.load_order(&parse_list(list));
    }
}

/// A DHCP datagram from any host on the LAN. The transaction takes its xid and MAC from
/// the reply itself, so every decodable reply reaches the lease checks.
pub fn dhcp_reply(data: &[u8]) {
    let xid = data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let mut mac = [0u8; 6];
    if let Some(b) = data.get(28..34) {
        mac.copy_from_slice(b);
    }
    let tx = Transaction::new(xid, mac);
    if let Ok(Some((_, msg))) = tx.parse_reply(data) {
        let _ = lease_from_ack(&msg);
    }
}

/// The start of a disk: a GPT header in LBA 1 (512- or 4096-byte sectors) and its entries.
pub fn gpt_table(data: &[u8]) {
    let mut disk = std::io::Cursor::new(data);
    if let Ok(Some(parts)) = read_table_from(&mut disk) {
        // At most 1024 entries are read, and only non-empty ones are listed.
        assert!(parts.len() <= 1024, "{} partitions", parts.len());
    }
}
