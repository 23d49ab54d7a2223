//! The fixed key, peer and clock the bus targets use: a random key or the real clock
//! would make a crash impossible to replay.

use alloy_primitives::B256;
use alloy_signer_local::PrivateKeySigner;

/// The transport peer id's bytes every envelope is said to arrive from.
pub const PEER: &[u8] = b"fuzz-peer";

/// "Now" for freshness checks: 2026-12-01T00:00:00Z.
pub const NOW_MS: u64 = 1_796_083_200_000;

/// The signing key of the targets that sign what the fuzzer writes.
pub fn key() -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).expect("a valid secp256k1 key")
}
