//! sosna's wire types and codecs: what crosses a process or machine boundary, and nothing
//! that moves bytes. No async runtime and no libp2p here, so every decoder can be fuzzed
//! and reused by any transport.
//!
//! - [`bus`]: the bus's messages and their signed envelopes.
//! - [`slave`]: Slave protocol frames, dispatch graphs and wire errors.
//! - [`task`]: the task a buyer or operator asks to run.
//! - [`result`]: the result bundle replicas vote on.
//! - [`attest`]: a miner's EIP-712 claim about its result.

pub mod attest;
pub mod bus;
pub mod result;
pub mod slave;
pub mod task;
