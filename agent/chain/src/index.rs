//! Event index on the state directory: the Market's deals, payouts from hub wallets and
//! Whitelist changes, read in block ranges up to `confirmations` below the head and
//! appended to `events.jsonl`, with the next block to read kept in `index.json`. A restart
//! carries on from there instead of rescanning from genesis.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256, U256};
use alloy_provider::DynProvider;
use alloy_rpc_types_eth::{Filter, Log};
use alloy_sol_types::SolEvent;
use serde::{Deserialize, Serialize};
use sosna_contracts::{Deployment, IMarket, IWhitelist, ISNM};

use super::{logs, ChainError};

pub const EVENTS_FILE: &str = "events.jsonl";
pub const CHECKPOINT_FILE: &str = "index.json";

/// What happened, in the terms the roles care about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MarketEvent {
    DealsOpened {
        buyer: Address,
        hub: Address,
        deadline: u64,
        ids: Vec<U256>,
        prices: Vec<U256>,
    },
    ResultsCommitted {
        hub: Address,
        committed_at: u64,
        ids: Vec<U256>,
        digests: Vec<B256>,
    },
    DealsClosed {
        outcome: String,
        ids: Vec<U256>,
    },
    /// A hub wallet approved `amount` SNM for a miner to pull.
    Payout {
        wallet: Address,
        miner: Address,
        amount: U256,
    },
    HubListed {
        wallet: Address,
        owner: Address,
        multiaddr: String,
        name: String,
    },
    HubDeregistered {
        wallet: Address,
    },
    TrustChanged {
        wallet: Address,
        trusted: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indexed {
    pub block: u64,
    pub tx: B256,
    pub log_index: u64,
    #[serde(flatten)]
    pub event: MarketEvent,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    chain_id: u64,
    market: Address,
    next_block: u64,
}

pub struct Indexer {
    provider: DynProvider,
    deployment: Deployment,
    dir: PathBuf,
    confirmations: u64,
    checkpoint: Checkpoint,
}

fn state_err(path: &Path, reason: impl ToString) -> ChainError {
    ChainError::State {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl Indexer {
    /// Opens the index under `dir`. An index of another deployment is refused.
    pub fn open(
        provider: DynProvider,
        deployment: Deployment,
        dir: &Path,
        confirmations: u64,
    ) -> Result<Indexer, ChainError> {
        let path = dir.join(CHECKPOINT_FILE);
        let checkpoint = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<Checkpoint>(&bytes).map_err(|e| state_err(&path, e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint {
                chain_id: deployment.chain_id,
                market: deployment.market,
                next_block: 0,
            },
            Err(e) => return Err(state_err(&path, e)),
        };
        if checkpoint.chain_id != deployment.chain_id || checkpoint.market != deployment.market {
            return Err(state_err(
                &path,
                format!(
                    "indexes market {} on chain {}, the deployment names {} on chain {}",
                    checkpoint.market, checkpoint.chain_id, deployment.market, deployment.chain_id
                ),
            ));
        }
        Ok(Indexer {
            provider,
            deployment,
            dir: dir.to_owned(),
            confirmations,
            checkpoint,
        })
    }

    /// The first block not indexed yet.
    pub fn next_block(&self) -> u64 {
        self.checkpoint.next_block
    }

    /// Reads every confirmed block not indexed yet; returns the new events, already
    /// stored. Events are written before the checkpoint moves, so a crash in between
    /// re-reads a range: readers drop duplicates by (block, log index).
    pub async fn catch_up(&mut self) -> Result<Vec<Indexed>, ChainError> {
        let head = logs::head(&self.provider).await?;
        let Some(last) = (head + 1).checked_sub(self.confirmations) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        while self.checkpoint.next_block <= last {
            // One chunk at a time, so the checkpoint moves as each is stored.
            let from = self.checkpoint.next_block;
            let to = last.min(from + logs::CHUNK_BLOCKS - 1);
            let d = &self.deployment;
            let filter = Filter::new()
                .address(vec![d.market, d.snm, d.whitelist])
                .event_signature(vec![
                    IMarket::DealsOpened::SIGNATURE_HASH,
                    IMarket::ResultsCommitted::SIGNATURE_HASH,
                    IMarket::DealsClosed::SIGNATURE_HASH,
                    ISNM::Reserved::SIGNATURE_HASH,
                    IWhitelist::HubListed::SIGNATURE_HASH,
                    IWhitelist::HubDeregistered::SIGNATURE_HASH,
                    IWhitelist::TrustChanged::SIGNATURE_HASH,
                ]);
            let logs = logs::read(&self.provider, &filter, from, to, "market events").await?;
            let batch: Vec<Indexed> = logs
                .iter()
                .filter_map(|log| decode(d, log).transpose())
                .collect::<Result<_, _>>()?;
            self.append(&batch)?;
            self.checkpoint.next_block = to + 1;
            self.save_checkpoint()?;
            found.extend(batch);
        }
        Ok(found)
    }

    /// Everything indexed so far, oldest first, without duplicates.
    pub fn events(&self) -> Result<Vec<Indexed>, ChainError> {
        let path = self.dir.join(EVENTS_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_err(&path, e)),
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| state_err(&path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let ev: Indexed = serde_json::from_str(&line)
                .map_err(|e| state_err(&path, format!("line {}: {e}", n + 1)))?;
            if seen.insert((ev.block, ev.log_index)) {
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn append(&self, batch: &[Indexed]) -> Result<(), ChainError> {
        if batch.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(EVENTS_FILE);
        std::fs::create_dir_all(&self.dir).map_err(|e| state_err(&self.dir, e))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| state_err(&path, e))?;
        let mut text = String::new();
        for ev in batch {
            text.push_str(&serde_json::to_string(ev).expect("events serialise"));
            text.push('\n');
        }
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| state_err(&path, e))
    }

    fn save_checkpoint(&self) -> Result<(), ChainError> {
        let path = self.dir.join(CHECKPOINT_FILE);
        let text = serde_json::to_vec(&self.checkpoint).expect("checkpoint serialises");
        sosna_durable::write_atomic(&path, &text, sosna_durable::Durability::Synced)
            .map_err(|e| state_err(&path, e))
    }
}

/// Our event for `log`, None for a log of a known contract we do not index.
fn decode(d: &Deployment, log: &Log) -> Result<Option<Indexed>, ChainError> {
    let bad = |e: alloy_sol_types::Error| ChainError::Decode {
        what: format!("log {:?} of {}", log.topic0(), log.address()),
        reason: e.to_string(),
    };
    let topic = log.topic0().copied().unwrap_or_default();
    let event = if log.address() == d.market {
        match topic {
            IMarket::DealsOpened::SIGNATURE_HASH => {
                let e = log.log_decode::<IMarket::DealsOpened>().map_err(bad)?;
                let e = e.inner.data;
                MarketEvent::DealsOpened {
                    buyer: e.buyer,
                    hub: e.hub,
                    deadline: e.deadline.to::<u64>(),
                    ids: e.ids,
                    prices: e.prices.iter().map(|p| U256::from(*p)).collect(),
                }
            }
            IMarket::ResultsCommitted::SIGNATURE_HASH => {
                let e = log.log_decode::<IMarket::ResultsCommitted>().map_err(bad)?;
                let e = e.inner.data;
                MarketEvent::ResultsCommitted {
                    hub: e.hub,
                    committed_at: e.committedAt.to::<u64>(),
                    ids: e.ids,
                    digests: e.digests,
                }
            }
            IMarket::DealsClosed::SIGNATURE_HASH => {
                let e = log.log_decode::<IMarket::DealsClosed>().map_err(bad)?;
                let e = e.inner.data;
                MarketEvent::DealsClosed {
                    outcome: format!("{:?}", e.outcome),
                    ids: e.ids,
                }
            }
            _ => return Ok(None),
        }
    } else if log.address() == d.snm && topic == ISNM::Reserved::SIGNATURE_HASH {
        let e = log.log_decode::<ISNM::Reserved>().map_err(bad)?.inner.data;
        MarketEvent::Payout {
            wallet: e.owner,
            miner: e.spender,
            amount: e.amount,
        }
    } else if log.address() == d.whitelist {
        match topic {
            IWhitelist::HubListed::SIGNATURE_HASH => {
                let e = log.log_decode::<IWhitelist::HubListed>().map_err(bad)?;
                let e = e.inner.data;
                MarketEvent::HubListed {
                    wallet: e.wallet,
                    owner: e.owner,
                    multiaddr: e.multiaddr,
                    name: e.name,
                }
            }
            IWhitelist::HubDeregistered::SIGNATURE_HASH => {
                let e = log
                    .log_decode::<IWhitelist::HubDeregistered>()
                    .map_err(bad)?;
                MarketEvent::HubDeregistered {
                    wallet: e.inner.data.wallet,
                }
            }
            IWhitelist::TrustChanged::SIGNATURE_HASH => {
                let e = log.log_decode::<IWhitelist::TrustChanged>().map_err(bad)?;
                MarketEvent::TrustChanged {
                    wallet: e.inner.data.wallet,
                    trusted: e.inner.data.trusted,
                }
            }
            _ => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(Indexed {
        block: log.block_number.unwrap_or_default(),
        tx: log.transaction_hash.unwrap_or_default(),
        log_index: log.log_index.unwrap_or_default(),
        event,
    }))
}
