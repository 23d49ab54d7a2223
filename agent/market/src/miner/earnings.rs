//! A miner's money on chain: the stake it puts up with Verification (what a proven wrong
//! result costs it), and the pay hubs reserved for it, which it pulls into its own address.

use std::time::Duration;

use alloy_primitives::{Address, U256};
use sosna_contracts::{Deployment, IVerification, ISNM};
use tokio::sync::watch;

use sosna_chain::sender::Sender;
use sosna_chain::ChainError;

/// Stakes up to `want` with Verification (SNM wei); does nothing once staked that much.
/// Returns the stake afterwards.
pub async fn ensure_stake(sender: &Sender, d: &Deployment, want: U256) -> Result<U256, ChainError> {
    let me = sender.address();
    let have = sender
        .call(
            "Verification.stakeOf",
            d.verification,
            IVerification::stakeOfCall { miner: me },
        )
        .await?
        .amount;
    if have >= want {
        return Ok(have);
    }
    let more = want - have;
    let approve = ISNM::approveCall {
        spender: d.verification,
        value: more,
    };
    sender.send("approve stake", d.snm, approve).await?;
    let stake = IVerification::stakeCall { amount: more };
    let receipt = sender.send("stake", d.verification, stake).await?;
    tracing::info!(
        "market: staked {more} wei with Verification (tx {})",
        receipt.transaction_hash
    );
    Ok(want)
}

/// Pulls whatever `wallet` reserved for this miner. Returns the amount moved.
pub async fn withdraw(
    sender: &Sender,
    d: &Deployment,
    wallet: Address,
) -> Result<U256, ChainError> {
    let me = sender.address();
    let owed = sender
        .call(
            "SNM.allowance",
            d.snm,
            ISNM::allowanceCall {
                owner: wallet,
                spender: me,
            },
        )
        .await?;
    if owed.is_zero() {
        return Ok(owed);
    }
    let pull = ISNM::transferFromCall {
        from: wallet,
        to: me,
        value: owed,
    };
    let receipt = sender.send("withdraw pay", d.snm, pull).await?;
    tracing::info!(
        "market: withdrew {owed} wei paid by hub {wallet} (tx {})",
        receipt.transaction_hash
    );
    Ok(owed)
}

/// Every `every`, pulls the pay reserved by each hub `wallets` names, until `stop`.
pub async fn run(
    sender: std::sync::Arc<Sender>,
    d: Deployment,
    wallets: impl Fn() -> Vec<Address>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                for wallet in wallets() {
                    if let Err(e) = withdraw(&sender, &d, wallet).await {
                        tracing::info!("market: withdrawing from {wallet}: {e}");
                    }
                }
            }
        }
    }
}
