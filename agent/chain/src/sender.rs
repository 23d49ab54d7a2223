//! Sends transactions signed with the node's key. Each is journaled (see [`super::journal`])
//! before it is broadcast; broadcasting and waiting retry with backoff while the RPC
//! endpoint is down, and a transaction counts as done once `confirmations` blocks hold it.
//! After a restart, [`Sender::resume`] drives what the journal still holds to the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_network::{EthereumWallet, TransactionBuilder};
use alloy_primitives::{Address, Bytes, TxKind};
use alloy_provider::{DynProvider, Provider};
use alloy_rpc_types_eth::{TransactionInput, TransactionReceipt, TransactionRequest};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use alloy_transport::{RpcError, TransportErrorKind};
use tokio::sync::Mutex;

use super::journal::{Journal, PendingTx, SentTx, JOURNAL_FILE};
use super::{Backoff, ChainConfig, ChainError};

/// How many polls without a receipt before the signed bytes are broadcast again (a node
/// may have dropped them from its pool, or restarted).
const REBROADCAST_POLLS: u32 = 10;
/// Polls in a row that must find our nonce spent and our transaction unknown before it
/// counts as superseded.
const SUPERSEDED_POLLS: u32 = 3;

pub struct Sender {
    provider: DynProvider,
    wallet: EthereumWallet,
    address: Address,
    chain_id: u64,
    path: PathBuf,
    journal: Mutex<Journal>,
    cfg: ChainConfig,
    retries: AtomicU64,
}

type RpcResult<T> = Result<T, RpcError<TransportErrorKind>>;

impl Sender {
    /// Opens the journal under `dir` and learns the chain id (waiting out an outage). A
    /// journal written for another chain is refused rather than mixed up.
    pub async fn open(
        provider: DynProvider,
        key: PrivateKeySigner,
        dir: &std::path::Path,
        cfg: &ChainConfig,
    ) -> Result<Sender, ChainError> {
        let path = dir.join(JOURNAL_FILE);
        let mut journal = Journal::load(&path)?;
        let mut sender = Sender {
            address: key.address(),
            wallet: EthereumWallet::from(key),
            provider,
            chain_id: 0,
            path,
            journal: Mutex::new(Journal::default()),
            cfg: cfg.clone(),
            retries: AtomicU64::new(0),
        };
        let chain_id = sender
            .retry("eth_chainId", || sender.provider.get_chain_id())
            .await?;
        if journal.chain_id == 0 {
            journal.chain_id = chain_id;
        } else if journal.chain_id != chain_id {
            return Err(ChainError::WrongChain {
                what: format!("the journal {}", sender.path.display()),
                got: journal.chain_id,
                want: chain_id,
            });
        }
        sender.chain_id = chain_id;
        sender.journal = Mutex::new(journal);
        Ok(sender)
    }

