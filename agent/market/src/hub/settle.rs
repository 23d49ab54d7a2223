//! A hub settles one decided unit on chain: it commits the agreed digest to the Market,
//! pays the miners who agreed from its HubWallet in one batch, and, when replicas
//! disagreed, proves it to Verification with their own signatures so the minority's stake
//! is slashed. Every step is labelled with the deal or unit it belongs to and sent at most
//! once (see [`Sender::send_once`]): settlement repeated after a crash or an RPC outage
//! finishes what is missing and doubles nothing.

use alloy_primitives::{Address, B256, U256};
use sosna_contracts::{Deployment, IHubWallet, IMarket};

use sosna_chain::journal::SentTx;
use sosna_chain::sender::Sender;
use sosna_chain::ChainError;
use sosna_proto::attest::{self, Attestation, Unit};

/// An open deal as the Market emitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deal {
    pub id: U256,
    pub terms: IMarket::Deal,
}

#[derive(Debug, Clone)]
pub struct Settlement {
    pub deal: Deal,
    pub unit: Unit,
    /// The digest a strict majority of replicas returned.
    pub digest: B256,
    /// What each agreeing miner is paid, in SNM wei.
    pub payouts: Vec<(Address, U256)>,
    /// Every replica's signed result; sent to Verification only when some disagree.
    pub attestations: Vec<Attestation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub commit: SentTx,
    pub pay: Option<SentTx>,
    pub challenge: Option<SentTx>,
}

/// Gas spent on chain by all steps.
impl Settled {
    pub fn gas_used(&self) -> u64 {
        self.commit.gas_used
            + self.pay.as_ref().map_or(0, |t| t.gas_used)
            + self.challenge.as_ref().map_or(0, |t| t.gas_used)
    }
}

/// Runs (or finishes) the settlement of `s` for the hub whose wallet is `wallet`.
pub async fn settle(
    sender: &Sender,
    d: &Deployment,
    wallet: Address,
    s: &Settlement,
) -> Result<Settled, ChainError> {
    let commit = IMarket::commitResultsCall {
        ids: vec![s.deal.id],
        deals: vec![s.deal.terms.clone()],
        digests: vec![s.digest],
    };
    let commit = sender
        .send_once(&format!("commit deal {}", s.deal.id), d.market, commit)
        .await?;
    let pay = if s.payouts.is_empty() {
        None
    } else {
        let (miners, amounts) = s.payouts.iter().copied().unzip();
        let call = IHubWallet::transferBatchCall { miners, amounts };
        Some(
            sender
                .send_once(&format!("pay unit {}", s.unit.id), wallet, call)
                .await?,
        )
    };
    let disagreeing = s.attestations.iter().any(|a| a.digest != s.digest);
    let challenge = if disagreeing {
        let call = attest::challenge(&s.unit, &s.attestations);
        Some(
            sender
                .send_once(
                    &format!("challenge unit {}", s.unit.id),
                    d.verification,
                    call,
                )
                .await?,
        )
    } else {
        None
    };
    Ok(Settled {
        commit,
        pay,
        challenge,
    })
}
