//! The marketplace end to end on one host: anvil with the deployed contracts, a hub taking
//! deals at its desk, miners running tasks through the real runtime from a local registry,
//! and a buyer that opens, submits, follows, checks and confirms. Swarms are in-process
//! (memory transport); everything else is real. Fault paths: a cheater outvoted and
//! slashed, a miner that goes silent after taking a task, an RPC outage during settlement,
//! a task nobody can run (released at once) and a silent hub (cancelled after the deadline).
//! Needs root, like the runtime's own tests.

use sosna_testkit::fixture::{fixture_after, Fixture};

/// The agent binary, which is the containers' shim.
const SHIM: &str = env!("CARGO_BIN_EXE_sosna");

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use alloy_provider::Provider;
use sosna_bus::{BusEvent, Identity};
use sosna_chain::connect;
use sosna_chain::sender::Sender;
use sosna_contracts::devnet::{Devnet, SNM};
use sosna_contracts::{IVerification, ISNM};
use sosna_market::buyer::{BuyError, Buyer, HubAddr, Opened, Order};
use sosna_market::hub::announce::{self as hub, HubSettings};
use sosna_market::hub::desk::{Desk, DeskSettings};
use sosna_market::hub::dispatch::Dispatcher;
use sosna_market::hub::stake::StakeGate;
use sosna_market::miner::chain_view::RpcChain;
use sosna_market::miner::earnings;
use sosna_market::miner::hubbook::{Capacity, HubBook, BOOK_FILE};
use sosna_market::miner::join::{self as miner, MinerSettings};
use sosna_market::miner::worker::Worker;
use sosna_proto::attest;
use sosna_proto::bus::messages::{
    Agreement, JobPhase, JobStatus, PriceSchedule, Request, Response, MICRO_SNM_WEI,
};
use sosna_proto::task::TaskSpec;
use sosna_testkit::chain::{sender, view};
use sosna_testkit::testnet::{spawn_node, wait_until, LocalNode};
use tokio::sync::watch;

const SHARE_PCT: u8 = 60;

async fn balance(chain: &Devnet, who: Address) -> U256 {
    view(
        chain,
        chain.deployment.snm,
        ISNM::balanceOfCall { account: who },
    )
    .await
}

async fn allowance(chain: &Devnet, wallet: Address, miner: Address) -> U256 {
    let call = ISNM::allowanceCall {
        owner: wallet,
        spender: miner,
    };
    view(chain, chain.deployment.snm, call).await
}

async fn stake(chain: &Devnet, miner: Address) -> U256 {
    let call = IVerification::stakeOfCall { miner };
    view(chain, chain.deployment.verification, call)
        .await
        .amount
}

/// A hub with its desk, and the buyer's node; miners are added with [`Market::miner`].
struct Market {
    chain: Devnet,
    dir: tempfile::TempDir,
    wallet: Address,
    hub: LocalNode,
    hub_sender: Arc<Sender>,
    buyer_node: LocalNode,
    buyer_sender: Sender,
    stop: watch::Sender<bool>,
}

impl Market {
    /// Keys: 1 buyer, 2 hub owner, 3.. miners.
    async fn start(miners: usize, registry: String) -> Market {
        let chain = Devnet::start(2 + miners).unwrap();
        let d = chain.deployment;
        let dir = tempfile::tempdir().unwrap();
        let hub_key = chain.keys[2].clone();
        let wallet = chain
            .register_hub(&hub_key, "/memory/1", "e2e-hub", U256::from(100 * SNM))
            .await
            .unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let (hub, hub_events) = spawn_node(Identity::with_eth_key(hub_key.clone())).unwrap();
        let hub_sender = Arc::new(sender(&chain, &hub_key, &dir.path().join("hub")).await);
        let domain = attest::domain(d.chain_id, d.verification);
        // Work only for miners with 1 SNM at stake, read from the chain.
        let stakes = RpcChain::connect(&chain.rpc_url(), d, 1_000, Duration::from_secs(5)).unwrap();
        let gate = StakeGate::new(Arc::new(stakes), U256::from(SNM), Duration::from_secs(60));
        let dispatcher = Dispatcher::new(hub.bus.clone(), domain).with_stake_gate(Arc::new(gate));
        let desk = Desk::open(
            dispatcher.clone(),
            hub_sender.clone(),
            d,
            DeskSettings {
                wallet,
                miner_share_pct: SHARE_PCT,
                unit_timeout: Duration::from_secs(20),
                dir: dir.path().join("hub").join("jobs"),
                insecure_registries: vec![registry.clone()],
            },
        )
        .unwrap();
        let settings = HubSettings {
            wallet,
            name: "e2e-hub".into(),
            announce: Vec::new(),
            interval: Duration::from_millis(300),
            agreement: Agreement {
                prices: PriceSchedule::default(),
                min_payout_usnm: 1,
                payout_every_secs: 60,
            },
        };
        tokio::spawn(hub::run_with_desk(
            hub.bus.clone(),
            hub_events,
            settings,
            Some(dispatcher),
            Some(desk),
            stop_rx,
        ));
        let buyer_key = chain.keys[1].clone();
        let (buyer_node, _) = spawn_node(Identity::with_eth_key(buyer_key.clone())).unwrap();
        let buyer_sender = sender(&chain, &buyer_key, &dir.path().join("buyer")).await;
        Market {
            chain,
            dir,
            wallet,
            hub,
            hub_sender,
            buyer_node,
            buyer_sender,
            stop,
        }
    }

