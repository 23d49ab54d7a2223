//! The sender's journal on the state directory: the next nonce and every signed transaction
//! not yet confirmed. A transaction is written here before it is broadcast, so after a
//! crash or an outage the same signed bytes are sent again: it lands once or not at all,
//! and its nonce is never handed to another transaction.

use std::path::Path;

use alloy_primitives::{Bytes, B256};
use serde::{Deserialize, Serialize};

use super::ChainError;

pub const JOURNAL_FILE: &str = "txs.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTx {
    pub nonce: u64,
    pub hash: B256,
    /// The signed EIP-2718 envelope.
    pub raw: Bytes,
    /// What the transaction does, for logs and `sosna` status output.
    pub label: String,
}

/// A transaction that reached its confirmations, kept so that a caller repeating a step
/// after a restart (same label) learns it is done instead of sending it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentTx {
    pub label: String,
    pub hash: B256,
    pub block: u64,
    pub gas_used: u64,
    /// False when it was mined but reverted.
    pub ok: bool,
}

/// How many confirmed transactions the journal remembers.
pub const SENT_KEPT: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// Chain the nonces belong to.
    pub chain_id: u64,
    /// The nonce the next transaction gets, unless the chain already counts higher.
    pub next_nonce: u64,
    pub pending: Vec<PendingTx>,
    #[serde(default)]
    pub sent: Vec<SentTx>,
}

impl Journal {
    /// Reads the journal; a missing file is an empty journal.
    pub fn load(path: &Path) -> Result<Journal, ChainError> {
        let err = |reason: String| ChainError::State {
            path: path.to_owned(),
            reason,
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal::default()),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Writes the journal durably: temp file, fsync, rename, fsync the directory.
    pub fn save(&self, path: &Path) -> Result<(), ChainError> {
        let err = |reason: String| ChainError::State {
            path: path.to_owned(),
            reason,
        };
        let text = serde_json::to_vec_pretty(self).expect("journal serialises");
        sosna_durable::write_atomic(path, &text, sosna_durable::Durability::Synced)
            .map_err(|e| err(e.to_string()))
    }

    /// Drops a confirmed or superseded transaction.
    pub fn remove(&mut self, hash: &B256) {
        self.pending.retain(|p| p.hash != *hash);
    }

    /// Records a confirmed transaction, forgetting the oldest beyond [`SENT_KEPT`].
    pub fn record(&mut self, sent: SentTx) {
        self.sent.push(sent);
        if self.sent.len() > SENT_KEPT {
            let extra = self.sent.len() - SENT_KEPT;
            self.sent.drain(..extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain").join(JOURNAL_FILE);
        assert_eq!(Journal::load(&path).unwrap(), Journal::default());
        let mut j = Journal {
            chain_id: 31337,
            next_nonce: 7,
            pending: vec![PendingTx {
                nonce: 6,
                hash: B256::repeat_byte(1),
                raw: Bytes::from_static(b"\x02\x01"),
                label: "approve".into(),
            }],
            sent: Vec::new(),
        };
        j.save(&path).unwrap();
        assert_eq!(Journal::load(&path).unwrap(), j);
        j.remove(&B256::repeat_byte(1));
        assert!(j.pending.is_empty());

        std::fs::write(&path, b"{\"next_nonce\": \"x\"}").unwrap();
        let e = Journal::load(&path).unwrap_err().to_string();
        assert!(e.contains("txs.json") && e.contains("expected u64"), "{e}");
    }
}
