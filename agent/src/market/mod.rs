//! The marketplace (DESIGN §1 steps 4–5, seed §2.7): what a miner signs for its result
//! ([`attest`]), how a hub decides between replicas ([`verify`]), how a miner runs a task
//! into a result bundle ([`work`], [`worker`]) and is paid ([`earnings`]), how a hub takes
//! deals ([`desk`]), dispatches them ([`dispatch`]) and settles them on chain ([`settle`]),
//! and how a buyer opens, follows, checks and confirms a deal ([`buyer`]).

pub mod attest;
pub mod buyer;
pub mod desk;
pub mod dispatch;
pub mod earnings;
pub mod hub_wallet;
pub mod settle;
pub mod verify;
pub mod work;
pub mod worker;
