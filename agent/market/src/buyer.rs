//! The buyer's side of a deal: escrow the price on the Market naming a hub, hand the task
//! to that hub over the bus, follow it, then trust the result only if its digest is the
//! one the hub committed on chain, and confirm (which pays the hub). A hub that stays
//! silent past the deadline gets nothing: the buyer cancels and the Market refunds it.

use std::time::Duration;

use alloy_primitives::{Address, Uint, B256, U256};
use alloy_rpc_types_eth::Filter;
use alloy_sol_types::SolEvent;
use libp2p::{Multiaddr, PeerId};
use sosna_contracts::{Deployment, IMarket, ISNM};

use crate::hub::settle::Deal;
use sosna_bus::Bus;
use sosna_chain::journal::SentTx;
use sosna_chain::sender::Sender;
use sosna_chain::{logs, ChainError};
use sosna_proto::bus::messages::{JobPhase, JobStatus, JobSubmission, Request, Response};
use sosna_proto::result::ResultBundle;
use sosna_proto::task::TaskSpec;

#[derive(Debug, thiserror::Error)]
pub enum BuyError {
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error("hub: {0}")]
    Hub(String),
    #[error("the hub refused: {0}")]
    Refused(String),
    #[error("job failed at the hub: {0}")]
    Failed(String),
    #[error("no result by the deal's deadline ({0})")]
    Deadline(String),
    #[error("result digest {got} is not the digest {committed} the hub committed on chain")]
    DigestMismatch { got: B256, committed: B256 },
    #[error("task spec: {0}")]
    Spec(String),
}

/// What to buy.
#[derive(Debug, Clone)]
pub struct Order {
    pub spec: TaskSpec,
    /// Most the buyer pays, SNM wei: escrowed whole, paid to the hub on confirmation.
    pub price: U256,
    pub replicas: u16,
    /// Seconds from now until the deal's deadline.
    pub deadline_secs: u64,
}

/// Where the hub is on the bus.
#[derive(Debug, Clone)]
pub struct HubAddr {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

pub struct Buyer<'a> {
    pub sender: &'a Sender,
    pub deployment: &'a Deployment,
    pub bus: &'a Bus,
}

/// A deal opened on chain, and the block it was opened in.
#[derive(Debug, Clone)]
pub struct Opened {
    pub deal: Deal,
    pub block: u64,
    pub txs: Vec<SentTx>,
}

