//! Bus envelopes: any bytes, raw or spliced into a valid envelope, give a verified message
//! or an EnvelopeError, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sosna_agent::bus::envelope::{now_ms, open, seal, Limits};
use sosna_agent::bus::messages::{HubQuestion, Message, GOSSIP_TOPICS, TOPIC_RPC};
use sosna_agent::bus::Identity;

fn sender() -> &'static (Identity, Vec<u8>) {
    static SENDER: OnceLock<(Identity, Vec<u8>)> = OnceLock::new();
    SENDER.get_or_init(|| {
        let id = Identity::ephemeral();
        let question = Message::HubQuestion(HubQuestion {
            wallet: Default::default(),
            nonce: 7,
        });
        let valid = seal(question, &id.peer_id(), &id.eth).expect("seal");
        (id, valid)
    })
}

fuzz_target!(|data: &[u8]| {
    let (id, valid) = sender();
    let peer = id.peer_id();
    let limits = Limits::default();
    for topic in GOSSIP_TOPICS.iter().chain([&TOPIC_RPC]) {
        let _ = open(data, topic, &peer, now_ms(), &limits);
    }
    // Splice the input over a valid envelope so the fuzzer reaches the later checks.
    if let Some((&at, rest)) = data.split_first() {
        let mut spliced = valid.clone();
        let start = usize::from(at) % spliced.len();
        for (b, d) in spliced[start..].iter_mut().zip(rest) {
            *b ^= d;
        }
        let _ = open(&spliced, "sosna/reputation/1", &peer, now_ms(), &limits);
    }
});
