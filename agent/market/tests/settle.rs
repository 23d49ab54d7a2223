//! A hub settles a replicated unit on anvil: the buyer's deal is committed with the
//! majority digest, the agreeing miners are paid in one batch, the outvoted miner is
//! slashed, a settlement repeated after a restart sends nothing twice, and the buyer's
//! confirmation pays the hub.

use std::time::Duration;

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use sosna_chain::connect;
use sosna_chain::index::{Indexer, MarketEvent};
use sosna_contracts::devnet::{Devnet, SNM};
use sosna_contracts::{IMarket, IVerification, ISNM};
use sosna_market::hub::settle::{settle, Deal, Settlement};
use sosna_market::hub::verify::{decide, Decision};
use sosna_proto::attest::{self, Unit};
use sosna_testkit::chain::{sender, view};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_hub_settles_a_replicated_unit_once() {
    let chain = Devnet::start(5).unwrap();
    let d = chain.deployment;
    let dir = tempfile::tempdir().unwrap();
    let buyer_key = chain.keys[1].clone();
    let hub_key = chain.keys[2].clone();
    let miners: Vec<PrivateKeySigner> = chain.keys[3..=5].to_vec();
    let wallet = chain
        .register_hub(
            &hub_key,
            "/ip4/127.0.0.1/tcp/4001",
            "hub",
            U256::from(100 * SNM),
        )
        .await
        .unwrap();
    let stake = U256::from(5 * SNM);
    for (i, m) in miners.iter().enumerate() {
        let s = sender(&chain, m, &dir.path().join(format!("miner{i}"))).await;
        let approve = ISNM::approveCall {
            spender: d.verification,
            value: stake,
        };
        s.send("approve stake", d.snm, approve).await.unwrap();
        let call = IVerification::stakeCall { amount: stake };
        s.send("stake", d.verification, call).await.unwrap();
    }

    // The buyer opens a deal naming the hub.
    let buyer = sender(&chain, &buyer_key, &dir.path().join("buyer")).await;
    let price = 10 * SNM;
    let approve = ISNM::approveCall {
        spender: d.market,
        value: U256::from(price),
    };
    buyer.send("approve market", d.snm, approve).await.unwrap();
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let open = IMarket::openDealCall {
        hub: wallet,
        price: alloy_primitives::Uint::from(price),
        deadline: alloy_primitives::Uint::from(deadline),
    };
    let receipt = buyer.send("open deal", d.market, open).await.unwrap();
    let opened = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<IMarket::DealsOpened>().ok())
        .expect("DealsOpened")
        .inner
        .data;
    let deal = Deal {
        id: opened.ids[0],
        terms: IMarket::Deal {
            buyer: buyer_key.address(),
            hub: wallet,
            price: opened.prices[0],
            deadline: opened.deadline,
            committedAt: alloy_primitives::Uint::ZERO,
        },
    };

    // Three replicas; the second cheats.
    let domain = attest::domain(d.chain_id, d.verification);
    let unit = Unit {
        hub: wallet,
        id: alloy_primitives::keccak256(deal.id.to_be_bytes::<32>()),
        replicas: 3,
    };
    let (good, bad) = (B256::repeat_byte(0xaa), B256::repeat_byte(0xbb));
    let atts: Vec<_> = miners
        .iter()
        .zip([good, bad, good])
        .map(|(k, digest)| attest::sign(k, &domain, &unit, digest).unwrap())
        .collect();
    let reports: Vec<_> = atts.iter().map(|a| (a.miner, a.digest)).collect();
    let Decision::Agreed {
        digest,
        agree,
        disagree,
    } = decide(unit.replicas, &reports)
    else {
        panic!("two of three agree")
    };
    assert_eq!(disagree, vec![miners[1].address()]);
    let pay_each = U256::from(2 * SNM);
    let settlement = Settlement {
        deal: deal.clone(),
        unit,
        digest,
        payouts: agree.iter().map(|m| (*m, pay_each)).collect(),
        attestations: atts.clone(),
    };
    let hub_dir = dir.path().join("hub");
    let settled = {
        let hub = sender(&chain, &hub_key, &hub_dir).await;
        settle(&hub, &d, wallet, &settlement).await.unwrap()
    };
    assert!(settled.pay.is_some() && settled.challenge.is_some());
    assert!(settled.gas_used() > 0);

    // After a restart the same settlement is already done: nothing is sent again.
    let hub_nonce = {
        let p = connect(&chain.rpc_url(), Duration::from_secs(5)).unwrap();
        p.get_transaction_count(hub_key.address()).await.unwrap()
    };
    let again = {
        let hub = sender(&chain, &hub_key, &hub_dir).await;
        settle(&hub, &d, wallet, &settlement).await.unwrap()
    };
    assert_eq!(again, settled);
    let p = connect(&chain.rpc_url(), Duration::from_secs(5)).unwrap();
    assert_eq!(
        p.get_transaction_count(hub_key.address()).await.unwrap(),
        hub_nonce
    );

    // On chain: the digest is committed, the two honest miners were paid and may pull
    // their pay, the cheater got nothing and lost its stake.
    let mut index = Indexer::open(p.clone(), d, &dir.path().join("index"), 1).unwrap();
    let events = index.catch_up().await.unwrap();
    let committed_at = events
        .iter()
        .find_map(|e| match &e.event {
            MarketEvent::ResultsCommitted {
                ids,
                digests,
                committed_at,
                ..
            } if ids == &vec![deal.id] && digests == &vec![good] => Some(*committed_at),
            _ => None,
        })
        .expect("ResultsCommitted with the majority digest");
    let paid: Vec<Address> = events
        .iter()
        .filter_map(|e| match &e.event {
            MarketEvent::Payout {
                wallet: w,
                miner,
                amount,
            } if *w == wallet => {
                assert_eq!(*amount, pay_each);
                Some(*miner)
            }
            _ => None,
        })
        .collect();
    assert_eq!(paid, agree);
    for (m, want) in miners.iter().zip([stake, U256::ZERO, stake]) {
        let got = view(
            &chain,
            d.verification,
            IVerification::stakeOfCall { miner: m.address() },
        )
        .await;
        assert_eq!(got.amount, want, "stake of {}", m.address());
    }
    let honest = miners[0].address();
    let allowance = view(
        &chain,
        d.snm,
        ISNM::allowanceCall {
            owner: wallet,
            spender: honest,
        },
    )
    .await;
    assert_eq!(allowance, pay_each);

    // The buyer checks the committed digest and confirms: the hub's wallet gets the price.
    let before = view(&chain, d.snm, ISNM::balanceOfCall { account: wallet }).await;
    let mut terms = deal.terms.clone();
    terms.committedAt = alloy_primitives::Uint::from(committed_at);
    let confirm = IMarket::confirmDealsCall {
        ids: vec![deal.id],
        deals: vec![terms],
    };
    buyer.send("confirm deal", d.market, confirm).await.unwrap();
    let after = view(&chain, d.snm, ISNM::balanceOfCall { account: wallet }).await;
    assert_eq!(after - before, U256::from(price));
}