impl Buyer<'_> {
    /// Asks the hub for its wallet (signed by its owner key).
    pub async fn hub_wallet(&self, hub: &HubAddr) -> Result<Address, BuyError> {
        match self.request(hub, Request::HubMetadata).await? {
            (from, Response::HubMetadata(m)) if m.owner == from => Ok(m.wallet),
            (_, other) => Err(BuyError::Hub(format!("metadata answered with {other:?}"))),
        }
    }

    /// Approves the Market for the price and opens the deal naming `wallet`.
    pub async fn open(&self, wallet: Address, order: &Order) -> Result<Opened, BuyError> {
        let d = self.deployment;
        let deadline = now_secs() + order.deadline_secs;
        let approve = ISNM::approveCall {
            spender: d.market,
            value: order.price,
        };
        let approved = self
            .sender
            .send("approve the Market", d.snm, approve)
            .await?;
        let open = IMarket::openDealCall {
            hub: wallet,
            price: Uint::<96, 2>::saturating_from(order.price),
            deadline: Uint::<40, 1>::saturating_from(deadline),
        };
        let receipt = self.sender.send("open deal", d.market, open).await?;
        let opened = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<IMarket::DealsOpened>().ok())
            .ok_or_else(|| ChainError::Decode {
                what: "openDeal receipt".into(),
                reason: "no DealsOpened event".into(),
            })?
            .inner
            .data;
        let id = *opened.ids.first().ok_or_else(|| ChainError::Decode {
            what: "DealsOpened".into(),
            reason: "no deal id".into(),
        })?;
        let block = receipt.block_number.unwrap_or_default();
        Ok(Opened {
            deal: Deal {
                id,
                terms: IMarket::Deal {
                    buyer: self.sender.address(),
                    hub: wallet,
                    price: opened.prices[0],
                    deadline: opened.deadline,
                    committedAt: Uint::ZERO,
                },
            },
            block,
            txs: [("approve the Market", &approved), ("open deal", &receipt)]
                .into_iter()
                .map(|(label, r)| SentTx {
                    label: label.into(),
                    hash: r.transaction_hash,
                    block: r.block_number.unwrap_or_default(),
                    gas_used: r.gas_used,
                    ok: true,
                })
                .collect(),
        })
    }

    /// Hands the task to the hub.
    pub async fn submit(&self, hub: &HubAddr, deal: &Deal, order: &Order) -> Result<(), BuyError> {
        let spec = serde_json::to_string(&order.spec).map_err(|e| BuyError::Spec(e.to_string()))?;
        let job = JobSubmission {
            deal: deal.id,
            price: U256::from(deal.terms.price),
            deadline: deal.terms.deadline.to::<u64>(),
            replicas: order.replicas,
            spec,
        };
        match self.request(hub, Request::Submit(job)).await? {
            (_, Response::Accepted) => Ok(()),
            (_, Response::Refused(why)) => Err(BuyError::Refused(why)),
            (_, other) => Err(BuyError::Hub(format!("submit answered with {other:?}"))),
        }
    }

    /// Polls the hub until the job is done, calling `progress` on every change. Gives up
    /// at the deal's deadline.
    pub async fn follow(
        &self,
        hub: &HubAddr,
        deal: &Deal,
        every: Duration,
        mut progress: impl FnMut(&JobStatus),
    ) -> Result<JobStatus, BuyError> {
        let deadline = deal.terms.deadline.to::<u64>();
        let mut last: Option<JobStatus> = None;
        let mut last_error = String::from("no answer yet");
        loop {
            match self.request(hub, Request::Job { deal: deal.id }).await {
                Ok((_, Response::Job(status))) => {
                    if last.as_ref() != Some(&status) {
                        progress(&status);
                        last = Some(status.clone());
                    }
                    match status.phase {
                        JobPhase::Done => return Ok(status),
                        JobPhase::Failed => return Err(BuyError::Failed(status.detail)),
                        JobPhase::Running | JobPhase::Settling => {}
                    }
                }
                Ok((_, other)) => last_error = format!("{other:?}"),
                Err(e) => last_error = e.to_string(),
            }
            if now_secs() > deadline {
                return Err(BuyError::Deadline(last_error));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The digest and commit time the hub put on chain for `deal`, searching from the block
    /// the deal was opened in; None if nothing is committed yet.
    pub async fn committed(
        &self,
        deal: &Deal,
        from_block: u64,
    ) -> Result<Option<(B256, u64)>, BuyError> {
        let filter = Filter::new()
            .address(self.deployment.market)
            .event_signature(IMarket::ResultsCommitted::SIGNATURE_HASH)
            .topic1(deal.terms.hub.into_word());
        let provider = self.sender.provider();
        let head = logs::head(provider).await?;
        let found = logs::read(provider, &filter, from_block, head, "ResultsCommitted").await?;
        for log in found {
            let Ok(ev) = logs::decode::<IMarket::ResultsCommitted>(&log) else {
                continue;
            };
            if let Some(i) = ev.ids.iter().position(|id| *id == deal.id) {
                let digest = *ev.digests.get(i).ok_or_else(|| ChainError::Decode {
                    what: "ResultsCommitted".into(),
                    reason: "fewer digests than ids".into(),
                })?;
                return Ok(Some((digest, ev.committedAt.to::<u64>())));
            }
        }
        Ok(None)
    }

    /// Checks `result` against the committed digest and confirms the deal, paying the hub.
    pub async fn accept(
        &self,
        deal: &Deal,
        from_block: u64,
        result: &ResultBundle,
    ) -> Result<SentTx, BuyError> {
        let (committed, at) = self.committed(deal, from_block).await?.ok_or_else(|| {
            BuyError::Hub(format!("deal {} has no result committed on chain", deal.id))
        })?;
        let got = result.digest();
        if got != committed {
            return Err(BuyError::DigestMismatch { got, committed });
        }
        let mut terms = deal.terms.clone();
        terms.committedAt = Uint::<40, 1>::saturating_from(at);
        let confirm = IMarket::confirmDealsCall {
            ids: vec![deal.id],
            deals: vec![terms],
        };
        let label = format!("confirm deal {}", deal.id);
        Ok(self
            .sender
            .send_once(&label, self.deployment.market, confirm)
            .await?)
    }

    /// Takes the price back from a deal nobody committed a result for; allowed once the
    /// deadline has passed (or the hub left the whitelist).
    pub async fn cancel(&self, deal: &Deal) -> Result<SentTx, BuyError> {
        let cancel = IMarket::cancelDealCall {
            id: deal.id,
            deal: deal.terms.clone(),
        };
        let label = format!("cancel deal {}", deal.id);
        Ok(self
            .sender
            .send_once(&label, self.deployment.market, cancel)
            .await?)
    }

    async fn request(
        &self,
        hub: &HubAddr,
        request: Request,
    ) -> Result<(Address, Response), BuyError> {
        self.bus
            .request(hub.peer, hub.addrs.clone(), request)
            .await
            .map_err(|e| BuyError::Hub(e.to_string()))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
