//! The one place that calls `waitpid`: reaps every child (services, orphans re-parented
//! to PID 1 or to our subreaper) and hands exit statuses to whoever spawned the process.
//!
//! Nothing else may wait on children: a second waiter would steal exits from this one.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown");
                write!(f, "signal {s} ({name})")
            }
        }
    }
}

#[derive(Default)]
struct Waiters {
    by_pid: HashMap<i32, oneshot::Sender<Exit>>,
    orphans: u64,
}

/// Cloneable handle; see the module docs.
#[derive(Clone, Default)]
pub struct Reaper {
    waiters: Arc<Mutex<Waiters>>,
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper::default()
    }

    /// Spawns `cmd` in its own process group and returns its pid and a receiver for its exit.
    ///
    /// The lock is held across spawn and registration, so a child that dies at once cannot
    /// be reaped before anyone is listening for it.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<(u32, oneshot::Receiver<Exit>)> {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let child = cmd.process_group(0).spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters.by_pid.insert(child.id() as i32, tx);
        Ok((child.id(), rx))
    }

    /// Reaps every child that has exited; returns how many.
    pub fn reap_all(&self) -> usize {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let mut count = 0;
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                Ok(_) => continue, // stopped/continued: not an exit
                Err(nix::Error::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    break;
                }
            };
            count += 1;
            match waiters.by_pid.remove(&pid.as_raw()) {
                // The spawner may have stopped listening; that is fine.
                Some(tx) => drop(tx.send(exit)),
                None => {
                    waiters.orphans += 1;
                    tracing::debug!(pid = pid.as_raw(), %exit, "reaped orphan");
                }
            }
        }
        count
    }

    /// Orphans reaped so far (processes nobody spawned through this reaper).
    pub fn orphans_reaped(&self) -> u64 {
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .orphans
    }

    /// Reaps on every SIGCHLD until `stop` turns true. Call before spawning anything.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        // Children that died before the handler existed raised no signal we can see.
        self.reap_all();
        loop {
            tokio::select! {
                _ = sigchld.recv() => { self.reap_all(); }
                _ = stop.changed() => return Ok(()),
            }
        }
    }
}

/// Makes this process the reaper of its orphaned descendants (for the host daemon;
/// PID 1 is that already).
pub fn become_subreaper() -> nix::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    nix::Error::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_display_names_signals() {
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
        assert_eq!(Exit::Signal(9).to_string(), "signal 9 (SIGKILL)");
        assert!(Exit::Code(0).success());
        assert!(!Exit::Signal(15).success());
    }
}
