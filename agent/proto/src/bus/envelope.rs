//! Signed envelopes: the only thing that travels on the bus.
//!
//! Wire form: msgpack `[body, signature]`, both byte strings. `body` is the canonical msgpack
//! encoding of [`Body`] (topic, libp2p peer id, Ethereum sender, timestamp, message);
//! `signature` is the sender's EIP-191 `personal_sign` over exactly those bytes. Receivers
//! check, in order: size, shape, canonical encoding, signature, topic, peer binding,
//! freshness, topic schema and message rules; the first failure names itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, Signature};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use super::messages::{Message, MessageError, TOPIC_RPC};

/// What a receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded envelope on a gossip topic, in bytes: everyone relays those.
    pub max_size: usize,
    /// Largest encoded envelope on [`TOPIC_RPC`], in bytes: direct, and carrying specs and
    /// results (see [`crate::bus::limits`]).
    pub max_rpc_size: usize,
    /// Oldest timestamp accepted.
    pub max_age: Duration,
    /// Farthest a timestamp may lie in the future (clock skew).
    pub max_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: super::limits::MAX_GOSSIP_ENVELOPE,
            max_rpc_size: super::limits::MAX_RPC_ENVELOPE,
            max_age: Duration::from_secs(120),
            max_skew: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope of {size} bytes exceeds {max}")]
    TooLarge { size: usize, max: usize },
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("body is not in canonical msgpack encoding")]
    NotCanonical,
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    #[error("signed by {recovered}, but the body claims {claimed}")]
    ForgedSender {
        claimed: Address,
        recovered: Address,
    },
    #[error("envelope for topic {inner:?} arrived on {outer:?}")]
    WrongTopic { outer: String, inner: String },
    #[error("envelope names peer 0x{claimed}, but came from 0x{actual}")]
    PeerMismatch { claimed: String, actual: String },
    #[error("timestamp {age_ms} ms old, older than {max_ms} ms")]
    Stale { age_ms: u64, max_ms: u64 },
    #[error("timestamp {ahead_ms} ms in the future")]
    FromFuture { ahead_ms: u64 },
    #[error("{kind} is not allowed on topic {topic:?}")]
    Schema { kind: &'static str, topic: String },
    #[error("invalid {kind}: {reason}")]
    InvalidMessage {
        kind: &'static str,
        reason: MessageError,
    },
    #[error("encoding envelope: {0}")]
    Encode(String),
}

impl EnvelopeError {
    /// Short stable label, for logs and tests.
    pub fn label(&self) -> &'static str {
        match self {
            EnvelopeError::TooLarge { .. } => "too-large",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::NotCanonical => "not-canonical",
            EnvelopeError::BadSignature(_) => "bad-signature",
            EnvelopeError::ForgedSender { .. } => "forged-sender",
            EnvelopeError::WrongTopic { .. } => "wrong-topic",
            EnvelopeError::PeerMismatch { .. } => "peer-mismatch",
            EnvelopeError::Stale { .. } => "stale",
            EnvelopeError::FromFuture { .. } => "from-future",
            EnvelopeError::Schema { .. } => "schema",
            EnvelopeError::InvalidMessage { .. } => "invalid-message",
            EnvelopeError::Encode(_) => "encode",
        }
    }
}

/// The signed part of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub topic: String,
    /// The sender's libp2p peer id, as bytes.
    #[serde(with = "serde_bytes")]
    pub peer: Vec<u8>,
    /// The sender's Ethereum address; the signature must recover to it.
    pub from: Address,
    /// Unix milliseconds at signing.
    pub timestamp_ms: u64,
    pub message: Message,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    signature: Vec<u8>,
}

/// An envelope that passed every check. `P` is the transport's peer id type: the bytes
/// here, the libp2p `PeerId` once the bus has matched them to the connection's peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<P = Vec<u8>> {
    pub topic: String,
    pub peer: P,
    pub from: Address,
    pub timestamp_ms: u64,
    pub message: Message,
}

