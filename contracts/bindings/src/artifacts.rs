//! Creation bytecode from forge artifacts (`contracts/out/<Name>.sol/<Name>.json`), read at
//! run time so building the agent never needs solc.

use std::path::{Path, PathBuf};

use alloy_primitives::Bytes;
use serde_json::Value;

/// Why an artifact could not supply bytecode.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("reading artifact {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("artifact {path} is malformed")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("artifact {path} has no usable `bytecode.object`")]
    NoBytecode { path: PathBuf },
}

/// Path of `contract`'s artifact inside a forge `out/` directory.
pub fn artifact_path(out_dir: &Path, contract: &str) -> PathBuf {
    out_dir
        .join(format!("{contract}.sol"))
        .join(format!("{contract}.json"))
}

/// Creation bytecode of `contract` (for example `"Market"`) from a forge `out/` directory.
/// Constructor arguments are ABI-encoded and appended by the caller.
pub fn creation_bytecode(out_dir: &Path, contract: &str) -> Result<Bytes, ArtifactError> {
    let path = artifact_path(out_dir, contract);
    let text = std::fs::read_to_string(&path).map_err(|source| ArtifactError::Read {
        path: path.clone(),
        source,
    })?;
    let json: Value = serde_json::from_str(&text).map_err(|source| ArtifactError::Parse {
        path: path.clone(),
        source,
    })?;
    json.pointer("/bytecode/object")
        .and_then(Value::as_str)
        .and_then(|hex| hex.parse::<Bytes>().ok())
        .filter(|code| !code.is_empty())
        .ok_or(ArtifactError::NoBytecode { path })
}
