//! In-process swarms of 50 peers over the memory transport: announcements reach everyone,
//! and every kind of bad envelope is rejected with its own error while gossipsub's score of
//! the peer that sent it drops below zero.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use libp2p::PeerId;
use sosna_bus::BusEvent;
use sosna_proto::bus::envelope::{self, now_ms, Body};
use sosna_proto::bus::messages::{HubAnnouncement, Message, PriceSchedule, TOPIC_HUBS};
use sosna_testkit::testnet::{spawn_net, LocalNet};

const PEERS: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(30);

fn announcement(owner: Address, name: &str) -> HubAnnouncement {
    HubAnnouncement {
        multiaddrs: vec!["/ip4/10.0.0.1/tcp/4001".into()],
        owner,
        wallet: Address::repeat_byte(0x42),
        name: name.into(),
        prices: PriceSchedule {
            cpu_core_hour: 1_000,
            ..Default::default()
        },
        timestamp_ms: now_ms(),
    }
}

async fn ready_net(seed: u64) -> LocalNet {
    let net = spawn_net(PEERS, 3, seed).await.expect("spawn network");
    net.wait_for_mesh(TIMEOUT).await.expect("mesh");
    net
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_announcement_reaches_all_peers() {
    let mut net = ready_net(0x5eed).await;
    let hub = &net.nodes[0];
    let ann = announcement(hub.identity.address(), "hub-reach");
    hub.bus
        .publish(Message::HubAnnouncement(ann.clone()))
        .await
        .expect("publish");
    let hub_peer = hub.identity.peer_id();
    let mut got: HashSet<usize> = HashSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < PEERS - 1 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some((i, event)) = net.next_event(left).await else {
            panic!(
                "only {} of {} peers got the announcement",
                got.len(),
                PEERS - 1
            );
        };
        match event {
            BusEvent::Message(v) => {
                assert_eq!(v.peer, hub_peer);
                assert_eq!(v.message, Message::HubAnnouncement(ann.clone()));
                assert!(got.insert(i), "peer {i} got the announcement twice");
            }
            BusEvent::Rejected { error, .. } => panic!("peer {i} rejected a good message: {error}"),
            BusEvent::Request(_) => {}
        }
    }
    assert!(!got.contains(&0), "the hub does not deliver to itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_bad_envelopes_are_rejected_and_penalised() {
    let mut net = ready_net(0xbad).await;
    let hub = &net.nodes[0];
    let hub_addr = hub.identity.address();
    // A valid envelope by the hub, for the attacker to replay under its own peer id.
    let hub_envelope = envelope::seal(
        Message::HubAnnouncement(announcement(hub_addr, "hub")),
        &hub.identity.peer_id().to_bytes(),
        &hub.identity.eth,
    )
    .unwrap();

    // One attacker per kind: a graylisted peer's later messages are never validated at all.
    let kinds = [
        "forged-sender",
        "peer-mismatch",
        "stale",
        "too-large",
        "malformed",
    ];
    let mut attackers: Vec<(usize, PeerId, &str)> = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        let i = PEERS - 1 - k;
        let node = &net.nodes[i];
        let me = node.identity.address();
        let body = |message: HubAnnouncement, timestamp_ms: u64, from: Address| Body {
            topic: TOPIC_HUBS.into(),
            peer: node.identity.peer_id().to_bytes(),
            from,
            timestamp_ms,
            message: Message::HubAnnouncement(message),
        };
        let bytes = match *kind {
            // Claims the hub's address, signed with the attacker's key.
            "forged-sender" => envelope::seal_body(
                &body(announcement(hub_addr, "forged"), now_ms(), hub_addr),
                &node.identity.eth,
            )
            .unwrap(),
            "peer-mismatch" => hub_envelope.clone(),
            "stale" => envelope::seal_body(
                &body(announcement(me, "stale"), now_ms() - 3_600_000, me),
                &node.identity.eth,
            )
            .unwrap(),
            "too-large" => envelope::seal_body(
                &body(announcement(me, &"x".repeat(20_000)), now_ms(), me),
                &node.identity.eth,
            )
            .unwrap(),
            "malformed" => b"\x93\xa3not an envelope".to_vec(),
            _ => unreachable!(),
        };
        node.bus.publish_raw(TOPIC_HUBS, bytes).await.expect(kind);
        attackers.push((i, node.identity.peer_id(), kind));
    }

    let mut pending: HashSet<&str> = kinds.iter().copied().collect();
    let deadline = Instant::now() + TIMEOUT;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some((at, event)) = net.next_event(left).await else {
            panic!("no rejection seen for {pending:?}");
        };
        match event {
            BusEvent::Rejected {
                propagation, error, ..
            } => {
                let (_, _, kind) = attackers
                    .iter()
                    .find(|(_, p, _)| *p == propagation)
                    .unwrap_or_else(|| panic!("honest peer {propagation} penalised: {error}"));
                assert_eq!(error.label(), *kind, "{error}");
                let score = net.nodes[at].bus.status().await.unwrap().scores[&propagation];
                assert!(score < 0.0, "{kind}: score at peer {at} is {score}");
                pending.remove(kind);
            }
            BusEvent::Message(v) => panic!("peer {at} accepted a bad envelope from {}", v.peer),
            BusEvent::Request(_) => {}
        }
    }
}
