//! Every size limit on the path from a buyer's task to its result, in one place, so they
//! stay consistent: a spec that a buyer may submit fits in an offer, the largest result a
//! miner may report fits in its report and in the buyer's job status, and each of those
//! fits in one rpc frame. A result over [`MAX_RESULT`] is refused by the miner with an
//! error that reaches the buyer, never dropped on the way.

/// Largest task spec (JSON) a buyer may submit and a hub may offer.
pub const MAX_SPEC: usize = 16 * 1024;
/// Largest stdout a result carries inline.
pub const MAX_RESULT: usize = 32 * 1024;
/// Largest signed envelope on a gossip topic: announcements, verdicts, notices. Everyone
/// relays those, so they stay small.
pub const MAX_GOSSIP_ENVELOPE: usize = 8 * 1024;
/// Largest length-prefixed frame on the direct request-response protocol.
pub const MAX_RPC_FRAME: usize = 64 * 1024;
/// Largest signed envelope on the direct protocol: one frame.
pub const MAX_RPC_ENVELOPE: usize = MAX_RPC_FRAME;
/// Room an envelope needs around its largest payload: the signed body's fields, the
/// signature, an offer's unit, a job status's miner lists and transactions.
pub const ENVELOPE_OVERHEAD: usize = 8 * 1024;

const _: () = assert!(MAX_SPEC + ENVELOPE_OVERHEAD <= MAX_RPC_ENVELOPE);
const _: () = assert!(MAX_RESULT + ENVELOPE_OVERHEAD <= MAX_RPC_ENVELOPE);
const _: () = assert!(MAX_GOSSIP_ENVELOPE <= MAX_RPC_ENVELOPE);
