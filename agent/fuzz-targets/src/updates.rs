//! Updates: rollout notices from operators (through the bus) and RAUC's D-Bus replies.

use std::collections::HashMap;
use std::sync::OnceLock;

use libp2p::PeerId;
use sosna_ota::rauc::{booted_slot, slots_from_status};
use sosna_proto::bus::messages::RolloutNotice;
use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{OwnedValue, LE};

use crate::fixed::NOW_MS;

fn peer() -> PeerId {
    static PEER: OnceLock<PeerId> = OnceLock::new();
    *PEER.get_or_init(|| {
        let key = libp2p::identity::Keypair::ed25519_from_bytes([7u8; 32])
            .expect("a 32-byte ed25519 secret");
        key.public().to_peer_id()
    })
}

/// What a node computes from a notice that passed its checks.
pub(crate) fn notice(n: &RolloutNotice) {
    let _ = sosna_ota::rollout::is_older(&n.version, "0.1.0");
    let _ = sosna_ota::rollout::is_older("0.1.0", &n.version);
    let _ = sosna_ota::fetch::parse_url(&n.url);
    let _ = sosna_ota::fetch::parse_digest(&n.sha256.to_string()[2..]);
    let position = sosna_ota::rollout::position(&peer(), &n.version);
    assert!(position < 100, "position {position}");
    let _ = sosna_ota::rollout::due(n, position, NOW_MS);
}

type SlotStatus = Vec<(String, HashMap<String, OwnedValue>)>;

/// `GetSlotStatus`'s reply body (`a(sa{sv})`, little-endian), then the slots and the
/// booted one, as the agent reads them at every boot.
pub fn rauc_reply(data: &[u8]) {
    let ctxt = Context::new_dbus(LE, 0);
    let bytes = Data::new(data, ctxt);
    let Ok((raw, _)) = bytes.deserialize::<SlotStatus>() else {
        return;
    };
    let slots = slots_from_status(raw);
    for name in ["A", "B", ""] {
        let _ = booted_slot(&slots, name);
    }
    // The progress and text properties are simpler signatures from the same decoder.
    let _ = bytes.deserialize::<(i32, String, i32)>();
    let _ = bytes.deserialize::<String>();
}
