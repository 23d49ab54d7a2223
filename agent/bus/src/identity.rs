//! The node's two keys, kept on the state directory: the libp2p key (its peer id) and the
//! Ethereum key that signs envelopes (and owns a hub's wallet). Files are created 0600 and
//! their contents never reach a log: [`Identity`]'s `Debug` shows only public parts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;
use libp2p::identity::Keypair;
use libp2p::PeerId;

/// libp2p key: protobuf encoding of an ed25519 keypair.
pub const NODE_KEY_FILE: &str = "node.key";
/// Ethereum key: 32 raw secret bytes.
pub const ETH_KEY_FILE: &str = "eth.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not a valid key: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("key file {path} is readable by others (mode {mode:o}); expected 0600")]
    Permissions { path: PathBuf, mode: u32 },
}

#[derive(Clone)]
pub struct Identity {
    pub keypair: Keypair,
    pub eth: PrivateKeySigner,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Fresh keys that live only in memory (tests, benchmarks).
    pub fn ephemeral() -> Identity {
        Identity {
            keypair: Keypair::generate_ed25519(),
            eth: PrivateKeySigner::random(),
        }
    }

    /// An identity with a given Ethereum key (e.g. a funded test account).
    pub fn with_eth_key(eth: PrivateKeySigner) -> Identity {
        Identity {
            keypair: Keypair::generate_ed25519(),
            eth,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    pub fn address(&self) -> Address {
        self.eth.address()
    }

    /// Loads both keys from `dir`, creating (0600) whichever is missing.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let node_path = dir.join(NODE_KEY_FILE);
        let keypair = match read_secret(&node_path)? {
            Some(bytes) => {
                Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Invalid {
                    path: node_path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => {
                let keypair = Keypair::generate_ed25519();
                let bytes = keypair
                    .to_protobuf_encoding()
                    .expect("ed25519 keys always encode");
                write_secret(&node_path, &bytes)?;
                keypair
            }
        };
        let eth_path = dir.join(ETH_KEY_FILE);
        let eth = match read_secret(&eth_path)? {
            Some(bytes) => {
                let secret = B256::try_from(&bytes[..]).map_err(|_| IdentityError::Invalid {
                    path: eth_path.clone(),
                    reason: format!("{} bytes, expected 32", bytes.len()),
                })?;
                PrivateKeySigner::from_bytes(&secret).map_err(|e| IdentityError::Invalid {
                    path: eth_path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => {
                let eth = PrivateKeySigner::random();
                write_secret(&eth_path, eth.to_bytes().as_slice())?;
                eth
            }
        };
        let id = Identity { keypair, eth };
        tracing::info!(peer_id = %id.peer_id(), address = %id.address(), "bus identity");
        Ok(id)
    }
}

/// Reads a key file, refusing one that others can read.
fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map(Some).map_err(io)
}

/// Writes a key file 0600 from the start (never world-readable, even briefly), then
/// renames it into place so a crash leaves either no key or a whole one.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    sosna_durable::write_secret(path, bytes).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_keys_persist_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        for file in [NODE_KEY_FILE, ETH_KEY_FILE] {
            let mode = fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        assert_eq!(a.address(), b.address());
        let shown = format!("{a:?}");
        assert!(shown.contains(&a.peer_id().to_string()), "{shown}");
        let secret = alloy_primitives::hex::encode(a.eth.to_bytes());
        assert!(!shown.contains(&secret), "Debug leaks the key: {shown}");
    }

    #[test]
    fn test_group_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(ETH_KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::Permissions { .. }), "{err}");
    }

    #[test]
    fn test_corrupt_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join(ETH_KEY_FILE), b"short").unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains(ETH_KEY_FILE), "{err}");
    }
}
