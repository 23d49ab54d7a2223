//! The chain client against anvil with the contracts deployed by the deploy script: the
//! nonce journal carries a signed transaction across a restart without losing or doubling
//! it, an RPC endpoint that hangs is waited out, and the event index resumes from its
//! checkpoint instead of rescanning.

use std::time::Duration;

use alloy_primitives::{Address, Bytes, U256};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use sosna_chain::index::{Indexer, MarketEvent};
use sosna_chain::sender::Sender;
use sosna_chain::{connect, ChainConfig};
use sosna_contracts::devnet::{Devnet, SNM};
use sosna_contracts::{IMarket, ISNM};
use sosna_testkit::testnet::wait_until;

fn config() -> ChainConfig {
    ChainConfig {
        poll_ms: 50,
        retry_max_secs: 1,
        timeout_secs: 1,
        ..ChainConfig::default()
    }
}

/// Shorter timeouts than the shared test config: one test hangs the endpoint on purpose.
async fn sender(chain: &Devnet, key: &PrivateKeySigner, dir: &std::path::Path) -> Sender {
    sosna_testkit::chain::sender_with(chain, key, dir, &config()).await
}

async fn nonce_of(chain: &Devnet, who: Address) -> u64 {
    let provider = connect(&chain.rpc_url(), Duration::from_secs(5)).unwrap();
    provider.get_transaction_count(who).await.unwrap()
}

async fn deal_count(chain: &Devnet) -> U256 {
    let provider = connect(&chain.rpc_url(), Duration::from_secs(5)).unwrap();
    let tx = alloy_rpc_types_eth::TransactionRequest::default()
        .to(chain.deployment.market)
        .input(Bytes::from(IMarket::dealCountCall {}.abi_encode()).into());
    let out = provider.call(tx).await.unwrap();
    IMarket::dealCountCall::abi_decode_returns(&out).unwrap()
}