    pub fn address(&self) -> Address {
        self.address
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// RPC calls retried so far because the endpoint was unreachable.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The provider this sender talks through, for reads of its own.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Reads `call` from `to` at the latest block, retried like everything else while the
    /// endpoint is down. A revert is an error naming `what`.
    pub async fn call<C: SolCall>(
        &self,
        what: &str,
        to: Address,
        call: C,
    ) -> Result<C::Return, ChainError> {
        let tx = TransactionRequest::default()
            .to(to)
            .input(TransactionInput::new(Bytes::from(call.abi_encode())));
        let out = self.retry(what, || self.provider.call(tx.clone())).await?;
        C::abi_decode_returns(&out).map_err(|e| ChainError::Decode {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Transactions signed but not yet confirmed.
    pub async fn pending(&self) -> Vec<PendingTx> {
        self.journal.lock().await.pending.clone()
    }

    /// Signs, journals, broadcasts and confirms one contract call.
    pub async fn send<C: SolCall>(
        &self,
        label: &str,
        to: Address,
        call: C,
    ) -> Result<TransactionReceipt, ChainError> {
        self.send_raw(label, to, Bytes::from(call.abi_encode()))
            .await
    }

    /// Sends `call` unless a transaction labelled `label` was already confirmed or is still
    /// journaled: the label is an idempotency key, so a step repeated after a crash or a
    /// restart is sent at most once. A step that was mined but reverted is an error.
    pub async fn send_once<C: SolCall>(
        &self,
        label: &str,
        to: Address,
        call: C,
    ) -> Result<SentTx, ChainError> {
        let (done, pending) = {
            let journal = self.journal.lock().await;
            (
                journal
                    .sent
                    .iter()
                    .rev()
                    .find(|s| s.label == label)
                    .cloned(),
                journal.pending.iter().find(|p| p.label == label).cloned(),
            )
        };
        let receipt = match (done, pending) {
            (Some(sent), _) if sent.ok => return Ok(sent),
            (Some(sent), _) => {
                return Err(ChainError::Reverted {
                    what: label.to_owned(),
                    reason: format!("tx {} failed in block {}", sent.hash, sent.block),
                })
            }
            (None, Some(tx)) => self.submit(tx).await?,
            (None, None) => {
                self.send_raw(label, to, Bytes::from(call.abi_encode()))
                    .await?
            }
        };
        Ok(SentTx {
            label: label.to_owned(),
            hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
            gas_used: receipt.gas_used,
            ok: true,
        })
    }

    /// [`Sender::send`] for calldata encoded elsewhere.
    pub async fn send_raw(
        &self,
        label: &str,
        to: Address,
        input: Bytes,
    ) -> Result<TransactionReceipt, ChainError> {
        let tx = self.prepare(label, to, input).await?;
        self.submit(tx).await
    }

    /// Picks the nonce, estimates gas (a call that would revert fails here, costing
    /// nothing), signs, and journals the transaction. Nothing is broadcast yet.
    pub async fn prepare(
        &self,
        label: &str,
        to: Address,
        input: Bytes,
    ) -> Result<PendingTx, ChainError> {
        let mut journal = self.journal.lock().await;
        let counted = self
            .retry("eth_getTransactionCount", || {
                self.provider.get_transaction_count(self.address).pending()
            })
            .await?;
        let nonce = counted.max(journal.next_nonce);
        let mut request = TransactionRequest {
            from: Some(self.address),
            to: Some(TxKind::Call(to)),
            input: TransactionInput::new(input),
            nonce: Some(nonce),
            chain_id: Some(self.chain_id),
            ..Default::default()
        };
        let gas = self
            .retry("eth_estimateGas", || {
                self.provider.estimate_gas(request.clone())
            })
            .await
            .map_err(|e| match e {
                ChainError::Rpc { reason, .. } => ChainError::Reverted {
                    what: label.to_owned(),
                    reason,
                },
                other => other,
            })?;
        let fees = self
            .retry("fee estimate", || self.provider.estimate_eip1559_fees())
            .await?;
        // Headroom: state may move between estimate and inclusion.
        request.set_gas_limit(gas + gas / 5);
        request.set_max_fee_per_gas(fees.max_fee_per_gas);
        request.set_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = request
            .build(&self.wallet)
            .await
            .map_err(|e| ChainError::Rpc {
                what: format!("signing {label}"),
                reason: e.to_string(),
            })?;
        use alloy_eips::eip2718::Encodable2718;
        let tx = PendingTx {
            nonce,
            hash: *envelope.tx_hash(),
            raw: Bytes::from(envelope.encoded_2718()),
            label: label.to_owned(),
        };
        journal.pending.push(tx.clone());
        journal.next_nonce = nonce + 1;
        journal.save(&self.path)?;
        tracing::info!("chain: {label}: tx {} nonce {nonce}", tx.hash);
        Ok(tx)
    }

    /// Broadcasts a journaled transaction and waits for its confirmations, sending the same
    /// bytes again if the node seems to have lost them. The journal forgets it once it is
    /// confirmed (or its nonce was taken by another transaction of this key).
    pub async fn submit(&self, tx: PendingTx) -> Result<TransactionReceipt, ChainError> {
        let outcome = self.drive(&tx).await;
        // Other errors keep it journaled: it may still land, and resume() looks again.
        if matches!(outcome, Ok(_) | Err(ChainError::Superseded { .. })) {
            let mut journal = self.journal.lock().await;
            journal.remove(&tx.hash);
            if let Ok(r) = &outcome {
                journal.record(SentTx {
                    label: tx.label.clone(),
                    hash: tx.hash,
                    block: r.block_number.unwrap_or_default(),
                    gas_used: r.gas_used,
                    ok: r.status(),
                });
            }
            journal.save(&self.path)?;
        }
        let receipt = outcome?;
        if !receipt.status() {
            return Err(ChainError::Reverted {
                what: tx.label.clone(),
                reason: format!(
                    "tx {} failed in block {}",
                    tx.hash,
                    receipt.block_number.unwrap_or_default()
                ),
            });
        }
        tracing::info!(
            "chain: {}: confirmed in block {} ({} gas)",
            tx.label,
            receipt.block_number.unwrap_or_default(),
            receipt.gas_used
        );
        Ok(receipt)
    }

    /// Finishes every transaction the journal holds (e.g. after a restart), in nonce order.
    pub async fn resume(&self) -> Vec<(PendingTx, Result<TransactionReceipt, ChainError>)> {
        let mut pending = self.pending().await;
        pending.sort_by_key(|t| t.nonce);
        let mut out = Vec::new();
        for tx in pending {
            tracing::info!("chain: resuming {} (nonce {})", tx.label, tx.nonce);
            let result = self.submit(tx.clone()).await;
            out.push((tx, result));
        }
        out
    }

    async fn drive(&self, tx: &PendingTx) -> Result<TransactionReceipt, ChainError> {
        let mut spent_polls = 0;
        loop {
            match self
                .retry("eth_sendRawTransaction", || {
                    self.provider.send_raw_transaction(&tx.raw)
                })
                .await
            {
                Ok(_) => {}
                // "already known", "nonce too low": it may be mined already; the receipt
                // tells.
                Err(ChainError::Rpc { reason, .. }) => {
                    tracing::debug!("chain: {} broadcast: {reason}", tx.label)
                }
                Err(e) => return Err(e),
            }
            for _ in 0..REBROADCAST_POLLS {
                let receipt = self
                    .retry("eth_getTransactionReceipt", || {
                        self.provider.get_transaction_receipt(tx.hash)
                    })
                    .await?;
                if let Some(receipt) = receipt {
                    let mined = receipt.block_number.unwrap_or_default();
                    let head = self
                        .retry("eth_blockNumber", || self.provider.get_block_number())
                        .await?;
                    if head + 1 >= mined + self.cfg.confirmations {
                        return Ok(receipt);
                    }
                } else {
                    let used = self
                        .retry("eth_getTransactionCount", || {
                            self.provider.get_transaction_count(self.address).latest()
                        })
                        .await?;
                    if used > tx.nonce {
                        // Our nonce is spent but our receipt is missing. A node may count
                        // the nonce before it indexes the receipt (anvil under load did),
                        // so only a node that no longer knows our transaction at all, on
                        // several polls running, means another transaction took the nonce.
                        let known = self
                            .retry("eth_getTransactionByHash", || {
                                self.provider.get_transaction_by_hash(tx.hash)
                            })
                            .await?;
                        if known.is_some() {
                            spent_polls = 0;
                        } else {
                            spent_polls += 1;
                            if spent_polls >= SUPERSEDED_POLLS {
                                return Err(ChainError::Superseded {
                                    what: tx.label.clone(),
                                    nonce: tx.nonce,
                                });
                            }
                        }
                    }
                }
                tokio::time::sleep(self.cfg.poll()).await;
            }
        }
    }

    /// Calls `f` until it does not fail for want of a connection, backing off in between.
    /// An error the node itself returns (a revert, a bad request) is not retried.
    async fn retry<T, F, Fut>(&self, what: &str, f: F) -> Result<T, ChainError>
    where
        F: Fn() -> Fut,
        Fut: std::future::IntoFuture<Output = RpcResult<T>>,
    {
        let mut backoff: Backoff = self.cfg.retry();
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(RpcError::Transport(kind)) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!("chain: {what}: {kind}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    return Err(ChainError::Rpc {
                        what: what.to_owned(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
}
