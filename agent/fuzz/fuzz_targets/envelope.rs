//! Bus envelopes: any bytes, raw or spliced into a valid envelope, give a verified message
//! or an EnvelopeError, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use alloy_signer_local::PrivateKeySigner;
use sosna_proto::bus::envelope::{now_ms, open, seal, Limits};
use sosna_proto::bus::messages::{HubQuestion, Message, GOSSIP_TOPICS, TOPIC_RPC};

/// Any bytes stand for the transport's peer id: the envelope only compares them.
const PEER: &[u8] = b"fuzz-peer";

fn sender() -> &'static Vec<u8> {
    static SENDER: OnceLock<Vec<u8>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let key = PrivateKeySigner::random();
        let question = Message::HubQuestion(HubQuestion {
            wallet: Default::default(),
            nonce: 7,
        });
        seal(question, PEER, &key).expect("seal")
    })
}

fuzz_target!(|data: &[u8]| {
    let valid = sender();
    let peer = PEER;
    let limits = Limits::default();
    for topic in GOSSIP_TOPICS.iter().chain([&TOPIC_RPC]) {
        let _ = open(data, topic, peer, now_ms(), &limits);
    }
    // Splice the input over a valid envelope so the fuzzer reaches the later checks.
    if let Some((&at, rest)) = data.split_first() {
        let mut spliced = valid.clone();
        let start = usize::from(at) % spliced.len();
        for (b, d) in spliced[start..].iter_mut().zip(rest) {
            *b ^= d;
        }
        let _ = open(&spliced, "sosna/reputation/1", peer, now_ms(), &limits);
    }
});
