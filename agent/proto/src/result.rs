//! What a task produced, as compared between replicas and returned to the buyer.
//!
//! The bundle is the image the task ran from, its exit code and stdout, nothing else:
//! stderr, timings and resource usage differ between honest machines and must not split a
//! vote. The image is in, so replicas that ran different images never agree, and what a
//! miner signs and the hub commits names the exact image.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain tag of the digest, so a bundle's hash can never be confused with another sha256.
const DIGEST_TAG: &[u8] = b"sosna-result-v2\0";

/// What a task produced, as compared between replicas and returned to the buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultBundle {
    /// Manifest digest (`sha256:…`) of the image the task ran from, as the hub pinned it.
    pub image: String,
    pub exit_code: i32,
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
}

impl ResultBundle {
    /// sha256 over the tag, the image digest (length-prefixed), the exit code
    /// (big-endian) and stdout.
    pub fn digest(&self) -> B256 {
        let mut h = Sha256::new();
        h.update(DIGEST_TAG);
        h.update((self.image.len() as u32).to_be_bytes());
        h.update(self.image.as_bytes());
        h.update(self.exit_code.to_be_bytes());
        h.update(&self.stdout);
        B256::from_slice(&h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_image_exit_code_and_output_only() {
        let a = ResultBundle {
            image: "sha256:aa".into(),
            exit_code: 0,
            stdout: b"42\n".to_vec(),
        };
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.exit_code = 1;
        assert_ne!(a.digest(), b.digest());
        let c = ResultBundle {
            stdout: b"43\n".to_vec(),
            ..a.clone()
        };
        assert_ne!(a.digest(), c.digest());
        let other_image = ResultBundle {
            image: "sha256:ab".into(),
            ..a.clone()
        };
        assert_ne!(a.digest(), other_image.digest());
        // Not the bare sha256 of stdout: the tag and exit code are in.
        let bare = B256::from_slice(&Sha256::digest(b"42\n"));
        assert_ne!(a.digest(), bare);
    }
}
