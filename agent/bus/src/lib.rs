//! The P2P bus (DESIGN §3): a libp2p swarm (TCP and QUIC, noise, yamux, identify, ping,
//! kademlia, mDNS, gossipsub, request-response) that carries sosna's signed envelopes.
//!
//! [`swarm`] owns the swarm and checks every envelope before it is handed on;
//! [`identity`] keeps the node's libp2p and Ethereum keys; [`rpc`] is the request-response
//! codec. What the messages mean (hubs, miners, rollouts) is for the crates above.

pub mod identity;
pub mod rpc;
pub mod swarm;

pub use identity::Identity;
pub use swarm::{
    peer_of, spawn, Bus, BusError, BusEvent, InboundRequest, Status, SwarmSettings, Verified,
};
