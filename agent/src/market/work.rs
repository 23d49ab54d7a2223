//! A miner's side of a task: run the buyer's container through the runtime and turn what
//! it produced into a result bundle whose sha256 is the digest replicas are compared by.
//!
//! The bundle is the exit code and stdout, nothing else: stderr, timings and resource
//! usage differ between honest machines and must not split a vote.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runtime::task::{Restart, TaskSpec};
use crate::runtime::{Runtime, RuntimeError};

/// Domain tag of the digest, so a bundle's hash can never be confused with another sha256.
const DIGEST_TAG: &[u8] = b"sosna-result-v1\0";

/// What a task produced, as compared between replicas and returned to the buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultBundle {
    pub exit_code: i32,
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
}

impl ResultBundle {
    /// sha256 over the tag, the exit code (big-endian) and stdout.
    pub fn digest(&self) -> B256 {
        let mut h = Sha256::new();
        h.update(DIGEST_TAG);
        h.update(self.exit_code.to_be_bytes());
        h.update(&self.stdout);
        B256::from_slice(&h.finalize())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The container never ran its program (image, spec or start failure).
    #[error("task did not run: {0}")]
    NotRun(String),
    #[error("task was killed ({0}); no result")]
    Killed(String),
    #[error("task output exceeds the {cap}-byte result limit ({dropped} bytes dropped)")]
    TooLarge { cap: u64, dropped: u64 },
}

/// Runs `task` to its end and returns its bundle. The container is removed afterwards,
/// whatever happened. Restarts are turned off: a task runs once per replica.
pub async fn execute(rt: &Runtime, mut task: TaskSpec) -> Result<ResultBundle, WorkError> {
    task.restart = Restart::Never;
    let id = rt.run(task).await?;
    let outcome = rt.wait(&id).await;
    let logs = rt.logs(&id);
    if let Err(e) = rt.remove(&id, true).await {
        tracing::warn!("market: removing task container {id}: {e}");
    }
    let outcome = outcome?;
    if let Some(e) = outcome.error {
        return Err(WorkError::NotRun(e));
    }
    if outcome.stdout_dropped > 0 {
        return Err(WorkError::TooLarge {
            cap: rt.log_cap_bytes(),
            dropped: outcome.stdout_dropped,
        });
    }
    let Some(exit_code) = outcome.exit_code else {
        // Killed by a signal, the timeout or the OOM killer: not a result to vote on.
        let why = if outcome.timed_out {
            "timeout".to_string()
        } else if outcome.oom_killed {
            "out of memory".to_string()
        } else {
            format!("signal {}", outcome.signal.unwrap_or_default())
        };
        return Err(WorkError::Killed(why));
    };
    let (stdout, _) = logs?;
    Ok(ResultBundle { exit_code, stdout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_exit_code_and_output_only() {
        let a = ResultBundle {
            exit_code: 0,
            stdout: b"42\n".to_vec(),
        };
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.exit_code = 1;
        assert_ne!(a.digest(), b.digest());
        let c = ResultBundle {
            exit_code: 0,
            stdout: b"43\n".to_vec(),
        };
        assert_ne!(a.digest(), c.digest());
        // Not the bare sha256 of stdout: the tag and exit code are in.
        let bare = B256::from_slice(&Sha256::digest(b"42\n"));
        assert_ne!(a.digest(), bare);
    }
}
