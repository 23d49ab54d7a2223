//! The `[bus]` section of the provisioning file, and how it becomes the bus's settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::Address;
use libp2p::Multiaddr;
use serde::Deserialize;

use sosna_bus::{peer_of, SwarmSettings};
use sosna_market::hub::announce::HubSettings;
use sosna_market::miner::hubbook::{Capacity, BOOK_FILE};
use sosna_market::miner::join::MinerSettings;
use sosna_proto::bus::messages::{Agreement, PriceSchedule};

/// Subdirectory of the agent's state directory holding keys and the hub book.
pub const STATE_SUBDIR: &str = "bus";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// Run the P2P bus.
    pub enabled: bool,
    /// Multiaddrs to listen on (TCP and QUIC).
    pub listen: Vec<String>,
    /// Peers to dial at start and seed kademlia with; each ends in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// Miners: accept only hubs listed in the Whitelist contract.
    pub strict_whitelist: bool,
    /// How many blocks back a hub's payouts are read.
    pub payout_lookback_blocks: u64,
    /// Miners: distinct positive verdicts from other miners that make a hub `checked`.
    pub min_positive_verdicts: u32,
    /// Miners: hub wallet to work for; empty chooses by expected profit x trust.
    pub join: String,
    /// Miners: seconds between two reads of the chain for payouts, and between join attempts.
    pub chain_poll_secs: u64,
    /// Miners: least seconds between two reputation questions about the same hub.
    pub ask_every_secs: u64,
    /// Miners with a chain: micro-SNM kept staked with Verification, the bond a proven
    /// wrong result forfeits. Hubs take no miner staked below their `min_stake`.
    pub stake: u64,
    /// Hubs: least micro-SNM a miner must have staked to join and be offered work.
    /// Miners: least stake another miner needs for its verdicts on hubs to count (miners a
    /// hub paid count regardless). Above 0: a key made for free earns nothing.
    pub min_stake: u64,
    /// Test images only (the `fault-injection` feature): report a forged result for every
    /// task (a cheating miner). Images built for users reject the field as unknown.
    #[cfg(feature = "fault-injection")]
    pub test_fault_wrong_result: bool,
    pub hub: HubConfig,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            enabled: false,
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            strict_whitelist: true,
            payout_lookback_blocks: 200_000,
            min_positive_verdicts: 2,
            join: String::new(),
            chain_poll_secs: 15,
            ask_every_secs: 60,
            stake: 1_000_000,
            min_stake: 1_000_000,
            #[cfg(feature = "fault-injection")]
            test_fault_wrong_result: false,
            hub: HubConfig::default(),
        }
    }
}

/// What a hub announces and offers (role = "hub" only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// The hub's HubWallet address; its owner must be this node's key (`sosna bus-id`).
    pub wallet: String,
    /// Name shown to miners; empty uses the hostname.
    pub name: String,
    /// Multiaddrs to announce; empty announces the listen addresses.
    pub announce: Vec<String>,
    pub announce_interval_secs: u64,
    /// Prices paid to miners per hour, in micro-SNM.
    pub cpu_core_hour: u64,
    pub memory_gib_hour: u64,
    pub gpu_hour: u64,
    /// Smallest payout the hub makes, in micro-SNM.
    pub min_payout: u64,
    pub payout_every_secs: u64,
    /// Percent of each deal's price paid to the miners whose results agreed.
    pub miner_share_percent: u8,
    /// Longest a task may take from dispatch to decision, in seconds.
    pub task_timeout_secs: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            wallet: String::new(),
            name: String::new(),
            announce: Vec::new(),
            announce_interval_secs: 30,
            cpu_core_hour: 0,
            memory_gib_hour: 0,
            gpu_hour: 0,
            min_payout: 1_000_000,
            payout_every_secs: 86_400,
            miner_share_percent: 70,
            task_timeout_secs: 600,
        }
    }
}

fn multiaddrs(
    field: &'static str,
    list: &[String],
) -> Result<Vec<Multiaddr>, (&'static str, String)> {
    list.iter()
        .map(|a| a.parse().map_err(|e| (field, format!("{a:?}: {e}"))))
        .collect()
}

fn address(field: &'static str, text: &str) -> Result<Option<Address>, (&'static str, String)> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| (field, format!("{text:?} is not an address: {e}")))
}

