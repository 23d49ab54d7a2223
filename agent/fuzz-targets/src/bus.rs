//! What any bus peer can send: envelopes on the gossip topics and the RPC protocol, the
//! messages inside them and what the miner makes of them (its hub book, rollouts, task
//! offers, attestations).

use std::sync::OnceLock;

use alloy_primitives::Address;
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde::Serialize;
use sosna_market::miner::hubbook::{Capacity, HubBook};
use sosna_proto::attest;
use sosna_proto::bus::envelope::{open, seal_body, Body, Limits};
use sosna_proto::bus::messages::{
    HubQuestion, Message, Request, TaskOutcome, GOSSIP_TOPICS, TOPIC_RPC,
};
use sosna_proto::task::TaskSpec;

use crate::fixed::{key, NOW_MS, PEER};

/// Every topic an envelope may arrive on.
const TOPICS: [&str; 4] = [
    GOSSIP_TOPICS[0],
    GOSSIP_TOPICS[1],
    GOSSIP_TOPICS[2],
    TOPIC_RPC,
];

fn signer() -> &'static PrivateKeySigner {
    static KEY: OnceLock<PrivateKeySigner> = OnceLock::new();
    KEY.get_or_init(key)
}

/// A valid envelope to splice fuzzed bytes into.
fn valid_envelope() -> &'static [u8] {
    static SEALED: OnceLock<Vec<u8>> = OnceLock::new();
    SEALED.get_or_init(|| {
        let key = signer();
        let body = Body {
            topic: GOSSIP_TOPICS[1].into(),
            peer: PEER.to_vec(),
            from: key.address(),
            timestamp_ms: NOW_MS,
            message: Message::HubQuestion(HubQuestion {
                wallet: Address::repeat_byte(1),
                nonce: 7,
            }),
        };
        seal_body(&body, key).expect("sealing a fixed body")
    })
}

/// Raw bytes as an envelope on every topic, and XORed over a valid envelope so the later
/// checks are reached too. The signature rarely survives: [`envelope_signed`] covers what
/// comes after it.
pub fn envelope(data: &[u8]) {
    let limits = Limits::default();
    // One topic per input (by its length): each open of a well-formed envelope recovers a
    // signature, the slowest step, and the topic is checked only after it.
    let topic = TOPICS[data.len() % TOPICS.len()];
    if let Ok(v) = open(data, topic, PEER, NOW_MS, &limits) {
        consume(&v.message, v.from);
    }
    if let Some((&at, rest)) = data.split_first() {
        let mut spliced = valid_envelope().to_vec();
        let start = usize::from(at) % spliced.len();
        for (b, d) in spliced[start..].iter_mut().zip(rest) {
            *b ^= d;
        }
        let _ = open(&spliced, GOSSIP_TOPICS[1], PEER, NOW_MS, &limits);
    }
}

/// The wire form [`open`] reads, written here so the fuzzer's body can be signed as is.
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(with = "serde_bytes")]
    body: &'a [u8],
    #[serde(with = "serde_bytes")]
    signature: &'a [u8],
}

/// A topic byte, then body bytes signed with the fixed key: every check after the
/// signature (canonical form, sender, topic, peer, freshness, message rules) is reached.
pub fn envelope_signed(data: &[u8]) {
    let Some((&topic, body)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(topic) % TOPICS.len()];
    // A body that does not decode, or not canonically, is refused before the signature is
    // looked at: skip the signing for those, the slowest step, and check the refusal.
    let canonical = rmp_serde::from_slice::<Body>(body)
        .ok()
        .and_then(|b| rmp_serde::to_vec(&b).ok())
        .is_some_and(|again| again == body);
    if !canonical {
        let wire = rmp_serde::to_vec(&Wire {
            body,
            signature: &[0; 65],
        })
        .expect("encoding two byte strings");
        let refused = open(&wire, topic, PEER, NOW_MS, &Limits::default());
        assert!(refused.is_err(), "a non-canonical body was accepted");
        return;
    }
    let signature = signer()
        .sign_message_sync(body)
        .expect("signing with a fixed key");
    let wire = rmp_serde::to_vec(&Wire {
        body,
        signature: &signature.as_bytes(),
    })
    .expect("encoding two byte strings");
    if let Ok(v) = open(&wire, topic, PEER, NOW_MS, &Limits::default()) {
        assert_eq!(
            v.from,
            signer().address(),
            "a verified sender is the signer"
        );
        assert_eq!(v.topic, topic, "a verified envelope came on its own topic");
        consume(&v.message, v.from);
    }
}

