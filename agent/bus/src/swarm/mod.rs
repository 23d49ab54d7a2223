//! The libp2p swarm and the one task that owns it.
//!
//! [`spawn`] returns a cloneable [`Bus`] handle (commands in, each with its own reply
//! channel) and a stream of [`BusEvent`]s (verified messages, rejections, inbound
//! requests). The event loop ends when every handle is dropped.
//!
//! Gossip runs with application validation: nothing is forwarded until its envelope is
//! opened, and a bad envelope is reported as `Reject` so gossipsub's peer score of whoever
//! sent it drops (P4, invalid message deliveries).

mod behaviour;
mod event_loop;

use std::collections::HashMap;
use std::time::Duration;

use alloy_primitives::Address;
use futures::StreamExt;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, kad, mdns, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
    Transport,
};
use tokio::sync::{mpsc, oneshot};

use super::identity::Identity;
use super::rpc;
use behaviour::{build_swarm, Behaviour, BehaviourEvent};
use event_loop::EventLoop;
use sosna_proto::bus::envelope::{self, EnvelopeError, Limits};
use sosna_proto::bus::messages::{Message, Request, Response, GOSSIP_TOPICS, TOPIC_RPC};

/// A verified envelope whose peer is the libp2p connection's.
pub type Verified = envelope::Verified<PeerId>;

/// Opens an envelope that arrived from `peer` now; the peer id it names must be `peer`'s.
fn open(
    bytes: &[u8],
    topic: &str,
    peer: &PeerId,
    limits: &Limits,
) -> Result<Verified, EnvelopeError> {
    envelope::open(bytes, topic, &peer.to_bytes(), envelope::now_ms(), limits)
        .map(|v| v.with_peer(*peer))
}

/// Gossipsub's own frame limit; larger than [`Limits::max_size`] on purpose, so oversized
/// envelopes reach the validator and cost their sender score instead of just a stream.
const MAX_TRANSMIT: usize = 64 * 1024;
const KAD_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/sosna/kad/1");
const KAD_REFRESH: Duration = Duration::from_secs(300);
/// Most LAN peers redialed; mDNS on a big LAN must not grow this without end.
const MAX_LAN_PEERS: usize = 256;

/// How often bootstrap peers we are not connected to are dialed again: a hub that starts
/// after its miners, or comes back after a restart, is found within this.
const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(3);

/// How the swarm is built; the config file's `[bus]` section maps onto this.
#[derive(Debug, Clone)]
pub struct SwarmSettings {
    /// Addresses to listen on (`/ip4/../tcp/..`, `/ip4/../udp/../quic-v1`, or `/memory/N`).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial and seed kademlia with; each must end in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// In-process memory transport instead of TCP + QUIC (tests, benchmarks).
    pub memory: bool,
    pub heartbeat: Duration,
    pub limits: Limits,
    pub request_timeout: Duration,
}