/// A deal with `hub` that opens whether or not the hub is active: the buyer's side only.
fn open_deal(hub: Address) -> Bytes {
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    Bytes::from(
        IMarket::openDealCall {
            hub,
            price: alloy_primitives::Uint::from(SNM),
            deadline: alloy_primitives::Uint::from(deadline),
        }
        .abi_encode(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_journaled_tx_survives_a_restart_once_and_the_index_resumes() {
    let chain = Devnet::start(2).unwrap();
    let (buyer, hub_owner) = (chain.keys[1].clone(), chain.keys[2].clone());
    let wallet = chain
        .register_hub(
            &hub_owner,
            "/ip4/127.0.0.1/tcp/4001",
            "hub",
            U256::from(10 * SNM),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start_nonce = nonce_of(&chain, buyer.address()).await;

    let first = sender(&chain, &buyer, dir.path()).await;
    let approve = ISNM::approveCall {
        spender: chain.deployment.market,
        value: U256::from(100 * SNM),
    };
    let receipt = first
        .send("approve market", chain.deployment.snm, approve)
        .await
        .unwrap();
    assert!(receipt.status());
    // Signed and journaled, then the process "dies" before broadcasting it.
    let journaled = first
        .prepare("open deal", chain.deployment.market, open_deal(wallet))
        .await
        .unwrap();
    drop(first);
    assert_eq!(deal_count(&chain).await, U256::ZERO);

    let second = sender(&chain, &buyer, dir.path()).await;
    assert_eq!(second.pending().await, vec![journaled.clone()]);
    let resumed = second.resume().await;
    assert_eq!(resumed.len(), 1);
    let receipt = resumed[0].1.as_ref().expect("the journaled deal lands");
    assert_eq!(receipt.transaction_hash, journaled.hash);
    assert!(second.pending().await.is_empty());
    // Resuming again finds nothing to do: the deal is opened exactly once.
    assert!(second.resume().await.is_empty());
    assert_eq!(deal_count(&chain).await, U256::from(1));

    // The next transaction takes the next nonce.
    second
        .send_raw("open deal 2", chain.deployment.market, open_deal(wallet))
        .await
        .unwrap();
    assert_eq!(deal_count(&chain).await, U256::from(2));
    assert_eq!(nonce_of(&chain, buyer.address()).await, start_nonce + 3);

    // The index sees both deals and the hub's listing, and a reopened index reads nothing
    // twice.
    let provider = connect(&chain.rpc_url(), Duration::from_secs(5)).unwrap();
    let index_dir = dir.path().join("index");
    let mut index = Indexer::open(provider.clone(), chain.deployment, &index_dir, 1).unwrap();
    let found = index.catch_up().await.unwrap();
    let deals: Vec<_> = found
        .iter()
        .filter_map(|e| match &e.event {
            MarketEvent::DealsOpened { buyer: b, hub, .. } => Some((*b, *hub)),
            _ => None,
        })
        .collect();
    assert_eq!(deals, vec![(buyer.address(), wallet); 2]);
    assert!(found.iter().any(|e| matches!(&e.event,
        MarketEvent::HubListed { wallet: w, owner, .. } if *w == wallet && *owner == hub_owner.address())));
    let next = index.next_block();
    drop(index);
    let mut index = Indexer::open(provider, chain.deployment, &index_dir, 1).unwrap();
    assert_eq!(index.next_block(), next);
    assert!(index.catch_up().await.unwrap().is_empty());
    assert_eq!(index.events().unwrap(), found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sender_waits_out_a_hung_rpc_endpoint() {
    let chain = Devnet::start(1).unwrap();
    let key = chain.keys[1].clone();
    let dir = tempfile::tempdir().unwrap();
    let sender = std::sync::Arc::new(sender(&chain, &key, dir.path()).await);
    let start_nonce = nonce_of(&chain, key.address()).await;

    chain.freeze().unwrap();
    let task = {
        let sender = sender.clone();
        let snm = chain.deployment.snm;
        let market = chain.deployment.market;
        tokio::spawn(async move {
            let approve = ISNM::approveCall {
                spender: market,
                value: U256::from(SNM),
            };
            sender.send("approve during outage", snm, approve).await
        })
    };
    // The endpoint hangs: requests time out and are retried, never given up.
    wait_until(
        "retries while anvil is frozen",
        Duration::from_secs(30),
        || async {
            assert!(!task.is_finished(), "send finished during the outage");
            sender.retries() >= 2
        },
    )
    .await
    .unwrap();
    chain.thaw().unwrap();
    let receipt = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("send finishes once anvil answers again")
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(nonce_of(&chain, key.address()).await, start_nonce + 1);
    assert!(sender.pending().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_call_that_would_revert_costs_nothing() {
    let chain = Devnet::start(1).unwrap();
    let key = chain.keys[1].clone();
    let dir = tempfile::tempdir().unwrap();
    let sender = sender(&chain, &key, dir.path()).await;
    let start_nonce = nonce_of(&chain, key.address()).await;
    // No allowance for the market: openDeal reverts in estimation, nothing is journaled.
    let err = sender
        .send_raw(
            "open deal",
            chain.deployment.market,
            open_deal(Address::repeat_byte(9)),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("open deal reverted"), "{err}");
    assert!(sender.pending().await.is_empty());
    assert_eq!(nonce_of(&chain, key.address()).await, start_nonce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_nonce_taken_by_another_transaction_is_superseded_not_waited_on_forever() {
    let chain = Devnet::start(1).unwrap();
    let key = chain.keys[1].clone();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two journals for one key: the operator ran a second copy elsewhere.
    let a = sender(&chain, &key, dir_a.path()).await;
    let b = sender(&chain, &key, dir_b.path()).await;
    let start_nonce = nonce_of(&chain, key.address()).await;
    let approve = |value: u128| ISNM::approveCall {
        spender: chain.deployment.market,
        value: U256::from(value),
    };
    let signed = a
        .prepare(
            "approve from a",
            chain.deployment.snm,
            Bytes::from(approve(SNM).abi_encode()),
        )
        .await
        .unwrap();
    assert_eq!(signed.nonce, start_nonce);
    let landed = b
        .send("approve from b", chain.deployment.snm, approve(2 * SNM))
        .await
        .unwrap();
    assert!(landed.status());
    let err = tokio::time::timeout(Duration::from_secs(60), a.submit(signed))
        .await
        .expect("a superseded transaction is given up on")
        .unwrap_err();
    assert!(
        matches!(err, sosna_chain::ChainError::Superseded { nonce, .. } if nonce == start_nonce),
        "{err}"
    );
    assert!(a.pending().await.is_empty(), "the journal forgets it");
    assert_eq!(nonce_of(&chain, key.address()).await, start_nonce + 1);
}
