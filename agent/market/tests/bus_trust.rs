//! The miners' trust flow end to end over in-process swarms: a whitelisted hub goes
//! `not-confirmed → checked → safe` at a new miner once paid miners vouch for it and it pays
//! the new miner too, while an unlisted hub stays `ignored` in strict mode.
//!
//! Runs against a scripted chain always, and against anvil with the deployed contracts when
//! `SOSNA_ANVIL_RPC` is set (contracts/ci.sh sets it, with `SOSNA_DEPLOYMENT_JSON` and
//! `SOSNA_ANVIL_HUB_KEY`, a funded account's key).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use async_trait::async_trait;
use sosna_bus::Identity;
use sosna_market::hub::announce::{self as hub, HubSettings};
use sosna_market::miner::chain_view::{
    ChainError, ChainView, Payout, WalletStatus, WhitelistRecord,
};
use sosna_market::miner::hubbook::{Capacity, HubBook, Trust, BOOK_FILE};
use sosna_market::miner::join::{self as miner, MinerSettings};
use sosna_proto::bus::messages::{Agreement, PriceSchedule, MICRO_SNM_WEI};
use sosna_testkit::testnet::{spawn_node, wait_until, LocalNode};
use tokio::sync::watch;

const TIMEOUT: Duration = Duration::from_secs(60);
const MIN_PAYOUT_USNM: u64 = 1_000_000; // 1 SNM

fn agreement() -> Agreement {
    Agreement {
        prices: PriceSchedule {
            cpu_core_hour: 5_000,
            memory_gib_hour: 100,
            gpu_hour: 0,
        },
        min_payout_usnm: MIN_PAYOUT_USNM,
        payout_every_secs: 60,
    }
}

fn min_payout_wei() -> U256 {
    U256::from(MIN_PAYOUT_USNM) * U256::from(MICRO_SNM_WEI)
}

/// A chain whose records the test writes.
#[derive(Default)]
struct ScriptedChain {
    listed: Mutex<HashMap<Address, WhitelistRecord>>,
    payouts: Mutex<HashMap<Address, Vec<Payout>>>,
    stakes: Mutex<HashMap<Address, U256>>,
    /// HubWallets that exist but are not listed: their owners.
    owners: Mutex<HashMap<Address, Address>>,
    /// While set, every read fails as if the RPC endpoint were down.
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl ChainView for ScriptedChain {
    async fn whitelist_record(
        &self,
        wallet: Address,
    ) -> Result<Option<WhitelistRecord>, ChainError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ChainError::Rpc {
                what: "hub(address)".into(),
                reason: "connection refused".into(),
            });
        }
        Ok(self.listed.lock().unwrap().get(&wallet).cloned())
    }
    async fn wallet_status(&self, wallet: Address) -> Result<WalletStatus, ChainError> {
        let listed = self.listed.lock().unwrap().contains_key(&wallet);
        Ok(WalletStatus {
            registered: listed,
            state: if listed { "Registered" } else { "Created" }.into(),
            spendable: U256::from(10) * min_payout_wei(),
            frozen: min_payout_wei(),
        })
    }
    async fn wallet_owner(&self, wallet: Address) -> Result<Option<Address>, ChainError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ChainError::Rpc {
                what: "owner()".into(),
                reason: "connection refused".into(),
            });
        }
        let listed = self.listed.lock().unwrap().get(&wallet).map(|r| r.owner);
        Ok(listed.or_else(|| self.owners.lock().unwrap().get(&wallet).copied()))
    }
    async fn stake_of(&self, miner: Address) -> Result<U256, ChainError> {
        Ok(self
            .stakes
            .lock()
            .unwrap()
            .get(&miner)
            .copied()
            .unwrap_or_default())
    }
    async fn payouts(
        &self,
        wallet: Address,
        miner: Option<Address>,
    ) -> Result<Vec<Payout>, ChainError> {
        let all = self
            .payouts
            .lock()
            .unwrap()
            .get(&wallet)
            .cloned()
            .unwrap_or_default();
        Ok(all
            .into_iter()
            .filter(|p| miner.is_none_or(|m| m == p.miner))
            .collect())
    }
}

