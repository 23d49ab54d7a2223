//! The chain side of tests: a journaled sender on a devnet key with timeouts short enough
//! for tests, and read-only contract calls.

use std::path::Path;
use std::time::Duration;

use alloy_primitives::{Address, Bytes};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use sosna_chain::sender::Sender;
use sosna_chain::{connect, ChainConfig};
use sosna_contracts::devnet::Devnet;

/// Polls every 50 ms and gives up on a request after 2 s: a test's anvil answers at once.
pub fn fast_config() -> ChainConfig {
    ChainConfig {
        poll_ms: 50,
        retry_max_secs: 1,
        timeout_secs: 2,
        ..ChainConfig::default()
    }
}

/// A sender for `key` on `chain`, journaling under `dir`, with [`fast_config`].
pub async fn sender(chain: &Devnet, key: &PrivateKeySigner, dir: &Path) -> Sender {
    sender_with(chain, key, dir, &fast_config()).await
}

/// A sender for `key` on `chain`, journaling under `dir`, with `cfg`'s timing.
pub async fn sender_with(
    chain: &Devnet,
    key: &PrivateKeySigner,
    dir: &Path,
    cfg: &ChainConfig,
) -> Sender {
    let provider = connect(&chain.rpc_url(), cfg.timeout()).expect("devnet RPC URL");
    Sender::open(provider, key.clone(), dir, cfg)
        .await
        .expect("open the sender's journal")
}

/// A read-only call of `call` on the contract at `to`.
pub async fn view<C: SolCall>(chain: &Devnet, to: Address, call: C) -> C::Return {
    let provider = connect(&chain.rpc_url(), Duration::from_secs(5)).expect("devnet RPC URL");
    let tx = alloy_rpc_types_eth::TransactionRequest::default()
        .to(to)
        .input(Bytes::from(call.abi_encode()).into());
    let out = provider.call(tx).await.expect("eth_call");
    C::abi_decode_returns(&out).expect("decode the call's return")
}
