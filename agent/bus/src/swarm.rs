//! The libp2p swarm and the one task that owns it.
//!
//! [`spawn`] returns a cloneable [`Bus`] handle (commands in, each with its own reply
//! channel) and a stream of [`BusEvent`]s (verified messages, rejections, inbound
//! requests). The event loop ends when every handle is dropped.
//!
//! Gossip runs with application validation: nothing is forwarded until its envelope is
//! opened, and a bad envelope is reported as `Reject` so gossipsub's peer score of whoever
//! sent it drops (P4, invalid message deliveries).

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
use libp2p::{identify, kad, mdns, noise, ping, tcp, yamux, Multiaddr, PeerId, Swarm, Transport};
use tokio::sync::{mpsc, oneshot};

use super::identity::Identity;
use super::rpc;
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
    #[error("bootstrap peer {0} has no /p2p/<peer id> suffix")]
    BootstrapWithoutPeerId(Multiaddr),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("publishing on {topic}: {reason}")]
    Publish { topic: String, reason: String },
    #[error("request to {peer}: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("dialing {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("the bus has stopped")]
    Stopped,
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Exchanges listen addresses and protocols; feeds kademlia.
    identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    ping: ping::Behaviour,
    /// Wide-area discovery, seeded with the configured bootstrap peers; off without them
    /// (it would only random-walk the peers mDNS or dials already gave us, and kademlia
    /// bootstraps on every new routing-table entry, churning connections).
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    /// LAN discovery; off in tests and where multicast is unwanted.
    mdns: Toggle<mdns::tokio::Behaviour>,
    /// Announcements and reputation Q&A.
    gossipsub: gossipsub::Behaviour,
    /// Direct hub <-> miner traffic.
    rpc: request_response::Behaviour<rpc::Codec>,
}

/// Per-topic scoring: the part that matters here is P4, invalid deliveries.
fn topic_score() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 10.0,
        // Announcements are rare; penalising meshes for quiet topics would punish the honest.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -50.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    }
}

fn score_params() -> gossipsub::PeerScoreParams {
    let mut params = gossipsub::PeerScoreParams::default();
    for topic in GOSSIP_TOPICS {
        params
            .topics
            .insert(IdentTopic::new(topic).hash(), topic_score());
    }
    params
}

