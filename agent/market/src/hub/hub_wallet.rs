//! A hub operator's wallet on chain: created through the HubFactory, which lists it in the
//! Whitelist and, with a deposit, registers it so it may pay miners.

use alloy_primitives::{Address, U256};
use sosna_contracts::{Deployment, IHubFactory, ISNM};

use sosna_chain::sender::Sender;
use sosna_chain::ChainError;

/// Creates a HubWallet owned by the sender's key, funded with `deposit` SNM wei, and
/// returns its address with the createHub transaction's hash.
pub async fn register(
    sender: &Sender,
    d: &Deployment,
    multiaddr: &str,
    name: &str,
    deposit: U256,
) -> Result<(Address, alloy_primitives::B256), ChainError> {
    if !deposit.is_zero() {
        let approve = ISNM::approveCall {
            spender: d.hub_factory,
            value: deposit,
        };
        sender.send("approve hub deposit", d.snm, approve).await?;
    }
    let create = IHubFactory::createHubCall {
        multiaddr: multiaddr.into(),
        name: name.into(),
        deposit,
    };
    let receipt = sender.send("create hub", d.hub_factory, create).await?;
    let wallet = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<IHubFactory::HubCreated>().ok())
        .map(|l| l.inner.data.wallet)
        .ok_or_else(|| ChainError::Decode {
            what: "createHub receipt".into(),
            reason: "no HubCreated event".into(),
        })?;
    Ok((wallet, receipt.transaction_hash))
}
