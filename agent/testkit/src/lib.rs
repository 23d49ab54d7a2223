//! Test support for sosna's crates, never linked into the agent (a dev-dependency only):
//! a devnet sender and contract views ([`chain`]), a local OCI registry ([`registry`]), a container runtime over it ([`fixture`]), the
//! agent as a host daemon ([`daemon`]),
//! in-memory bus nets ([`testnet`]), and the rules for tests whose prerequisites are
//! missing ([`require`]).

pub mod chain;
pub mod daemon;
pub mod fixture;
pub mod registry;
pub mod require;
pub mod testnet;
