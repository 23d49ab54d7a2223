//! The marketplace's verification rules (DESIGN §1 steps 4–5, seed §2.7): what a miner
//! signs for its result ([`attest`]), how a hub decides between replicas ([`verify`]), and
//! how a miner runs a task into a result bundle ([`work`]), and how the hub settles a
//! decided unit on chain ([`settle`]).

pub mod attest;
pub mod dispatch;
pub mod settle;
pub mod verify;
pub mod work;
pub mod worker;