impl Default for SwarmSettings {
    fn default() -> Self {
        SwarmSettings {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            memory: false,
            heartbeat: Duration::from_secs(1),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl SwarmSettings {
    /// Memory transport on `/memory/<port>` with a fast heartbeat, for in-process swarms.
    pub fn memory(port: u64) -> SwarmSettings {
        SwarmSettings {
            listen: vec![format!("/memory/{port}").parse().expect("memory multiaddr")],
            memory: true,
            heartbeat: Duration::from_millis(200),
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("building transport: {0}")]
    Transport(String),
    #[error("building behaviour: {0}")]
    Behaviour(String),
    #[error("listening on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("address {0} has no /p2p/<peer id> suffix")]
    BootstrapWithoutPeerId(Multiaddr),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("publishing on {topic}: {reason}")]
    Publish { topic: String, reason: String },
    #[error("request to {peer}: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("dialing {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("stream {protocol} to {peer}: {reason}")]
    Stream {
        peer: String,
        protocol: String,
        reason: String,
    },
    #[error("the bus has stopped")]
    Stopped,
}

/// A verified request from a peer, to be answered with [`Bus::respond`].
#[derive(Debug)]
pub struct InboundRequest {
    pub peer: PeerId,
    pub from: Address,
    pub request: Request,
    pub channel: ResponseChannel<Vec<u8>>,
}

#[derive(Debug)]
pub enum BusEvent {
    /// A gossip message whose envelope verified.
    Message(Verified),
    /// A gossip message that was rejected; `propagation` is the peer penalised for it.
    Rejected {
        propagation: PeerId,
        source: Option<PeerId>,
        topic: String,
        error: EnvelopeError,
    },
    Request(InboundRequest),
}

enum Command {
    Publish {
        message: Message,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    PublishRaw {
        topic: String,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    Request {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
        reply: oneshot::Sender<Result<(Address, Response), BusError>>,
    },
    Respond {
        channel: ResponseChannel<Vec<u8>>,
        response: Response,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
}

/// A snapshot of the swarm, for readiness checks and tests.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub listen: Vec<Multiaddr>,
    pub connected: usize,
    /// Mesh size per gossip topic, in [`GOSSIP_TOPICS`] order.
    pub mesh: Vec<usize>,
    /// gossipsub score of every connected peer.
    pub scores: HashMap<PeerId, f64>,
}

/// Cloneable handle to the bus task.
#[derive(Clone)]
pub struct Bus {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    address: Address,
    streams: libp2p_stream::Control,
}

impl Bus {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The Ethereum address that signs this node's envelopes.
    pub fn address(&self) -> Address {
        self.address
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, BusError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| BusError::Stopped)?;
        rx.await.map_err(|_| BusError::Stopped)
    }

    /// Signs `message` and gossips it on its topic.
    pub async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.call(|reply| Command::Publish { message, reply })
            .await?
    }

    /// Gossips bytes as they are, unsigned by us: for tools and tests that build their own
    /// (possibly bad) envelopes.
    pub async fn publish_raw(&self, topic: &str, bytes: Vec<u8>) -> Result<(), BusError> {
        let topic = topic.to_owned();
        self.call(|reply| Command::PublishRaw {
            topic,
            bytes,
            reply,
        })
        .await?
    }

    /// Sends a signed request to `peer` (dialing `addrs` if not connected) and returns the
    /// verified responder address and response.
    pub async fn request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
    ) -> Result<(Address, Response), BusError> {
        self.call(|reply| Command::Request {
            peer,
            addrs,
            request,
            reply,
        })
        .await?
    }

    pub async fn respond(
        &self,
        channel: ResponseChannel<Vec<u8>>,
        response: Response,
    ) -> Result<(), BusError> {
        self.commands
            .send(Command::Respond { channel, response })
            .await
            .map_err(|_| BusError::Stopped)
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), BusError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    pub async fn status(&self) -> Result<Status, BusError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Inbound streams of `protocol`, each with the peer id its connection authenticated.
    /// Only one taker per protocol.
    pub fn accept_streams(
        &self,
        protocol: StreamProtocol,
    ) -> Result<libp2p_stream::IncomingStreams, BusError> {
        self.streams
            .clone()
            .accept(protocol.clone())
            .map_err(|e| BusError::Stream {
                peer: self.peer_id.to_string(),
                protocol: protocol.to_string(),
                reason: e.to_string(),
            })
    }

    /// Opens a stream of `protocol` to the peer at `addr` (which ends in `/p2p/<id>`).
    pub async fn open_stream(
        &self,
        addr: Multiaddr,
        protocol: StreamProtocol,
    ) -> Result<libp2p::Stream, BusError> {
        let peer = peer_of(&addr).ok_or_else(|| BusError::BootstrapWithoutPeerId(addr.clone()))?;
        self.dial(addr).await?;
        self.streams
            .clone()
            .open_stream(peer, protocol.clone())
            .await
            .map_err(|e| BusError::Stream {
                peer: peer.to_string(),
                protocol: protocol.to_string(),
                reason: e.to_string(),
            })
    }
}

/// Builds the swarm, starts listening and dialing, and spawns its task on the current
/// tokio runtime.
pub fn spawn(
    identity: &Identity,
    settings: SwarmSettings,
) -> Result<(Bus, mpsc::Receiver<BusEvent>), BusError> {
    let mut swarm = build_swarm(identity, &settings)?;
    let mut bootstrap = Vec::new();
    for addr in &settings.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| BusError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    for addr in &settings.bootstrap {
        let Some(peer) = peer_of(addr) else {
            return Err(BusError::BootstrapWithoutPeerId(addr.clone()));
        };
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
            kad.add_address(&peer, addr.clone());
        }
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!("bus: dial bootstrap {addr}: {e}");
        }
        bootstrap.push((peer, addr.clone()));
    }
    let (commands, command_rx) = mpsc::channel(256);
    let (events, event_rx) = mpsc::channel(4096);
    let bus = Bus {
        commands,
        peer_id: identity.peer_id(),
        address: identity.address(),
        streams: swarm.behaviour().stream.new_control(),
    };
    let event_loop = EventLoop {
        swarm,
        identity: identity.clone(),
        limits: settings.limits,
        has_bootstrap: !settings.bootstrap.is_empty(),
        bootstrap,
        lan_peers: HashMap::new(),
        commands: command_rx,
        events,
        pending: HashMap::new(),
        dials: HashMap::new(),
    };
    tokio::spawn(event_loop.run());
    Ok((bus, event_rx))
}

/// The `/p2p/<id>` component of an address.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}
