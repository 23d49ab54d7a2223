//! The P2P bus across a QEMU fleet: a hub VM and two miner VMs on one shared L2 segment,
//! anvil with the deployed contracts on the host. The miners find the hub by mDNS, check
//! it on chain, fetch its terms, and ask each other about it: the miner the hub paid finds
//! it `safe` and vouches for it, which makes it `checked` for the other.

use std::time::Duration;

use alloy_primitives::{Address, U256};
use sosna_contracts::devnet::{Devnet, SNM};
use sosna_qemu_tests::{Image, Lan, Overlay, Vm, VmConfig};

const BOOT: Duration = Duration::from_secs(120);
const TRUST: Duration = Duration::from_secs(240);

/// Prints the hub book once it lists a hub at `trust` or better, between markers.
fn hub_book_service(trust_pattern: &str) -> String {
    format!(
        r#"
[[service]]
name = "hubs"
command = ["/bin/busybox", "sh", "-c", "until /sbin/sosna hubs | grep -q -E '{trust_pattern}'; do sleep 1; done; echo HUBS-BEGIN; /sbin/sosna hubs; echo HUBS-END"]
restart = "never"
"#
    )
}

fn book_listing(vm: &mut Vm, who: &str) -> String {
    let text = vm
        .wait_until(&format!("{who}'s hub book"), TRUST, |t| {
            t.contains("HUBS-END")
        })
        .unwrap();
    let start = text.find("HUBS-BEGIN").expect("begin marker before end");
    let end = text.find("HUBS-END").unwrap();
    // The agent logs to the same console: its lines ("[  9.954] sosna: …") may land
    // between the table's and mention the same hub.
    text[start..end]
        .lines()
        .filter(|l| !l.starts_with('['))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The Ethereum address a node's bus logged at start.
fn bus_address(vm: &mut Vm, who: &str) -> Address {
    // The console may be cut anywhere, even mid-address: wait for all 40 digits.
    let logged = |t: &str| -> Option<Address> {
        let line = t.lines().find(|l| l.contains("bus: started as"))?;
        let hex = line.split(" address 0x").nth(1)?.get(..40)?;
        format!("0x{hex}").parse().ok()
    };
    let text = vm
        .wait_until(&format!("{who}'s bus to start"), BOOT, |t| {
            logged(t).is_some()
        })
        .unwrap();
    logged(&text).unwrap()
}

#[test]
fn test_miners_on_a_shared_segment_find_the_hub_checked() {
    let image = Image::built().unwrap();
    let lan = Lan::new().unwrap();
    let chain = Devnet::start(3).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hub_key = chain.keys[1].clone();
    let wallet = rt
        .block_on(chain.register_hub(
            &hub_key,
            "/ip4/10.77.0.1/tcp/4001",
            "qemu-hub",
            U256::from(100 * SNM),
        ))
        .unwrap();

    // The hub: its owner key provisioned, its wallet named, announcing every 2 s on the
    // segment. Every VM also has a user-network uplink to reach anvil on the host.
    let hub_config = format!(
        r#"
role = "hub"
[[network.link]]
interface = "eth1"
address = "10.77.0.1/24"
[bus]
enabled = true
listen = ["/ip4/10.77.0.1/tcp/4001"]
[bus.hub]
wallet = "{wallet}"
name = "qemu-hub"
announce_interval_secs = 2
cpu_core_hour = 5000
memory_gib_hour = 1000
min_payout = 1000000
"#
    );
    let hub_overlay = Overlay::default()
        .file("/etc/sosna/config.toml", 0o644, hub_config)
        .file(
            "/var/lib/sosna/bus/eth.key",
            0o600,
            hub_key.to_bytes().to_vec(),
        );
    let mut hub = Vm::boot(
        VmConfig::new(image.clone())
            .overlay(hub_overlay)
            .on_lan(&lan)
            .append("sosna.fatal_delay=1"),
    )
    .unwrap();
    assert_eq!(bus_address(&mut hub, "the hub"), hub_key.address());

    // Miners: strict whitelist, one other miner's word is enough to make a hub checked.
    let miner_config = |n: u8| {
        format!(
            r#"
[[network.link]]
interface = "eth1"
address = "10.77.0.{n}/24"
[chain]
rpc_url = "{rpc}"
deployment = "/etc/sosna/deployment.json"
[bus]
enabled = true
listen = ["/ip4/10.77.0.{n}/tcp/4001"]
min_positive_verdicts = 1
chain_poll_secs = 2
ask_every_secs = 4
{service}"#,
            rpc = chain.guest_rpc_url(),
            service = hub_book_service(" (checked|safe) "),
        )
    };
    let miner = |n: u8| {
        let overlay = Overlay::default()
            .file("/etc/sosna/config.toml", 0o644, miner_config(n))
            .file(
                "/etc/sosna/deployment.json",
                0o644,
                chain.deployment_json.clone(),
            )
            .busybox(image.arch)
            .unwrap();
        let vm = VmConfig::new(image.clone())
            .overlay(overlay)
            .on_lan(&lan)
            .append("sosna.fatal_delay=1");
        Vm::boot(vm).unwrap()
    };
    let mut paid = miner(2);
    let mut newcomer = miner(3);

    // The hub pays one miner as agreed: that miner's own experience makes the hub safe.
    let paid_address = bus_address(&mut paid, "the paid miner");
    let newcomer_address = bus_address(&mut newcomer, "the newcomer");
    assert_ne!(paid_address, newcomer_address);
    rt.block_on(chain.pay(&hub_key, wallet, paid_address, U256::from(2 * SNM)))
        .unwrap();

    let listing = book_listing(&mut paid, "the paid miner");
    println!("the paid miner's hub book:\n{listing}");
    let row = listing
        .lines()
        .find(|l| l.contains(&wallet.to_string()))
        .unwrap_or_else(|| panic!("the paid miner does not list {wallet}:\n{listing}"));
    assert!(row.contains("qemu-hub") && row.contains(" safe "), "{row}");
    assert!(row.contains("as agreed"), "{row}");

    // The newcomer was never paid: only the paid miner's answer can make the hub checked.
    let listing = book_listing(&mut newcomer, "the newcomer");
    println!("the newcomer's hub book:\n{listing}");
    let row = listing
        .lines()
        .find(|l| l.contains(&wallet.to_string()))
        .unwrap_or_else(|| panic!("the newcomer does not list {wallet}:\n{listing}"));
    assert!(row.contains(" checked "), "{row}");
    assert!(row.contains("1 miners vouched, 0 warned"), "{row}");
    drop(hub);
}
