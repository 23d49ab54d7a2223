//! The libp2p behaviours the bus runs, their gossipsub scoring, and the swarm over
//! TCP and QUIC (noise, yamux) or, in tests, memory.

use super::*;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Exchanges listen addresses and protocols; feeds kademlia.
    pub(super) identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub(super) ping: ping::Behaviour,
    /// Wide-area discovery, seeded with the configured bootstrap peers; off without them
    /// (it would only random-walk the peers mDNS or dials already gave us, and kademlia
    /// bootstraps on every new routing-table entry, churning connections).
    pub(super) kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    /// LAN discovery; off in tests and where multicast is unwanted.
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    /// Announcements and reputation Q&A.
    pub(super) gossipsub: gossipsub::Behaviour,
    /// Direct hub <-> miner traffic.
    pub(super) rpc: request_response::Behaviour<rpc::Codec>,
    /// Raw streams to authenticated peers (the Slave services for trusted peers).
    pub(super) stream: libp2p_stream::Behaviour,
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
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) fn build_swarm(
    identity: &Identity,
    s: &SwarmSettings,
) -> Result<Swarm<Behaviour>, BusError> {
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