impl Behaviour {
    fn new(key: &libp2p::identity::Keypair, s: &SwarmSettings) -> Result<Behaviour, BusError> {
        let peer_id = key.public().to_peer_id();
        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(s.heartbeat)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(MAX_TRANSMIT)
            // Traffic is small and rare: a busy peer should get a late message rather than
            // none (the default drops forwards queued for over a second, and a full mesh
            // leaves no lazy-gossip peer to repair the gap).
            .forward_queue_duration(Duration::from_secs(10))
            .publish_queue_duration(Duration::from_secs(10))
            // The default 5000-slot queue costs about a megabyte per connection up front.
            .connection_handler_queue_len(256)
            .build()
            .map_err(|e| BusError::Behaviour(format!("gossipsub config: {e}")))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(|e| BusError::Behaviour(format!("gossipsub: {e}")))?;
        gossipsub
            .with_peer_score(score_params(), gossipsub::PeerScoreThresholds::default())
            .map_err(|e| BusError::Behaviour(format!("peer score: {e}")))?;
        for topic in GOSSIP_TOPICS {
            gossipsub
                .subscribe(&IdentTopic::new(topic))
                .map_err(|e| BusError::Behaviour(format!("subscribe {topic}: {e}")))?;
        }
        let kad = (!s.bootstrap.is_empty()).then(|| {
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            // The event loop refreshes on its own schedule.
            kad_config.set_periodic_bootstrap_interval(None);
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            kad.set_mode(Some(kad::Mode::Server));
            kad
        });
        let mdns = if s.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| BusError::Behaviour(format!("mdns: {e}")))?,
            )
        } else {
            None
        };
        Ok(Behaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                "/sosna/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
            kad: kad.into(),
            mdns: mdns.into(),
            gossipsub,
            rpc: request_response::Behaviour::new(
                [(rpc::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(s.request_timeout),
            ),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn build_swarm(identity: &Identity, s: &SwarmSettings) -> Result<Swarm<Behaviour>, BusError> {
    let builder =
        libp2p::SwarmBuilder::with_existing_identity(identity.keypair.clone()).with_tokio();
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(60));
    let transport_err = |e: &dyn std::fmt::Display| BusError::Transport(e.to_string());
    let behaviour_err = |e: &dyn std::fmt::Display| BusError::Behaviour(e.to_string());
    if s.memory {
        Ok(builder
            .with_other_transport(|key| {
                Ok::<_, BoxError>(
                    MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default())
                        .boxed(),
                )
            })
            .map_err(|e| transport_err(&e))?
            .with_behaviour(|key| Behaviour::new(key, s).map_err(BoxError::from))
            .map_err(|e| behaviour_err(&e))?
            .with_swarm_config(idle)
            .build())
    } else {
        Ok(builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| transport_err(&e))?
            .with_quic()
            .with_behaviour(|key| Behaviour::new(key, s).map_err(BoxError::from))
            .map_err(|e| behaviour_err(&e))?
            .with_swarm_config(idle)
            .build())
    }
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

type PendingRequest = oneshot::Sender<Result<(Address, Response), BusError>>;

struct EventLoop {
    swarm: Swarm<Behaviour>,
    identity: Identity,
    limits: Limits,
    has_bootstrap: bool,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Peers mDNS found on the LAN and has not seen expire. They are redialed like
    /// bootstrap peers: mDNS answers only every few minutes, and one lost dial must not
    /// leave a LAN peer unconnected until then.
    lan_peers: HashMap<PeerId, Multiaddr>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<BusEvent>,
    pending: HashMap<OutboundRequestId, (PeerId, PendingRequest)>,
    dials: HashMap<libp2p::swarm::ConnectionId, (Multiaddr, oneshot::Sender<Result<(), BusError>>)>,
}

impl EventLoop {
    async fn run(mut self) {
        let mut kad_refresh = tokio::time::interval(KAD_REFRESH);
        let mut redial = tokio::time::interval(BOOTSTRAP_REDIAL);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                _ = redial.tick(), if self.has_bootstrap || !self.lan_peers.is_empty() => {
                    let known = self.bootstrap.iter().map(|(p, a)| (p, a)).chain(self.lan_peers.iter());
                    let missing: Vec<Multiaddr> = known
                        .filter(|(peer, _)| !self.swarm.is_connected(peer))
                        .map(|(_, addr)| addr.clone())
                        .collect();
                    for addr in missing {
                        tracing::debug!("bus: redialing {addr}");
                        let _ = self.swarm.dial(addr);
                    }
                }
                _ = kad_refresh.tick(), if self.has_bootstrap => {
                    if let Some(Err(e)) = self.swarm.behaviour_mut().kad.as_mut().map(|k| k.bootstrap()) {
                        tracing::debug!("bus: kademlia bootstrap: {e}");
                    }
                }
            }
        }
        tracing::debug!("bus: every handle dropped; stopping");
    }

    fn emit(&self, event: BusEvent) {
        if let Err(e) = self.events.try_send(event) {
            // Never block the swarm on a slow consumer; gossip is re-sent periodically.
            tracing::warn!("bus: event dropped: {e}");
        }
    }

    fn seal(&self, message: Message) -> Result<Vec<u8>, EnvelopeError> {
        envelope::seal(
            message,
            &self.identity.peer_id().to_bytes(),
            &self.identity.eth,
        )
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { message, reply } => {
                let topic = message.topic();
                let result = self
                    .seal(message)
                    .map_err(BusError::from)
                    .and_then(|bytes| self.publish(topic, bytes));
                let _ = reply.send(result);
            }
            Command::PublishRaw {
                topic,
                bytes,
                reply,
            } => {
                let _ = reply.send(self.publish(&topic, bytes));
            }
            Command::Request {
                peer,
                addrs,
                request,
                reply,
            } => {
                let bytes = match self.seal(Message::Request(request)) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                for addr in addrs {
                    self.swarm.add_peer_address(peer, addr);
                }
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, bytes);
                self.pending.insert(id, (peer, reply));
            }
            Command::Respond { channel, response } => {
                match self.seal(Message::Response(response)) {
                    Ok(bytes) => {
                        if self
                            .swarm
                            .behaviour_mut()
                            .rpc
                            .send_response(channel, bytes)
                            .is_err()
                        {
                            tracing::debug!("bus: requester went away before the response");
                        }
                    }
                    Err(e) => tracing::warn!("bus: sealing response: {e}"),
                }
            }
            Command::Dial { addr, reply } => {
                let opts = libp2p::swarm::dial_opts::DialOpts::from(addr.clone());
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, (addr, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(BusError::Dial {
                            addr,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Status { reply } => {
                let gossip = &self.swarm.behaviour().gossipsub;
                let status = Status {
                    listen: self.swarm.listeners().cloned().collect(),
                    connected: self.swarm.connected_peers().count(),
                    mesh: GOSSIP_TOPICS
                        .iter()
                        .map(|t| gossip.mesh_peers(&IdentTopic::new(*t).hash()).count())
                        .collect(),
                    scores: self
                        .swarm
                        .connected_peers()
                        .filter_map(|p| gossip.peer_score(p).map(|s| (*p, s)))
                        .collect(),
                };
                let _ = reply.send(status);
            }
        }
    }

    fn publish(&mut self, topic: &str, bytes: Vec<u8>) -> Result<(), BusError> {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(topic), bytes)
            .map(|_| ())
            .map_err(|e| BusError::Publish {
                topic: topic.to_owned(),
                reason: e.to_string(),
            })
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    tracing::debug!("bus: mdns found {peer} at {addr}");
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        kad.add_address(&peer, addr.clone());
                    }
                    if self.lan_peers.len() < MAX_LAN_PEERS {
                        self.lan_peers.insert(peer, addr.clone());
                    }
                    let _ = self.swarm.dial(addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(gone))) => {
                for (peer, _) in gone {
                    self.lan_peers.remove(&peer);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!("bus: listening on {address}");
            }
            SwarmEvent::ConnectionEstablished {
                connection_id,
                peer_id,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    tracing::info!("bus: connected to {peer_id}");
                }
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((addr, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(BusError::Dial {
                        addr,
                        reason: error.to_string(),
                    }));
                } else {
                    tracing::debug!("bus: outgoing connection: {error}");
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, propagation: PeerId, id: gossipsub::MessageId, m: gossipsub::Message) {
        let topic = topic_name(&m.topic);
        // Strict validation mode guarantees a signed source; keep the check anyway.
        let result = match m.source {
            Some(source) => open(&m.data, &topic, &source, &self.limits),
            None => Err(EnvelopeError::PeerMismatch {
                claimed: "<none>".into(),
                actual: propagation.to_string(),
            }),
        };
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        match result {
            Ok(verified) => {
                gossip.report_message_validation_result(
                    &id,
                    &propagation,
                    MessageAcceptance::Accept,
                );
                self.emit(BusEvent::Message(verified));
            }
            Err(error) => {
                tracing::info!(
                    "bus: rejected {topic} message from {propagation} (source {:?}): {error}",
                    m.source
                );
                gossip.report_message_validation_result(
                    &id,
                    &propagation,
                    MessageAcceptance::Reject,
                );
                self.emit(BusEvent::Rejected {
                    propagation,
                    source: m.source,
                    topic,
                    error,
                });
            }
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message as RrMessage};
        match event {
            Event::Message {
                peer,
                message:
                    RrMessage::Request {
                        request, channel, ..
                    },
                ..
            } => match open(&request, TOPIC_RPC, &peer, &self.limits) {
                Ok(Verified {
                    from,
                    message: Message::Request(request),
                    ..
                }) => self.emit(BusEvent::Request(InboundRequest {
                    peer,
                    from,
                    request,
                    channel,
                })),
                // Dropping the channel closes the stream: the requester sees a failure.
                Ok(other) => {
                    tracing::info!("bus: {peer} sent a {} as a request", other.message.kind())
                }
                Err(e) => tracing::info!("bus: rejected request from {peer}: {e}"),
            },
            Event::Message {
                peer,
                message:
                    RrMessage::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some((_, reply)) = self.pending.remove(&request_id) else {
                    return;
                };
                let result = match open(&response, TOPIC_RPC, &peer, &self.limits) {
                    Ok(Verified {
                        from,
                        message: Message::Response(response),
                        ..
                    }) => Ok((from, response)),
                    Ok(other) => Err(BusError::Request {
                        peer,
                        reason: format!("answered with a {}", other.message.kind()),
                    }),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(BusError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!("bus: inbound request from {peer} failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}

/// Topics are `IdentTopic`s, whose hash is the topic string itself.
fn topic_name(hash: &TopicHash) -> String {
    hash.as_str().to_owned()
}