/// How the test pays a miner from the hub's wallet.
#[async_trait]
trait Payer: Send + Sync {
    async fn pay(&self, wallet: Address, miner: Address, amount: U256);
}

#[async_trait]
impl Payer for Arc<ScriptedChain> {
    async fn pay(&self, wallet: Address, miner: Address, amount: U256) {
        self.payouts
            .lock()
            .unwrap()
            .entry(wallet)
            .or_default()
            .push(Payout {
                miner,
                amount,
                block: 1,
            });
    }
}

struct Fleet {
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
    book_paths: Vec<PathBuf>,
    miners: Vec<LocalNode>,
    _hubs: Vec<LocalNode>,
}

fn miner_settings(book_path: PathBuf) -> MinerSettings {
    MinerSettings {
        strict_whitelist: true,
        min_positive_verdicts: 2,
        join: None,
        resources: Capacity {
            cores: 2,
            memory_gib: 4,
            gpus: 0,
        },
        poll: Duration::from_millis(200),
        ask_every: Duration::from_millis(300),
        book_path,
        min_voice_stake: U256::from(1),
    }
}

fn hub_settings(wallet: Address, name: &str) -> HubSettings {
    HubSettings {
        wallet,
        name: name.into(),
        announce: Vec::new(),
        interval: Duration::from_millis(300),
        agreement: agreement(),
    }
}

/// Starts the hubs and `miners` miners, all connected to the first hub and each miner to
/// the previous one, so the gossip graph is connected and no peer is a leaf.
async fn start_fleet(
    hubs: Vec<(Identity, HubSettings)>,
    miners: usize,
    chain: Arc<dyn ChainView>,
) -> Fleet {
    let (stop, stop_rx) = watch::channel(false);
    let dir = tempfile::tempdir().unwrap();
    let mut hub_nodes = Vec::new();
    for (identity, settings) in hubs {
        let (node, events) = spawn_node(identity).unwrap();
        tokio::spawn(hub::run(
            node.bus.clone(),
            events,
            settings,
            stop_rx.clone(),
        ));
        hub_nodes.push(node);
    }
    let mut miner_nodes: Vec<LocalNode> = Vec::new();
    let mut book_paths = Vec::new();
    for i in 0..miners {
        let (node, events) = spawn_node(Identity::ephemeral()).unwrap();
        for hub in &hub_nodes {
            node.bus.dial(hub.addr.clone()).await.unwrap();
        }
        if let Some(prev) = miner_nodes.last() {
            node.bus.dial(prev.addr.clone()).await.unwrap();
        }
        let path = dir.path().join(format!("miner{i}")).join(BOOK_FILE);
        tokio::spawn(miner::run(
            node.bus.clone(),
            events,
            Some(chain.clone()),
            miner_settings(path.clone()),
            stop_rx.clone(),
        ));
        book_paths.push(path);
        miner_nodes.push(node);
    }
    Fleet {
        stop,
        _dir: dir,
        book_paths,
        miners: miner_nodes,
        _hubs: hub_nodes,
    }
}

fn trust_in(path: &Path, wallet: Address) -> Option<Trust> {
    HubBook::load(path).ok()?.get(&wallet).map(|e| e.trust)
}

async fn wait_trust(path: &Path, wallet: Address, want: Trust, what: &str) {
    wait_until(what, TIMEOUT, || async {
        trust_in(path, wallet) == Some(want)
    })
    .await
    .unwrap_or_else(|e| {
        let book = HubBook::load(path).map(|b| b.render()).unwrap_or_default();
        panic!("{e}; book:\n{book}")
    });
}

/// The key of the hub nobody listed; on the scripted chain it owns a HubWallet.
fn unlisted_owner_key() -> alloy_signer_local::PrivateKeySigner {
    alloy_signer_local::PrivateKeySigner::from_bytes(&alloy_primitives::B256::repeat_byte(0x42))
        .unwrap()
}
const UNLISTED_WALLET: Address = Address::repeat_byte(0x99);

