//! What the miners' trust flow reads from the chain, behind a small trait so the flow can be
//! tested without a node. [`RpcChain`] is the real view: eth_call and eth_getLogs against
//! the contracts of a deployment file, over the chain client's provider (with its
//! request timeout) and errors.

use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_provider::{DynProvider, Provider};
use alloy_rpc_types_eth::{Filter, TransactionInput, TransactionRequest};
use alloy_sol_types::{SolCall, SolEvent};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sosna_contracts::{Deployment, IHubWallet, IVerification, IWhitelist, ISNM};

use sosna_chain::logs;
pub use sosna_chain::ChainError;

/// A hub's Whitelist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhitelistRecord {
    pub owner: Address,
    /// Listed and not deregistered.
    pub listed: bool,
    /// The DAO's trusted flag.
    pub trusted: bool,
    pub multiaddr: String,
    pub name: String,
}

/// A HubWallet's state and purse, in SNM wei.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletStatus {
    /// In state Registered: it can pay miners.
    pub registered: bool,
    pub state: String,
    pub spendable: U256,
    pub frozen: U256,
}

/// One payout the wallet made (an SNM `Reserved(wallet, miner, amount)` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub miner: Address,
    pub amount: U256,
    pub block: u64,
}

#[async_trait]
pub trait ChainView: Send + Sync {
    /// The Whitelist entry for `wallet`, or None if it was never listed.
    async fn whitelist_record(
        &self,
        wallet: Address,
    ) -> Result<Option<WhitelistRecord>, ChainError>;
    async fn wallet_status(&self, wallet: Address) -> Result<WalletStatus, ChainError>;
    /// The owner a HubWallet records, or None if `wallet` is not a HubWallet.
    async fn wallet_owner(&self, wallet: Address) -> Result<Option<Address>, ChainError>;
    /// What `miner` has staked with Verification, in SNM wei.
    async fn stake_of(&self, miner: Address) -> Result<U256, ChainError>;
    /// Recent payouts from `wallet`, all of them or only those to `miner`.
    async fn payouts(
        &self,
        wallet: Address,
        miner: Option<Address>,
    ) -> Result<Vec<Payout>, ChainError>;
}

/// The contracts of one deployment, read over JSON-RPC.
pub struct RpcChain {
    provider: DynProvider,
    deployment: Deployment,
    /// How many blocks back "recent" payouts reach.
    lookback_blocks: u64,
}

impl RpcChain {
    pub fn connect(
        url: &str,
        deployment: Deployment,
        lookback_blocks: u64,
        timeout: std::time::Duration,
    ) -> Result<RpcChain, ChainError> {
        Ok(RpcChain {
            provider: sosna_chain::connect(url, timeout)?,
            deployment,
            lookback_blocks,
        })
    }

    async fn call<C: SolCall>(&self, to: Address, call: C) -> Result<C::Return, ChainError> {
        let what = format!("{} on {to}", C::SIGNATURE);
        let tx = TransactionRequest {
            to: Some(TxKind::Call(to)),
            input: TransactionInput::new(Bytes::from(call.abi_encode())),
            ..Default::default()
        };
        let out = self.provider.call(tx).await.map_err(|e| ChainError::Rpc {
            what: what.clone(),
            reason: e.to_string(),
        })?;
        C::abi_decode_returns(&out).map_err(|e| ChainError::Decode {
            what,
            reason: e.to_string(),
        })
    }
}

#[async_trait]
impl ChainView for RpcChain {
    async fn whitelist_record(
        &self,
        wallet: Address,
    ) -> Result<Option<WhitelistRecord>, ChainError> {
        let hub = self
            .call(self.deployment.whitelist, IWhitelist::hubCall { wallet })
            .await?;
        if hub.status == IWhitelist::Status::None {
            return Ok(None);
        }
        Ok(Some(WhitelistRecord {
            owner: hub.owner,
            listed: hub.status == IWhitelist::Status::Listed,
            trusted: hub.trusted,
            multiaddr: hub.multiaddr,
            name: hub.name,
        }))
    }

    async fn wallet_status(&self, wallet: Address) -> Result<WalletStatus, ChainError> {
        let state = self.call(wallet, IHubWallet::stateCall {}).await?;
        let spendable = self.call(wallet, IHubWallet::spendableCall {}).await?;
        let frozen = self.call(wallet, IHubWallet::frozenFundsCall {}).await?;
        Ok(WalletStatus {
            registered: state == IHubWallet::State::Registered,
            state: format!("{state:?}"),
            spendable,
            frozen,
        })
    }

    async fn wallet_owner(&self, wallet: Address) -> Result<Option<Address>, ChainError> {
        match self.call(wallet, IHubWallet::ownerCall {}).await {
            Ok(owner) if owner != Address::ZERO => Ok(Some(owner)),
            Ok(_) => Ok(None),
            // No code there, or code that is not a HubWallet.
            Err(ChainError::Decode { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn stake_of(&self, miner: Address) -> Result<U256, ChainError> {
        let stake = IVerification::stakeOfCall { miner };
        Ok(self.call(self.deployment.verification, stake).await?.amount)
    }

    async fn payouts(
        &self,
        wallet: Address,
        miner: Option<Address>,
    ) -> Result<Vec<Payout>, ChainError> {
        let head = logs::head(&self.provider).await?;
        let mut filter = Filter::new()
            .address(self.deployment.snm)
            .event_signature(ISNM::Reserved::SIGNATURE_HASH)
            .topic1(wallet.into_word());
        if let Some(miner) = miner {
            filter = filter.topic2(miner.into_word());
        }
        let from = head.saturating_sub(self.lookback_blocks);
        logs::read(&self.provider, &filter, from, head, "Reserved")
            .await?
            .iter()
            .map(|log| {
                let event = logs::decode::<ISNM::Reserved>(log)?;
                Ok(Payout {
                    miner: event.spender,
                    amount: event.amount,
                    block: log.block_number.unwrap_or_default(),
                })
            })
            .collect()
    }
}
