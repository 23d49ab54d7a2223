//! The P2P bus (DESIGN §3): libp2p swarm, signed envelopes, hub announcements and the
//! miners' trust flow.

pub mod chain;
pub mod envelope;
pub mod hub;
pub mod hubbook;
pub mod identity;
pub mod messages;
pub mod miner;
pub mod rpc;
pub mod swarm;
pub mod testnet;

pub use identity::Identity;
pub use swarm::{spawn, Bus, BusError, BusEvent, InboundRequest, Status, SwarmSettings};