/// Three miners stake; two sign one digest and one signs another for the same unit. The
/// hub's challenge, built from their attestations, slashes exactly the odd one out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_outvoted_miner_is_slashed_with_its_own_signature() {
    let chain = Devnet::start(4).unwrap();
    let d = chain.deployment;
    let dir = tempfile::tempdir().unwrap();
    let miners: Vec<PrivateKeySigner> = chain.keys[1..=3].to_vec();
    let stake = U256::from(5 * SNM);
    for (i, key) in miners.iter().enumerate() {
        let s = sender(&chain, key, &dir.path().join(format!("m{i}"))).await;
        let approve = ISNM::approveCall {
            spender: d.verification,
            value: stake,
        };
        s.send("approve stake", d.snm, approve).await.unwrap();
        s.send(
            "stake",
            d.verification,
            IVerification::stakeCall { amount: stake },
        )
        .await
        .unwrap();
    }
    let domain = attest::domain(d.chain_id, d.verification);
    let unit = Unit {
        hub: Address::repeat_byte(0x42),
        id: alloy_primitives::B256::repeat_byte(0x01),
        replicas: 3,
    };
    let (good, bad) = (
        alloy_primitives::B256::repeat_byte(0xaa),
        alloy_primitives::B256::repeat_byte(0xbb),
    );
    let atts: Vec<_> = miners
        .iter()
        .zip([good, bad, good])
        .map(|(k, digest)| attest::sign(k, &domain, &unit, digest).unwrap())
        .collect();
    for a in &atts {
        attest::check(&domain, &unit, a).unwrap();
    }
    // Our hash is the contract's.
    let provider = connect(&chain.rpc_url(), Duration::from_secs(5)).unwrap();
    let call = |input: Vec<u8>| {
        alloy_rpc_types_eth::TransactionRequest::default()
            .to(d.verification)
            .input(Bytes::from(input).into())
    };
    let hash_call = IVerification::resultHashCall {
        hub: unit.hub,
        unit: unit.id,
        replicas: unit.replicas,
        digest: good,
    };
    let on_chain = provider.call(call(hash_call.abi_encode())).await.unwrap();
    assert_eq!(
        IVerification::resultHashCall::abi_decode_returns(&on_chain).unwrap(),
        attest::signing_hash(&domain, &unit, good)
    );

    let reports: Vec<_> = atts.iter().map(|a| (a.miner, a.digest)).collect();
    let Decision::Agreed {
        digest, disagree, ..
    } = decide(unit.replicas, &reports)
    else {
        panic!("two of three agree")
    };
    assert_eq!(
        (digest, disagree.clone()),
        (good, vec![miners[1].address()])
    );

    let prover = sender(&chain, &chain.keys[4], &dir.path().join("hub")).await;
    prover
        .send("challenge", d.verification, attest::challenge(&unit, &atts))
        .await
        .unwrap();
    for (key, want) in miners.iter().zip([stake, U256::ZERO, stake]) {
        let out = provider
            .call(call(
                IVerification::stakeOfCall {
                    miner: key.address(),
                }
                .abi_encode(),
            ))
            .await
            .unwrap();
        let got = IVerification::stakeOfCall::abi_decode_returns(&out).unwrap();
        assert_eq!(got.amount, want, "stake of {}", key.address());
    }
    // The same conflict cannot be cashed in twice.
    let again = prover
        .send(
            "challenge again",
            d.verification,
            attest::challenge(&unit, &atts),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("reverted"), "{again}");
}
