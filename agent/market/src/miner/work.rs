//! A miner's side of a task: run the buyer's container through the runtime and turn what
//! it produced into a [`ResultBundle`], whose digest replicas are compared by.

use sosna_proto::result::ResultBundle;
use sosna_proto::task::{Restart, TaskSpec};
use sosna_runtime::{Runtime, RuntimeError};

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
    // The pull checked the registry's content against the pin: this is what ran.
    let image = task.pinned_digest().unwrap_or_default().to_owned();
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
    Ok(ResultBundle {
        image,
        exit_code,
        stdout,
    })
}