    /// Starts miner `i` (key 3 + i), staked, joined to the hub once it hears of it.
    async fn miner(&self, f: &Fixture, i: usize, cheat: bool) -> (LocalNode, Sender) {
        let d = self.chain.deployment;
        let key = self.chain.keys[3 + i].clone();
        let money = sender(&self.chain, &key, &self.dir.path().join(format!("m{i}"))).await;
        earnings::ensure_stake(&money, &d, U256::from(5 * SNM))
            .await
            .unwrap();
        let node = self
            .start_miner(f, Identity::with_eth_key(key), &format!("m{i}"), cheat)
            .await;
        let book = self.book(i);
        let wallet = self.wallet;
        wait_until(
            &format!("miner {i} to join the hub"),
            Duration::from_secs(30),
            || async {
                HubBook::load(&book).is_ok_and(|b| b.get(&wallet).is_some_and(|e| e.joined))
            },
        )
        .await
        .unwrap();
        (node, money)
    }

    /// Starts a miner node with `identity` that tries to join the hub and runs what it is
    /// offered (forging every result if `cheat`); its book is in `name/`.
    async fn start_miner(
        &self,
        f: &Fixture,
        identity: Identity,
        name: &str,
        cheat: bool,
    ) -> LocalNode {
        let d = self.chain.deployment;
        let (node, events) = spawn_node(identity).unwrap();
        node.bus.dial(self.hub.addr.clone()).await.unwrap();
        let worker = Worker::new(
            node.bus.clone(),
            f.rt.clone(),
            node.identity.eth.clone(),
            attest::domain(d.chain_id, d.verification),
            1,
        );
        let worker = if cheat { worker.forging() } else { worker };
        let settings = MinerSettings {
            strict_whitelist: false,
            min_positive_verdicts: 1,
            join: Some(self.wallet),
            resources: Capacity {
                cores: 1,
                memory_gib: 1,
                gpus: 0,
            },
            poll: Duration::from_millis(200),
            ask_every: Duration::from_secs(60),
            book_path: self.dir.path().join(name).join(BOOK_FILE),
            min_voice_stake: U256::from(SNM),
        };
        tokio::spawn(miner::run_with_worker(
            node.bus.clone(),
            events,
            None,
            settings,
            Some(worker),
            self.stop.subscribe(),
        ));
        node
    }

    fn book(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("m{i}")).join(BOOK_FILE)
    }

    fn buyer(&self) -> Buyer<'_> {
        Buyer {
            sender: &self.buyer_sender,
            deployment: &self.chain.deployment,
            bus: &self.buyer_node.bus,
        }
    }

    fn hub_addr(&self) -> HubAddr {
        HubAddr {
            peer: self.hub.identity.peer_id(),
            addrs: vec![self.hub.addr.clone()],
        }
    }

    async fn hub_nonce(&self) -> u64 {
        let p = connect(&self.chain.rpc_url(), Duration::from_secs(5)).unwrap();
        p.get_transaction_count(self.hub_sender.address())
            .await
            .unwrap()
    }
}