impl<P> Verified<P> {
    /// The same envelope with its peer in another type (the bus's `PeerId`).
    pub fn with_peer<Q>(self, peer: Q) -> Verified<Q> {
        Verified {
            topic: self.topic,
            peer,
            from: self.from,
            timestamp_ms: self.timestamp_ms,
            message: self.message,
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Signs `body` with `key` and returns the wire bytes. Seals whatever it is given (tests
/// build bad envelopes with it); [`seal`] is the normal entry point.
pub fn seal_body(body: &Body, key: &PrivateKeySigner) -> Result<Vec<u8>, EnvelopeError> {
    let body = rmp_serde::to_vec(body).map_err(|e| EnvelopeError::Encode(e.to_string()))?;
    let signature = key
        .sign_message_sync(&body)
        .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
    let wire = Wire {
        body,
        signature: signature.as_bytes().to_vec(),
    };
    rmp_serde::to_vec(&wire).map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// Wraps `message` for its own topic, from `peer` (a libp2p peer id's bytes), signed by
/// `key`, stamped now.
pub fn seal(
    message: Message,
    peer: &[u8],
    key: &PrivateKeySigner,
) -> Result<Vec<u8>, EnvelopeError> {
    let body = Body {
        topic: message.topic().to_owned(),
        peer: peer.to_vec(),
        from: key.address(),
        timestamp_ms: now_ms(),
        message,
    };
    seal_body(&body, key)
}

/// Verifies wire bytes that arrived on `topic` from the peer whose id's bytes are `source`,
/// at `now_ms`.
pub fn open(
    bytes: &[u8],
    topic: &str,
    source: &[u8],
    now_ms: u64,
    limits: &Limits,
) -> Result<Verified, EnvelopeError> {
    let max = if topic == TOPIC_RPC {
        limits.max_rpc_size
    } else {
        limits.max_size
    };
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    let wire: Wire =
        rmp_serde::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let body: Body =
        rmp_serde::from_slice(&wire.body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    // The signature covers bytes, the checks cover the decoded body: they must be one thing.
    if rmp_serde::to_vec(&body).ok().as_deref() != Some(&wire.body[..]) {
        return Err(EnvelopeError::NotCanonical);
    }
    let signature = Signature::from_raw(&wire.signature)
        .map_err(|e| EnvelopeError::BadSignature(e.to_string()))?;
    let recovered = signature
        .recover_address_from_msg(&wire.body)
        .map_err(|e| EnvelopeError::BadSignature(e.to_string()))?;
    if recovered != body.from {
        return Err(EnvelopeError::ForgedSender {
            claimed: body.from,
            recovered,
        });
    }
    if body.topic != topic {
        return Err(EnvelopeError::WrongTopic {
            outer: topic.to_owned(),
            inner: body.topic,
        });
    }
    if body.peer != source {
        return Err(EnvelopeError::PeerMismatch {
            claimed: hex(&body.peer),
            actual: hex(source),
        });
    }
    let max_age = limits.max_age.as_millis() as u64;
    let max_skew = limits.max_skew.as_millis() as u64;
    if body.timestamp_ms > now_ms.saturating_add(max_skew) {
        return Err(EnvelopeError::FromFuture {
            ahead_ms: body.timestamp_ms - now_ms,
        });
    }
    let age_ms = now_ms.saturating_sub(body.timestamp_ms);
    if age_ms > max_age {
        return Err(EnvelopeError::Stale {
            age_ms,
            max_ms: max_age,
        });
    }
    if body.message.topic() != topic {
        return Err(EnvelopeError::Schema {
            kind: body.message.kind(),
            topic: topic.to_owned(),
        });
    }
    body.message
        .check(body.from)
        .map_err(|reason| EnvelopeError::InvalidMessage {
            kind: body.message.kind(),
            reason,
        })?;
    Ok(Verified {
        topic: body.topic,
        peer: body.peer,
        from: body.from,
        timestamp_ms: body.timestamp_ms,
        message: body.message,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::messages::{
        HubAnnouncement, HubQuestion, PriceSchedule, TOPIC_HUBS, TOPIC_REPUTATION,
    };

    fn announcement(owner: Address) -> Message {
        Message::HubAnnouncement(HubAnnouncement {
            multiaddrs: vec!["/ip4/10.0.0.1/tcp/4001".into()],
            owner,
            wallet: Address::repeat_byte(7),
            name: "hub-a".into(),
            prices: PriceSchedule {
                cpu_core_hour: 10,
                ..Default::default()
            },
            timestamp_ms: now_ms(),
        })
    }

    /// Stand-in peer id bytes (the proto crate knows no libp2p).
    fn random_peer() -> Vec<u8> {
        PrivateKeySigner::random().address().to_vec()
    }

    fn body(key: &PrivateKeySigner, peer: &[u8]) -> Body {
        Body {
            topic: TOPIC_HUBS.into(),
            peer: peer.to_vec(),
            from: key.address(),
            timestamp_ms: now_ms(),
            message: announcement(key.address()),
        }
    }

    fn open_hubs(bytes: &[u8], peer: &[u8]) -> Result<Verified, EnvelopeError> {
        open(bytes, TOPIC_HUBS, peer, now_ms(), &Limits::default())
    }

    #[test]
    fn test_roundtrip_verifies_sender_and_peer() {
        let key = PrivateKeySigner::random();
        let peer = random_peer();
        let peer = &peer[..];
        let bytes = seal(announcement(key.address()), peer, &key).unwrap();
        let v = open_hubs(&bytes, peer).unwrap();
        assert_eq!(v.from, key.address());
        assert_eq!(v.peer, peer);
        assert!(matches!(v.message, Message::HubAnnouncement(_)));
    }

    #[test]
    fn test_each_violation_is_named() {
        let key = PrivateKeySigner::random();
        let other = PrivateKeySigner::random();
        let peer = random_peer();
        let peer = &peer[..];
        let good = body(&key, peer);

        // Signed by another key while claiming `key`'s address.
        let mut forged = seal_body(&good, &other).unwrap();
        let err = open_hubs(&forged, peer).unwrap_err();
        assert_eq!(err.label(), "forged-sender", "{err}");
        // A flipped signature byte recovers some other address, or none at all.
        let n = forged.len();
        forged[n - 5] ^= 0xff;
        let err = open_hubs(&forged, peer).unwrap_err();
        assert!(
            matches!(err.label(), "forged-sender" | "bad-signature"),
            "{err}"
        );

        let bytes = seal_body(&good, &key).unwrap();
        let err = open_hubs(&bytes, &random_peer()).unwrap_err();
        assert_eq!(err.label(), "peer-mismatch", "{err}");

        let mut stale = good.clone();
        stale.timestamp_ms -= 3_600_000;
        let err = open_hubs(&seal_body(&stale, &key).unwrap(), peer).unwrap_err();
        assert_eq!(err.label(), "stale", "{err}");

        let mut future = good.clone();
        future.timestamp_ms += 3_600_000;
        let err = open_hubs(&seal_body(&future, &key).unwrap(), peer).unwrap_err();
        assert_eq!(err.label(), "from-future", "{err}");

        let err = open(&bytes, TOPIC_REPUTATION, peer, now_ms(), &Limits::default()).unwrap_err();
        assert_eq!(err.label(), "wrong-topic", "{err}");

        let mut schema = good.clone();
        schema.message = Message::HubQuestion(HubQuestion {
            wallet: Address::ZERO,
            nonce: 1,
        });
        let err = open_hubs(&seal_body(&schema, &key).unwrap(), peer).unwrap_err();
        assert_eq!(err.label(), "schema", "{err}");

        // An announcement must be signed by the hub owner it names.
        let mut impostor = good.clone();
        impostor.message = announcement(other.address());
        let err = open_hubs(&seal_body(&impostor, &key).unwrap(), peer).unwrap_err();
        assert_eq!(err.label(), "invalid-message", "{err}");

        let mut big = good.clone();
        big.message = Message::HubAnnouncement(HubAnnouncement {
            name: "x".repeat(20_000),
            ..match announcement(key.address()) {
                Message::HubAnnouncement(a) => a,
                _ => unreachable!(),
            }
        });
        let err = open_hubs(&seal_body(&big, &key).unwrap(), peer).unwrap_err();
        assert_eq!(err.label(), "too-large", "{err}");

        for junk in [&b""[..], b"\x92\xc4\x00", b"not msgpack at all"] {
            let err = open_hubs(junk, peer).unwrap_err();
            assert_eq!(err.label(), "malformed", "{junk:?}: {err}");
        }
    }

    #[test]
    fn test_non_canonical_body_is_rejected() {
        let key = PrivateKeySigner::random();
        let peer = random_peer();
        let peer = &peer[..];
        let mut body = rmp_serde::to_vec(&body(&key, peer)).unwrap();
        // Trailing bytes decode to the same body but are not its canonical encoding.
        body.push(0xc0);
        let signature = key.sign_message_sync(&body).unwrap();
        let wire = Wire {
            body,
            signature: signature.as_bytes().to_vec(),
        };
        let bytes = rmp_serde::to_vec(&wire).unwrap();
        let err = open_hubs(&bytes, peer).unwrap_err();
        assert_eq!(err.label(), "not-canonical", "{err}");
    }
}
