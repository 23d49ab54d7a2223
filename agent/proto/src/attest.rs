//! A miner's signed claim about its result for one work unit: the EIP-712 message
//! `Result(address hub,bytes32 unit,uint16 replicas,bytes32 digest)` of the Verification
//! contract. The hub keeps these so that, if replicas disagree, anyone can prove on chain
//! who signed what and the minority's stake is slashed.

use alloy_primitives::{Address, Bytes, Signature, B256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use sosna_contracts::IVerification;

mod typed {
    alloy_sol_types::sol! {
        /// Field order and names are the contract's RESULT_TYPEHASH.
        struct Result {
            address hub;
            bytes32 unit;
            uint16 replicas;
            bytes32 digest;
        }
    }
}

/// The Verification contract's EIP-712 domain on one chain.
pub fn domain(chain_id: u64, verification: Address) -> Eip712Domain {
    Eip712Domain {
        name: Some("sosna-verification".into()),
        version: Some("1".into()),
        chain_id: Some(alloy_primitives::U256::from(chain_id)),
        verifying_contract: Some(verification),
        salt: None,
    }
}

/// One unit of work as the chain names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// The hub's wallet.
    pub hub: Address,
    pub id: B256,
    pub replicas: u16,
}

/// A miner's signed result for a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub miner: Address,
    pub digest: B256,
    /// 65 bytes r‖s‖v.
    #[serde(deserialize_with = "bounded_bytes")]
    pub signature: Bytes,
}

/// `Bytes` as its own `Deserialize` reads it, except that a msgpack array's declared
/// length is not trusted: alloy's visitor reserves that many bytes up front, so a 300-byte
/// message declaring 0xdddddddd elements asked for 3.7 GB before the signature was looked
/// at (found by fuzzing, `bus_message`). serde_bytes caps the reservation.
fn bounded_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    if d.is_human_readable() {
        Bytes::deserialize(d)
    } else {
        serde_bytes::ByteBuf::deserialize(d).map(|b| Bytes::from(b.into_vec()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("signing the result: {0}")]
    Sign(String),
    #[error("attestation signature is malformed: {0}")]
    Malformed(String),
    #[error("attestation claims miner {claimed} but was signed by {actual}")]
    WrongSigner { claimed: Address, actual: Address },
}

/// The digest the contract's `resultHash` returns for this result.
pub fn signing_hash(domain: &Eip712Domain, unit: &Unit, digest: B256) -> B256 {
    typed::Result {
        hub: unit.hub,
        unit: unit.id,
        replicas: unit.replicas,
        digest,
    }
    .eip712_signing_hash(domain)
}

/// Signs `digest` as this miner's result for `unit`.
pub fn sign(
    key: &PrivateKeySigner,
    domain: &Eip712Domain,
    unit: &Unit,
    digest: B256,
) -> Result<Attestation, AttestError> {
    let sig = key
        .sign_hash_sync(&signing_hash(domain, unit, digest))
        .map_err(|e| AttestError::Sign(e.to_string()))?;
    Ok(Attestation {
        miner: key.address(),
        digest,
        signature: Bytes::from(sig.as_bytes().to_vec()),
    })
}

/// Checks that `a` was signed by the miner it names, for `unit`.
pub fn check(domain: &Eip712Domain, unit: &Unit, a: &Attestation) -> Result<(), AttestError> {
    let sig =
        Signature::try_from(&a.signature[..]).map_err(|e| AttestError::Malformed(e.to_string()))?;
    let actual = sig
        .recover_address_from_prehash(&signing_hash(domain, unit, a.digest))
        .map_err(|e| AttestError::Malformed(e.to_string()))?;
    if actual != a.miner {
        return Err(AttestError::WrongSigner {
            claimed: a.miner,
            actual,
        });
    }
    Ok(())
}

/// The `challenge` call proving a conflict: attestations sorted by miner, as the contract
/// requires.
pub fn challenge(unit: &Unit, attestations: &[Attestation]) -> IVerification::challengeCall {
    let mut sorted: Vec<&Attestation> = attestations.iter().collect();
    sorted.sort_by_key(|a| a.miner);
    IVerification::challengeCall {
        hub: unit.hub,
        unit: unit.id,
        replicas: unit.replicas,
        attestations: sorted
            .into_iter()
            .map(|a| IVerification::Attestation {
                miner: a.miner,
                digest: a.digest,
                signature: a.signature.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> Unit {
        Unit {
            hub: Address::repeat_byte(0x11),
            id: B256::repeat_byte(0x22),
            replicas: 3,
        }
    }

    /// An array that declares four billion elements and holds none is an error, not a
    /// 3.7 GB allocation; the signature still round-trips as msgpack bytes and JSON hex.
    #[test]
    fn a_signature_array_of_declared_huge_length_is_refused_cheaply() {
        let a = Attestation {
            miner: Address::repeat_byte(1),
            digest: B256::repeat_byte(2),
            signature: Bytes::from(vec![7u8; 65]),
        };
        let packed = rmp_serde::to_vec(&a).unwrap();
        assert_eq!(rmp_serde::from_slice::<Attestation>(&packed).unwrap(), a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Attestation>(&json).unwrap(), a);
        let mut hostile = rmp_serde::to_vec(&(a.miner, a.digest)).unwrap();
        hostile[0] = 0x93; // three fields
        hostile.extend([0xdd, 0xdd, 0xdd, 0xdd, 0xdd]); // array32 of 0xdddddddd, then nothing
        let err = rmp_serde::from_slice::<Attestation>(&hostile).unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn signed_results_check_and_tampering_is_caught() {
        let d = domain(31337, Address::repeat_byte(0x33));
        let key = PrivateKeySigner::random();
        let a = sign(&key, &d, &unit(), B256::repeat_byte(7)).unwrap();
        check(&d, &unit(), &a).unwrap();

        let mut other_digest = a.clone();
        other_digest.digest = B256::repeat_byte(8);
        assert!(matches!(
            check(&d, &unit(), &other_digest),
            Err(AttestError::WrongSigner { .. })
        ));
        // Another chain or contract is another domain: the signature does not carry over.
        let elsewhere = domain(1, Address::repeat_byte(0x33));
        assert!(check(&elsewhere, &unit(), &a).is_err());
        let mut short = a.clone();
        short.signature = Bytes::from_static(&[1, 2, 3]);
        assert!(matches!(
            check(&d, &unit(), &short),
            Err(AttestError::Malformed(_))
        ));
    }

    #[test]
    fn challenge_sorts_attestations_by_miner() {
        let d = domain(31337, Address::repeat_byte(0x33));
        let keys: Vec<_> = (0..3).map(|_| PrivateKeySigner::random()).collect();
        let atts: Vec<_> = keys
            .iter()
            .map(|k| sign(k, &d, &unit(), B256::repeat_byte(1)).unwrap())
            .collect();
        let call = challenge(&unit(), &atts);
        let miners: Vec<Address> = call.attestations.iter().map(|a| a.miner).collect();
        let mut sorted = miners.clone();
        sorted.sort();
        assert_eq!(miners, sorted);
        assert_eq!(call.replicas, 3);
    }
}