/// Shared body: `hub` owns whitelisted `wallet`; `unlisted` is a hub nobody listed.
async fn _test_trust_flow(
    hub_id: Identity,
    wallet: Address,
    chain: Arc<dyn ChainView>,
    payer: &dyn Payer,
) {
    let unlisted_wallet = UNLISTED_WALLET;
    let unlisted_owner = Identity::with_eth_key(unlisted_owner_key());
    let fleet = start_fleet(
        vec![
            (hub_id, hub_settings(wallet, "good-hub")),
            (
                unlisted_owner,
                hub_settings(unlisted_wallet, "unlisted-hub"),
            ),
        ],
        3,
        chain,
    )
    .await;
    let (veteran1, veteran2, newcomer) = (
        &fleet.book_paths[0],
        &fleet.book_paths[1],
        &fleet.book_paths[2],
    );
    let newcomer_addr = fleet.miners[2].identity.address();

    // Two miners were paid as agreed: their own experience makes the hub safe.
    for m in &fleet.miners[..2] {
        payer
            .pay(wallet, m.identity.address(), min_payout_wei())
            .await;
    }
    wait_trust(
        veteran1,
        wallet,
        Trust::Safe,
        "veteran 1 to find the hub safe",
    )
    .await;
    wait_trust(
        veteran2,
        wallet,
        Trust::Safe,
        "veteran 2 to find the hub safe",
    )
    .await;

    // The newcomer was not paid: only the veterans' answers can make the hub checked.
    wait_trust(
        newcomer,
        wallet,
        Trust::Checked,
        "the newcomer to find the hub checked",
    )
    .await;
    let book = HubBook::load(newcomer).unwrap();
    let entry = book.get(&wallet).unwrap();
    let veterans: Vec<Address> = fleet.miners[..2]
        .iter()
        .map(|m| m.identity.address())
        .collect();
    assert!(
        veterans.iter().all(|v| entry.positive.contains(v)),
        "{entry:?}"
    );
    assert!(entry.whitelisted && entry.wallet_registered, "{entry:?}");
    assert_eq!(
        entry.agreement,
        Some(agreement()),
        "metadata came from the hub"
    );

    // A payout below the agreement does not count; one that meets it does.
    payer
        .pay(wallet, newcomer_addr, min_payout_wei() - U256::from(1))
        .await;
    payer.pay(wallet, newcomer_addr, min_payout_wei()).await;
    wait_trust(
        newcomer,
        wallet,
        Trust::Safe,
        "the newcomer to find the hub safe",
    )
    .await;

    // It works for the only usable hub, chosen automatically.
    wait_until("the newcomer to join the hub", TIMEOUT, || async {
        HubBook::load(newcomer).is_ok_and(|b| b.get(&wallet).is_some_and(|e| e.joined))
    })
    .await
    .unwrap();

    // Strict mode: the unlisted hub (a HubWallet on the scripted chain, no contract at
    // all on anvil) was never asked for metadata nor joined.
    for path in &fleet.book_paths {
        let book = HubBook::load(path).unwrap();
        if let Some(e) = book.get(&unlisted_wallet) {
            assert_eq!(e.trust, Trust::Ignored, "{}", book.render());
            assert!(e.agreement.is_none() && !e.joined, "{e:?}");
        }
    }
    let _ = fleet.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_trust_flow_reaches_safe_on_scripted_chain() {
    let hub_id = Identity::ephemeral();
    let wallet = Address::repeat_byte(0x77);
    let chain = Arc::new(ScriptedChain::default());
    chain.listed.lock().unwrap().insert(
        wallet,
        WhitelistRecord {
            owner: hub_id.address(),
            listed: true,
            trusted: false,
            multiaddr: String::new(),
            name: "good-hub".into(),
        },
    );
    chain
        .owners
        .lock()
        .unwrap()
        .insert(UNLISTED_WALLET, unlisted_owner_key().address());
    _test_trust_flow(hub_id, wallet, chain.clone(), &chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_chain_outage_defers_the_check_instead_of_rejecting() {
    let hub_id = Identity::ephemeral();
    let wallet = Address::repeat_byte(0x66);
    let chain = Arc::new(ScriptedChain::default());
    chain.listed.lock().unwrap().insert(
        wallet,
        WhitelistRecord {
            owner: hub_id.address(),
            listed: true,
            trusted: false,
            multiaddr: String::new(),
            name: "good-hub".into(),
        },
    );
    chain.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let fleet = start_fleet(
        vec![(hub_id, hub_settings(wallet, "good-hub"))],
        1,
        chain.clone(),
    )
    .await;
    let path = &fleet.book_paths[0];
    wait_until(
        "the hub to be heard while the chain is down",
        TIMEOUT,
        || async {
            HubBook::load(path)
                .ok()
                .and_then(|b| {
                    b.get(&wallet)
                        .map(|e| e.reason.starts_with("chain unreachable"))
                })
                .unwrap_or(false)
        },
    )
    .await
    .unwrap();
    assert_eq!(trust_in(path, wallet), Some(Trust::Ignored));
    // The chain comes back: the next announcement is checked again and passes.
    chain.down.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_trust(
        path,
        wallet,
        Trust::NotConfirmed,
        "the hub checked once the chain is back",
    )
    .await;
    let _ = fleet.stop.send(true);
}

/// Starts another hub, dialing every miner of `fleet`.
async fn add_hub(fleet: &mut Fleet, identity: Identity, settings: HubSettings) {
    let (node, events) = spawn_node(identity).unwrap();
    for m in &fleet.miners {
        node.bus.dial(m.addr.clone()).await.unwrap();
    }
    tokio::spawn(hub::run(
        node.bus.clone(),
        events,
        settings,
        fleet.stop.subscribe(),
    ));
    fleet._hubs.push(node);
}

async fn wait_refused(path: &Path, wallet: Address, claimant: Address) {
    wait_until("the impostor's claim to be refused", TIMEOUT, || async {
        HubBook::load(path).is_ok_and(|b| {
            b.refused
                .iter()
                .any(|r| r.wallet == wallet && r.owner == claimant)
        })
    })
    .await
    .unwrap();
}

/// A whitelisted wallet owned by `owner`'s key, on a scripted chain.
fn chain_listing(wallet: Address, owner: Address) -> Arc<ScriptedChain> {
    let chain = Arc::new(ScriptedChain::default());
    chain.listed.lock().unwrap().insert(
        wallet,
        WhitelistRecord {
            owner,
            listed: true,
            trusted: true,
            multiaddr: String::new(),
            name: "real".into(),
        },
    );
    chain
}

fn assert_real_hub_kept(path: &Path, wallet: Address, real: &Identity) {
    let book = HubBook::load(path).unwrap();
    let e = book.get(&wallet).unwrap();
    assert_eq!(e.owner, real.address(), "{}", book.render());
    assert_eq!(e.peer_id, real.peer_id().to_string(), "{}", book.render());
    assert!(e.trust >= Trust::NotConfirmed, "{}", book.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_impostor_before_the_real_hub_does_not_shut_it_out() {
    // Someone announces a whitelisted wallet with their own key before its owner does:
    // refused, and the real hub is trusted as soon as it speaks.
    let wallet = Address::repeat_byte(0x55);
    let real = Identity::ephemeral();
    let impostor = Identity::ephemeral();
    let claimant = impostor.address();
    let chain = chain_listing(wallet, real.address());
    let mut fleet = start_fleet(vec![(impostor, hub_settings(wallet, "impostor"))], 1, chain).await;
    let path = fleet.book_paths[0].clone();
    wait_refused(&path, wallet, claimant).await;
    assert!(
        HubBook::load(&path).unwrap().get(&wallet).is_none(),
        "the impostor made an entry"
    );
    add_hub(&mut fleet, real.clone(), hub_settings(wallet, "real")).await;
    wait_trust(
        &path,
        wallet,
        Trust::NotConfirmed,
        "the real hub to be checked",
    )
    .await;
    assert_real_hub_kept(&path, wallet, &real);
    let _ = fleet.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_impostor_after_the_real_hub_changes_nothing() {
    // The real hub is known; a forged announcement for its wallet neither rebinds it to
    // the impostor's key and peer nor demotes it.
    let wallet = Address::repeat_byte(0x56);
    let real = Identity::ephemeral();
    let impostor = Identity::ephemeral();
    let claimant = impostor.address();
    let chain = chain_listing(wallet, real.address());
    let mut fleet = start_fleet(vec![(real.clone(), hub_settings(wallet, "real"))], 1, chain).await;
    let path = fleet.book_paths[0].clone();
    wait_trust(
        &path,
        wallet,
        Trust::NotConfirmed,
        "the real hub to be checked",
    )
    .await;
    add_hub(&mut fleet, impostor, hub_settings(wallet, "impostor")).await;
    wait_refused(&path, wallet, claimant).await;
    assert_real_hub_kept(&path, wallet, &real);
    let _ = fleet.stop.send(true);
}

mod anvil {
    //! The same flow against anvil and the deployed contracts.

    use super::*;
    use alloy_network::EthereumWallet;
    use alloy_primitives::{Bytes, TxKind};
    use alloy_provider::{DynProvider, Provider, ProviderBuilder};
    use alloy_rpc_types_eth::{TransactionInput, TransactionRequest};
    use alloy_signer_local::PrivateKeySigner;
    use alloy_sol_types::{SolCall, SolEvent};
    use sosna_contracts::{Deployment, IHubFactory, IHubWallet, ISNM};
    use sosna_market::miner::chain_view::RpcChain;

    struct Owner {
        provider: DynProvider,
    }

    impl Owner {
        async fn send<C: SolCall>(
            &self,
            to: Address,
            call: C,
        ) -> alloy_rpc_types_eth::TransactionReceipt {
            let tx = TransactionRequest {
                to: Some(TxKind::Call(to)),
                input: TransactionInput::new(Bytes::from(call.abi_encode())),
                ..Default::default()
            };
            let receipt = self
                .provider
                .send_transaction(tx)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", C::SIGNATURE))
                .get_receipt()
                .await
                .unwrap();
            assert!(receipt.status(), "{} reverted", C::SIGNATURE);
            receipt
        }
    }

    #[async_trait]
    impl Payer for Owner {
        async fn pay(&self, wallet: Address, miner: Address, amount: U256) {
            self.send(wallet, IHubWallet::transferCall { miner, amount })
                .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs a fresh anvil with the contracts deployed: contracts/ci.sh runs it"]
    async fn test_trust_flow_reaches_safe_on_anvil() {
        let rpc = sosna_testkit::require::env("SOSNA_ANVIL_RPC", "contracts/ci.sh");
        let deployment = Deployment::from_path(
            std::env::var("SOSNA_DEPLOYMENT_JSON")
                .expect("SOSNA_DEPLOYMENT_JSON with SOSNA_ANVIL_RPC"),
        )
        .unwrap();
        let key: PrivateKeySigner = std::env::var("SOSNA_ANVIL_HUB_KEY")
            .expect("SOSNA_ANVIL_HUB_KEY with SOSNA_ANVIL_RPC")
            .parse()
            .unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let owner = Owner {
            provider: ProviderBuilder::new()
                .wallet(EthereumWallet::from(key.clone()))
                .connect_http(rpc.parse().unwrap())
                .erased(),
        };
        // Register a hub the way an operator would: fund the factory, create and register.
        let deposit = U256::from(20) * min_payout_wei();
        owner
            .send(
                deployment.snm,
                ISNM::approveCall {
                    spender: deployment.hub_factory,
                    value: deposit,
                },
            )
            .await;
        let receipt = owner
            .send(
                deployment.hub_factory,
                IHubFactory::createHubCall {
                    multiaddr: "/memory/0".into(),
                    name: "good-hub".into(),
                    deposit,
                },
            )
            .await;
        let wallet = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<IHubFactory::HubCreated>().ok())
            .map(|l| l.inner.data.wallet)
            .expect("HubCreated event");
        assert_eq!(
            IHubFactory::HubCreated::SIGNATURE,
            "HubCreated(address,address)"
        );
        let chain =
            Arc::new(RpcChain::connect(&rpc, deployment, 10_000, Duration::from_secs(10)).unwrap());
        _test_trust_flow(Identity::with_eth_key(key), wallet, chain, &owner).await;
    }
}
