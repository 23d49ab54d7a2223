//! The hub's side of the market: announce, take deals, dispatch, verify, settle.

pub mod announce;
pub mod desk;
pub mod dispatch;
pub mod hub_wallet;
pub mod settle;
pub mod stake;
pub mod verify;
