//! The marketplace (DESIGN §1 steps 4–5, seed §2.7), by role.
//!
//! - [`hub`]: announce the hub and answer miners ([`hub::announce`]), take buyers' deals
//!   ([`hub::desk`]), dispatch units to miners ([`hub::dispatch`]), decide between replicas
//!   ([`hub::verify`]), settle on chain ([`hub::settle`], [`hub::hub_wallet`]).
//! - [`miner`]: judge hubs from announcements, the chain and other miners
//!   ([`miner::join`] over the [`miner::hubbook`] and [`miner::chain_view`]), run offered
//!   units ([`miner::worker`], [`miner::work`]) and collect pay ([`miner::earnings`]).
//! - [`buyer`]: open, follow, check and confirm a deal.
//!
//! What travels between them (messages, attestations, result bundles) is in `sosna-proto`.

pub mod buyer;
pub mod hub;
pub mod miner;
