//! The swarm's task: turns the handle's commands into swarm calls and swarm events into
//! checked [`BusEvent`]s, redials bootstrap and LAN peers, and answers pending requests.

use super::*;

pub(super) type PendingRequest = oneshot::Sender<Result<(Address, Response), BusError>>;

pub(super) struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) identity: Identity,
    pub(super) limits: Limits,
    pub(super) has_bootstrap: bool,
    pub(super) bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Peers mDNS found on the LAN and has not seen expire. They are redialed like
    /// bootstrap peers: mDNS answers only every few minutes, and one lost dial must not
    /// leave a LAN peer unconnected until then.
    pub(super) lan_peers: HashMap<PeerId, Multiaddr>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: mpsc::Sender<BusEvent>,
    pub(super) pending: HashMap<OutboundRequestId, (PeerId, PendingRequest)>,
    pub(super) dials:
        HashMap<libp2p::swarm::ConnectionId, (Multiaddr, oneshot::Sender<Result<(), BusError>>)>,
}

impl EventLoop {
    pub(super) async fn run(mut self) {
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
