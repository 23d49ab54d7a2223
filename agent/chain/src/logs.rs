//! The one way sosna reads event logs: a block range read in chunks (RPC endpoints cap
//! the range of one `eth_getLogs`), errors named by what was asked, and typed decoding.

use alloy_provider::{DynProvider, Provider};
use alloy_rpc_types_eth::{Filter, Log};
use alloy_sol_types::SolEvent;

use super::ChainError;

/// Blocks per `eth_getLogs`: public endpoints commonly refuse wider ranges.
pub const CHUNK_BLOCKS: u64 = 2_000;

/// The latest block number.
pub async fn head(provider: &DynProvider) -> Result<u64, ChainError> {
    provider
        .get_block_number()
        .await
        .map_err(|e| ChainError::Rpc {
            what: "eth_blockNumber".into(),
            reason: e.to_string(),
        })
}

/// Logs matching `filter` (its addresses and topics; its block range is ignored) in blocks
/// `from..=to`, oldest first. `what` names the read in errors.
pub async fn read(
    provider: &DynProvider,
    filter: &Filter,
    from: u64,
    to: u64,
    what: &str,
) -> Result<Vec<Log>, ChainError> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = to.min(start.saturating_add(CHUNK_BLOCKS - 1));
        let chunk = filter.clone().from_block(start).to_block(end);
        let logs = provider
            .get_logs(&chunk)
            .await
            .map_err(|e| ChainError::Rpc {
                what: format!("eth_getLogs {what} (blocks {start}..={end})"),
                reason: e.to_string(),
            })?;
        out.extend(logs);
        start = end + 1;
    }
    Ok(out)
}

/// `log` as the event `E`, or an error naming the event.
pub fn decode<E: SolEvent>(log: &Log) -> Result<E, ChainError> {
    log.log_decode::<E>()
        .map(|l| l.inner.data)
        .map_err(|e| ChainError::Decode {
            what: format!("{} event", E::SIGNATURE),
            reason: e.to_string(),
        })
}
