//! The marketplace's verification rules (DESIGN §1 steps 4–5, seed §2.7): what a miner
//! signs for its result ([`attest`]) and how a hub decides between replicas ([`verify`]).

pub mod attest;
pub mod verify;
