//! Test support for sosna's crates, never linked into the agent (a dev-dependency only):
//! a local OCI registry ([`registry`]), a container runtime over it ([`fixture`]),
//! in-memory bus nets ([`testnet`]), and the rules for tests whose prerequisites are
//! missing ([`require`]).

pub mod fixture;
pub mod registry;
pub mod require;
pub mod testnet;