impl BusConfig {
    /// Checks the section; the error names the field (`bus.` prefixed) and the reason.
    pub fn validate(&self, hub_role: bool) -> Result<(), (&'static str, String)> {
        multiaddrs("bus.listen", &self.listen)?;
        for addr in multiaddrs("bus.bootstrap", &self.bootstrap)? {
            if peer_of(&addr).is_none() {
                return Err(("bus.bootstrap", format!("{addr} has no /p2p/<peer id>")));
            }
        }
        address("bus.join", &self.join)?;
        if self.min_stake == 0 {
            return Err((
                "bus.min_stake",
                "0 would let any key made for free take work and vouch for hubs".into(),
            ));
        }
        if self.min_positive_verdicts == 0 {
            return Err(("bus.min_positive_verdicts", "must be at least 1".into()));
        }
        if self.chain_poll_secs == 0 {
            return Err(("bus.chain_poll_secs", "must be at least 1".into()));
        }
        if self.ask_every_secs == 0 {
            return Err(("bus.ask_every_secs", "must be at least 1".into()));
        }
        multiaddrs("bus.hub.announce", &self.hub.announce)?;
        if self.hub.announce_interval_secs == 0 {
            return Err((
                "bus.hub.announce_interval_secs",
                "must be at least 1".into(),
            ));
        }
        if self.hub.miner_share_percent > 100 {
            return Err(("bus.hub.miner_share_percent", "must be 0..=100".into()));
        }
        if self.hub.task_timeout_secs == 0 {
            return Err(("bus.hub.task_timeout_secs", "must be at least 1".into()));
        }
        let wallet = address("bus.hub.wallet", &self.hub.wallet)?;
        if self.enabled && hub_role && wallet.is_none() {
            return Err(("bus.hub.wallet", "a hub needs its HubWallet address".into()));
        }
        Ok(())
    }

    /// Directory for keys and the hub book.
    pub fn state_dir(state_dir: &Path) -> PathBuf {
        state_dir.join(STATE_SUBDIR)
    }

    pub fn swarm(&self) -> SwarmSettings {
        SwarmSettings {
            listen: multiaddrs("", &self.listen).unwrap_or_default(),
            bootstrap: multiaddrs("", &self.bootstrap).unwrap_or_default(),
            mdns: self.mdns,
            ..SwarmSettings::default()
        }
    }

    pub fn miner(&self, state_dir: &Path) -> MinerSettings {
        MinerSettings {
            strict_whitelist: self.strict_whitelist,
            min_positive_verdicts: self.min_positive_verdicts as usize,
            join: address("", &self.join).ok().flatten(),
            resources: Capacity::detect(),
            poll: Duration::from_secs(self.chain_poll_secs),
            ask_every: Duration::from_secs(self.ask_every_secs),
            book_path: Self::state_dir(state_dir).join(BOOK_FILE),
            min_voice_stake: self.min_stake_wei(),
        }
    }

    /// `min_stake` in SNM wei.
    pub fn min_stake_wei(&self) -> alloy_primitives::U256 {
        alloy_primitives::U256::from(self.min_stake)
            * alloy_primitives::U256::from(sosna_proto::bus::messages::MICRO_SNM_WEI)
    }

    pub fn hub(&self, default_name: &str) -> HubSettings {
        let h = &self.hub;
        HubSettings {
            wallet: address("", &h.wallet).ok().flatten().unwrap_or_default(),
            name: if h.name.is_empty() {
                default_name.into()
            } else {
                h.name.clone()
            },
            announce: h.announce.clone(),
            interval: Duration::from_secs(h.announce_interval_secs),
            agreement: Agreement {
                prices: PriceSchedule {
                    cpu_core_hour: h.cpu_core_hour,
                    memory_gib_hour: h.memory_gib_hour,
                    gpu_hour: h.gpu_hour,
                },
                min_payout_usnm: h.min_payout,
                payout_every_secs: h.payout_every_secs,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Role};
    use std::path::Path;

    #[test]
    fn test_hub_and_miner_with_static_bootstrap_parse() {
        // The shape a fleet test provisions: one hub, miners bootstrapping from it.
        let hub = Config::parse(
            r#"
role = "hub"
[bus]
enabled = true
mdns = false
listen = ["/ip4/0.0.0.0/tcp/4001"]
[bus.hub]
wallet = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
announce = ["/ip4/10.0.2.10/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
cpu_core_hour = 5000
"#,
            Path::new("hub.toml"),
        )
        .unwrap();
        assert_eq!(hub.role, Role::Hub);
        let settings = hub.bus.hub("rig");
        assert_eq!(settings.agreement.prices.cpu_core_hour, 5000);
        assert_eq!(settings.name, "rig");
        assert!(!settings.wallet.is_zero());

        let miner = Config::parse(
            r#"
[bus]
enabled = true
bootstrap = ["/ip4/10.0.2.10/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
strict_whitelist = false
"#,
            Path::new("miner.toml"),
        )
        .unwrap();
        let swarm = miner.bus.swarm();
        assert_eq!(swarm.bootstrap.len(), 1);
        assert_eq!(swarm.listen.len(), 2);
        assert!(
            !miner
                .bus
                .miner(Path::new("/var/lib/sosna"))
                .strict_whitelist
        );
    }
}
