//! The miner's side of the market: judge and join a hub, run its units, collect pay.

pub mod chain_view;
pub mod earnings;
pub mod hubbook;
pub mod join;
pub mod work;
pub mod worker;