impl Drop for Market {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn order(f: &Fixture, script: &str, replicas: u16, deadline_secs: u64) -> Order {
    Order {
        spec: TaskSpec {
            image: f.reference.clone(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            timeout_secs: 30,
            ..TaskSpec::default()
        },
        price: U256::from(10 * SNM),
        replicas,
        deadline_secs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_buyer_pays_for_a_verified_result_and_the_cheater_is_slashed() {
    let (f, m) = fixture_after(SHIM, |registry| Market::start(3, registry)).await;
    let mut miners = Vec::new();
    for i in 0..3 {
        miners.push(m.miner(&f, i, i == 1).await);
    }
    let buyer = m.buyer();
    let hub = m.hub_addr();
    assert_eq!(buyer.hub_wallet(&hub).await.unwrap(), m.wallet);
    let buyer_before = balance(&m.chain, m.buyer_sender.address()).await;
    let wallet_before = balance(&m.chain, m.wallet).await;

    let order = order(&f, "seq 1 10 | wc -l", 3, 600);
    let opened = buyer.open(m.wallet, &order).await.unwrap();
    buyer.submit(&hub, &opened.deal, &order).await.unwrap();
    // Submitting again is harmless; someone else's status is not readable.
    buyer.submit(&hub, &opened.deal, &order).await.unwrap();
    let mut phases = Vec::new();
    let status = buyer
        .follow(&hub, &opened.deal, Duration::from_millis(200), |s| {
            phases.push(s.phase)
        })
        .await
        .unwrap();
    assert_eq!(phases.last(), Some(&JobPhase::Done));
    let result = status.result.clone().unwrap();
    assert_eq!(result.stdout, b"10\n");
    assert_eq!(result.exit_code, 0);
    let cheater = miners[1].0.identity.address();
    assert_eq!(status.disagree, vec![cheater]);
    let mut honest = vec![
        miners[0].0.identity.address(),
        miners[2].0.identity.address(),
    ];
    honest.sort();
    assert_eq!(status.agree, honest);
    assert_eq!(
        status.txs.len(),
        3,
        "commit, pay, challenge: {:?}",
        status.txs
    );
    assert!(status.timings.settle_gas > 0);
    let (_, stranger) = m
        .miner_node_request(
            &miners[0].0,
            Request::Job {
                deal: opened.deal.id,
            },
        )
        .await;
    assert!(matches!(stranger, Response::Refused(r) if r.contains("not yours")));

    // The buyer checks the digest against the chain and confirms: the hub is paid.
    buyer
        .accept(&opened.deal, opened.block, &result)
        .await
        .unwrap();
    let price = U256::from(10 * SNM);
    assert_eq!(
        buyer_before - balance(&m.chain, m.buyer_sender.address()).await,
        price
    );
    let pay_each = price * U256::from(SHARE_PCT) / U256::from(100) / U256::from(3);
    assert_eq!(balance(&m.chain, m.wallet).await, wallet_before + price);

    // Honest miners have their pay reserved and pull it; the cheater got nothing and lost
    // its stake.
    for (node, money) in &miners {
        let me = node.identity.address();
        if me == cheater {
            assert_eq!(allowance(&m.chain, m.wallet, me).await, U256::ZERO);
            assert_eq!(stake(&m.chain, me).await, U256::ZERO);
            continue;
        }
        assert_eq!(allowance(&m.chain, m.wallet, me).await, pay_each);
        let before = balance(&m.chain, me).await;
        let got = earnings::withdraw(money, &m.chain.deployment, m.wallet)
            .await
            .unwrap();
        assert_eq!(got, pay_each);
        assert_eq!(balance(&m.chain, me).await, before + pay_each);
        assert_eq!(allowance(&m.chain, m.wallet, me).await, U256::ZERO);
        assert_eq!(stake(&m.chain, me).await, U256::from(5 * SNM));
    }
    // What the offer said matches what was paid.
    assert_eq!(
        pay_each / U256::from(MICRO_SNM_WEI) * U256::from(MICRO_SNM_WEI),
        pay_each
    );
}

impl Market {
    /// Opens a deal for `order`, submits it, and follows it to its end.
    async fn deal(&self, order: &Order) -> (Opened, Result<JobStatus, BuyError>) {
        let (buyer, hub) = (self.buyer(), self.hub_addr());
        let opened = buyer.open(self.wallet, order).await.unwrap();
        buyer.submit(&hub, &opened.deal, order).await.unwrap();
        let status = buyer
            .follow(&hub, &opened.deal, Duration::from_millis(200), |_| {})
            .await;
        (opened, status)
    }

    async fn miner_node_request(&self, node: &LocalNode, request: Request) -> (Address, Response) {
        node.bus
            .request(
                self.hub.identity.peer_id(),
                vec![self.hub.addr.clone()],
                request,
            )
            .await
            .unwrap()
    }
}

/// A staked peer (key 3 + `i`) that joins the hub, takes every offer and never reports: a
/// miner that died mid-task.
async fn dead_miner(m: &Market, i: usize) -> LocalNode {
    let key = m.chain.keys[3 + i].clone();
    let money = sender(&m.chain, &key, &m.dir.path().join(format!("dead{i}"))).await;
    earnings::ensure_stake(&money, &m.chain.deployment, U256::from(5 * SNM))
        .await
        .unwrap();
    let (node, mut events) = spawn_node(Identity::with_eth_key(key)).unwrap();
    let bus = node.bus.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let BusEvent::Request(r) = e {
                let _ = bus.respond(r.channel, Response::Accepted).await;
            }
        }
    });
    let me = node.identity.address();
    let (_, joined) = m
        .miner_node_request(&node, Request::Join { miner: me })
        .await;
    assert!(matches!(joined, Response::Joined(_)), "{joined:?}");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_miner_dying_mid_task_is_replaced_and_not_paid() {
    let (f, m) = fixture_after(SHIM, |registry| Market::start(3, registry)).await;
    let dead = dead_miner(&m, 2).await;
    let first = m.miner(&f, 0, false).await;
    let buyer = m.buyer();
    let hub = m.hub_addr();
    let order = order(&f, "echo replaced", 2, 600);
    let opened = buyer.open(m.wallet, &order).await.unwrap();
    buyer.submit(&hub, &opened.deal, &order).await.unwrap();
    // Only the dead miner and the first were there to take the two replicas; the second
    // joins while the dead one keeps the hub waiting.
    let second = m.miner(&f, 1, false).await;
    let status = buyer
        .follow(&hub, &opened.deal, Duration::from_millis(200), |_| {})
        .await
        .unwrap();
    assert_eq!(status.result.as_ref().unwrap().stdout, b"replaced\n");
    let mut both = vec![first.0.identity.address(), second.0.identity.address()];
    both.sort();
    assert_eq!(status.agree, both);
    assert!(status.disagree.is_empty());
    assert_eq!(status.txs.len(), 2, "commit and pay only: {:?}", status.txs);
    let dead = dead.identity.address();
    assert_eq!(allowance(&m.chain, m.wallet, dead).await, U256::ZERO);
    buyer
        .accept(&opened.deal, opened.block, status.result.as_ref().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_settlement_waits_out_an_rpc_outage_and_sends_each_step_once() {
    let (f, m) = fixture_after(SHIM, |registry| Market::start(2, registry)).await;
    let _a = m.miner(&f, 0, false).await;
    let _b = m.miner(&f, 1, false).await;
    let buyer = m.buyer();
    let hub = m.hub_addr();
    let order = order(&f, "echo outage", 2, 600);
    let opened = buyer.open(m.wallet, &order).await.unwrap();
    let nonce = m.hub_nonce().await;
    buyer.submit(&hub, &opened.deal, &order).await.unwrap();
    // The chain goes away while the miners work; the hub decides, then has to wait.
    m.chain.freeze().unwrap();
    let retries = m.hub_sender.retries();
    let frozen = wait_until(
        "the hub to retry its settlement against the frozen chain",
        Duration::from_secs(60),
        || async { m.hub_sender.retries() > retries },
    )
    .await;
    m.chain.thaw().unwrap();
    frozen.unwrap();
    let status = buyer
        .follow(&hub, &opened.deal, Duration::from_millis(200), |_| {})
        .await
        .unwrap();
    assert_eq!(status.phase, JobPhase::Done);
    // Commit and pay, each exactly once.
    assert_eq!(m.hub_nonce().await, nonce + 2);
    buyer
        .accept(&opened.deal, opened.block, status.result.as_ref().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_refunds_a_task_nobody_can_run_and_a_silent_hub() {
    let (f, m) = fixture_after(SHIM, |registry| Market::start(1, registry)).await;
    let _a = m.miner(&f, 0, false).await;
    let buyer = m.buyer();
    let me = m.buyer_sender.address();
    let before = balance(&m.chain, me).await;

    // An image that does not exist: the miner fails it, nobody else can take it, and the
    // hub releases the deal, which refunds the buyer at once.
    let mut bad = order(&f, "true", 1, 600);
    bad.spec.image = format!("{}/no-such-image:1", f.registry_host);
    let (_, err) = m.deal(&bad).await;
    let err = err.unwrap_err();
    assert!(
        matches!(&err, BuyError::Failed(why) if why.contains("buyer refunded")),
        "{err}"
    );
    assert_eq!(balance(&m.chain, me).await, before);

    // A hub that never answers: the buyer waits out the deadline and cancels.
    let silent = order(&f, "true", 1, 3);
    let opened = buyer.open(m.wallet, &silent).await.unwrap();
    assert_eq!(balance(&m.chain, me).await, before - silent.price);
    let early = buyer.cancel(&opened.deal).await;
    assert!(early.is_err(), "cancelled before the deadline");
    let deadline = opened.deal.terms.deadline.to::<u64>();
    wait_until(
        "the deal's deadline to pass",
        Duration::from_secs(30),
        || async {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                > deadline + 1
        },
    )
    .await
    .unwrap();
    buyer.cancel(&opened.deal).await.unwrap();
    assert_eq!(balance(&m.chain, me).await, before);
    // A deal the hub never heard of is not served.
    let (_, answer) = m
        .miner_node_request(
            &m.buyer_node,
            Request::Job {
                deal: opened.deal.id,
            },
        )
        .await;
    assert!(matches!(answer, Response::Refused(r) if r.contains("no job")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_unstaked_keys_get_no_work_and_no_pay() {
    // Three keys made for free, all forging, against two staked honest miners.
    let (f, m) = fixture_after(SHIM, |registry| Market::start(2, registry)).await;
    let mut forgers = Vec::new();
    for i in 0..3 {
        let node = m
            .start_miner(&f, Identity::ephemeral(), &format!("forger{i}"), true)
            .await;
        let me = node.identity.address();
        let (_, answer) = m
            .miner_node_request(&node, Request::Join { miner: me })
            .await;
        assert!(
            matches!(&answer, Response::Refused(why) if why.contains("below this hub's minimum")),
            "{answer:?}"
        );
        forgers.push(node);
    }
    let honest = [m.miner(&f, 0, false).await, m.miner(&f, 1, false).await];
    let order = order(&f, "echo honest", 2, 600);
    let (_, status) = m.deal(&order).await;
    let status = status.unwrap();
    assert_eq!(status.result.as_ref().unwrap().stdout, b"honest\n");
    let mut want: Vec<Address> = honest.iter().map(|(n, _)| n.identity.address()).collect();
    want.sort();
    assert_eq!(status.agree, want);
    assert!(status.disagree.is_empty());
    for node in &forgers {
        let me = node.identity.address();
        assert_eq!(allowance(&m.chain, m.wallet, me).await, U256::ZERO);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_30_kib_result_arrives_and_a_larger_one_is_an_error_the_buyer_sees() {
    let (f, m) = fixture_after(SHIM, |registry| Market::start(1, registry)).await;
    let _a = m.miner(&f, 0, false).await;
    let buyer = m.buyer();
    // printf pads to the width: exactly that many bytes of stdout.
    let order = order(&f, "printf '%30720s' x", 1, 600);
    let (opened, status) = m.deal(&order).await;
    let status = status.unwrap();
    let result = status.result.as_ref().unwrap();
    assert_eq!(result.stdout.len(), 30 * 1024);
    buyer
        .accept(&opened.deal, opened.block, result)
        .await
        .unwrap();

    let me = m.buyer_sender.address();
    let before = balance(&m.chain, me).await;
    let order = self::order(&f, "printf '%40000s' x", 1, 600);
    let (_, err) = m.deal(&order).await;
    let err = err.unwrap_err();
    assert!(
        matches!(&err, BuyError::Failed(why) if why.contains("40000 bytes of stdout exceed the 32768-byte limit")),
        "{err}"
    );
    assert_eq!(balance(&m.chain, me).await, before, "the buyer is refunded");
}