/// A message as msgpack: its content rules for any signer, then what the node does with
/// one that passes.
pub fn bus_message(data: &[u8]) {
    let Ok(message) = rmp_serde::from_slice::<Message>(data) else {
        return;
    };
    // The signer the message names, where it names one, so the checks past it run.
    let claimed = match &message {
        Message::HubAnnouncement(a) => a.owner,
        Message::Response(sosna_proto::bus::messages::Response::HubMetadata(m)) => m.owner,
        Message::Request(Request::Report(r)) => match &r.outcome {
            TaskOutcome::Done { attestation, .. } => attestation.miner,
            TaskOutcome::Failed(_) => Address::ZERO,
        },
        _ => Address::repeat_byte(0x5e),
    };
    let _ = message.check(Address::ZERO);
    if message.check(claimed).is_ok() {
        consume(&message, claimed);
    }
}

/// What a node does with a message that passed its checks, as far as it is pure.
fn consume(message: &Message, from: Address) {
    match message {
        Message::HubAnnouncement(a) => {
            for m in &a.multiaddrs {
                let _ = m.parse::<libp2p::Multiaddr>();
            }
            let mut book = HubBook::default();
            let peer = "12D3KooWfuzz";
            let _ = book.observe(a, peer, NOW_MS);
            book.refuse(a, peer, "fuzz".into(), NOW_MS);
            let _ = book.record_verdict(
                &a.wallet,
                Address::repeat_byte(9),
                sosna_proto::bus::messages::Verdict::Positive,
                1,
            );
            let capacity = Capacity {
                cores: u32::MAX,
                memory_gib: u32::MAX,
                gpus: u32::MAX,
            };
            let _ = book.choose(capacity, None);
            let _ = book.choose(capacity, Some(a.wallet));
            let _ = book.render();
        }
        Message::Request(Request::Offer(o)) => task_json(&o.spec),
        Message::Request(Request::Submit(j)) => task_json(&j.spec),
        Message::Request(Request::Report(r)) => {
            if let TaskOutcome::Done { attestation, .. } = &r.outcome {
                let domain = attest::domain(31337, Address::repeat_byte(0x33));
                let unit = attest::Unit {
                    hub: Address::repeat_byte(0x11),
                    id: r.unit,
                    replicas: 3,
                };
                if attest::check(&domain, &unit, attestation).is_ok() {
                    assert_eq!(attestation.miner, from, "checked above");
                }
            }
        }
        Message::RolloutNotice(n) => crate::updates::notice(n),
        _ => {}
    }
}

/// A task spec as buyers send it (JSON): parse, validate, and the pinned digest.
pub(crate) fn task_json(spec: &str) {
    if let Ok(task) = serde_json::from_str::<TaskSpec>(spec) {
        if task.validate().is_ok() {
            let _ = task.pinned_digest();
        }
    }
}

/// A length-prefixed RPC frame as a request and as a response, then the envelope in it.
pub fn rpc_frame(data: &[u8]) {
    use libp2p::request_response::Codec as _;
    let mut codec = sosna_bus::rpc::Codec;
    let protocol = sosna_bus::rpc::PROTOCOL;
    let request = futures::executor::block_on(
        codec.read_request(&protocol, &mut futures::io::Cursor::new(data)),
    );
    let response = futures::executor::block_on(
        codec.read_response(&protocol, &mut futures::io::Cursor::new(data)),
    );
    match (&request, &response) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "requests and responses are framed alike"),
        (Err(_), Err(_)) => {}
        _ => panic!("a frame read as a request but not as a response, or the reverse"),
    }
    if let Ok(frame) = request {
        assert!(frame.len() <= sosna_bus::rpc::MAX_FRAME);
        if let Ok(v) = open(&frame, TOPIC_RPC, PEER, NOW_MS, &Limits::default()) {
            consume(&v.message, v.from);
        }
    }
}

/// A miner's hub book (hubs.json): it holds strangers' strings, and the Slave bus reads it
/// on every stream. Whatever loads renders, chooses, and survives a save and load.
pub fn hub_book(data: &[u8]) {
    let Ok(mut book) = serde_json::from_slice::<HubBook>(data) else {
        return;
    };
    let _ = book.render();
    let capacity = Capacity {
        cores: 64,
        memory_gib: 512,
        gpus: 8,
    };
    let _ = book.choose(capacity, None);
    let wallets: Vec<Address> = book.hubs.keys().copied().collect();
    for w in &wallets {
        let _ = book.verdict_on(w);
        let _ = book.choose(capacity, Some(*w));
    }
    let text = serde_json::to_string(&book).expect("a loaded book serialises");
    let again: HubBook = serde_json::from_str(&text).expect("a saved book loads");
    assert_eq!(again, book, "a save and load changes nothing");
    if let Some(w) = wallets.first() {
        book.set_joined(w);
        let _ = book.record_verdict(
            w,
            Address::repeat_byte(7),
            sosna_proto::bus::messages::Verdict::Negative,
            1,
        );
    }
}
