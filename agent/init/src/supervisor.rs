//! Starts the configured helper daemons and keeps them running: restart with exponential
//! backoff, give up (loudly) after too many fast crashes in a row.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::reaper::{Exit, Reaper};
use serde::Deserialize;

/// What to do after a service exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Restart(Duration),
    /// Too many fast crashes in a row (the count).
    GiveUp(u32),
    /// The policy says this exit is final.
    Done,
}

/// Restart bookkeeping for one service; pure, so the policy is testable without processes.
#[derive(Debug)]
pub struct RestartState {
    policy: RestartPolicy,
    fast_crash: Duration,
    max_fast_crashes: u32,
    backoff: Duration,
    max_backoff: Duration,
    fast_crashes: u32,
}

impl RestartState {
    pub fn new(svc: &ServiceConfig) -> RestartState {
        RestartState {
            policy: svc.restart,
            fast_crash: svc.fast_crash(),
            max_fast_crashes: svc.max_fast_crashes,
            backoff: Duration::from_millis(svc.backoff_ms),
            max_backoff: Duration::from_millis(svc.max_backoff_ms),
            fast_crashes: 0,
        }
    }

    pub fn on_exit(&mut self, exit: Exit, ran_for: Duration) -> Decision {
        let wanted = match self.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !exit.success(),
            RestartPolicy::Never => false,
        };
        if !wanted {
            return Decision::Done;
        }
        if ran_for < self.fast_crash {
            self.fast_crashes += 1;
        } else {
            // A long healthy run forgives earlier crashes.
            self.fast_crashes = 0;
        }
        if self.fast_crashes >= self.max_fast_crashes {
            return Decision::GiveUp(self.fast_crashes);
        }
        let doublings = self.fast_crashes.saturating_sub(1).min(20);
        Decision::Restart((self.backoff * 2u32.pow(doublings)).min(self.max_backoff))
    }
}

/// Handle to the running services.
pub struct Supervisor {
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts every service on the current tokio runtime.
    pub fn start(
        reaper: &Reaper,
        services: &[ServiceConfig],
        stop_timeout: Duration,
    ) -> Supervisor {
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = services
            .iter()
            .map(|svc| {
                tokio::spawn(supervise(
                    reaper.clone(),
                    svc.clone(),
                    stop_rx.clone(),
                    stop_timeout,
                ))
            })
            .collect();
        Supervisor { stop_tx, tasks }
    }

    /// Stops every service (SIGTERM to its process group, SIGKILL after the timeout) and
    /// waits for them.
    pub async fn stop(self) {
        let _ = self.stop_tx.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn supervise(
    reaper: Reaper,
    svc: ServiceConfig,
    mut stop: watch::Receiver<bool>,
    stop_timeout: Duration,
) {
    let mut state = RestartState::new(&svc);
    let name = svc.name.as_str();
    let mut run = 0u32;
    loop {
        run += 1;
        let started = Instant::now();
        let exit = match reaper.spawn(&mut command(&svc)) {
            Ok((pid, exited)) => {
                tracing::info!(service = name, pid, run, "started");
                tokio::select! {
                    exit = exited => exit.unwrap_or(Exit::Code(-1)),
                    _ = stop.changed() => {
                        stop_group(name, pid, stop_timeout).await;
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(service = name, "cannot start {:?}: {e}", svc.command[0]);
                Exit::Code(127)
            }
        };
        let ran_for = started.elapsed();
        match state.on_exit(exit, ran_for) {
            Decision::Done => {
                tracing::info!(service = name, "exited with {exit}; not restarting");
                return;
            }
            Decision::GiveUp(n) => {
                tracing::error!(
                    service = name,
                    "exited with {exit}; giving up after {n} fast crashes in a row"
                );
                return;
            }
            Decision::Restart(delay) => {
                tracing::warn!(
                    service = name,
                    "exited with {exit} after {} ms; restarting in {} ms",
                    ran_for.as_millis(),
                    delay.as_millis()
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

fn command(svc: &ServiceConfig) -> Command {
    let mut cmd = Command::new(&svc.command[0]);
    cmd.args(&svc.command[1..]).stdin(Stdio::null());
    for kv in &svc.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd
}

/// SIGTERM to the service's process group; SIGKILL if it outlives the grace period.
async fn stop_group(name: &str, pid: u32, grace: Duration) {
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let grace = tokio::time::sleep(grace);
    tokio::pin!(grace);
    // The group leader's exit is what we can observe; poll for the group to be empty.
    loop {
        if killpg(group, None).is_err() {
            tracing::info!(service = name, "stopped");
            return;
        }
        tokio::select! {
            _ = &mut grace => {
                tracing::warn!(service = name, "did not stop in time; killing");
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whenever the service exits.
    #[default]
    Always,
    /// Restart only after a non-zero exit or a fatal signal.
    OnFailure,
    /// Run once.
    Never,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name used in logs; unique among services.
    pub name: String,
    /// Program and arguments; the program is an absolute path.
    pub command: Vec<String>,
    /// Extra environment, `KEY=value` strings.
    #[serde(default)]
    pub env: Vec<String>,
    /// `always`, `on-failure` or `never`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// A run shorter than this counts as a fast crash, in milliseconds.
    #[serde(default = "default_fast_crash_ms")]
    pub fast_crash_ms: u64,
    /// Give up after this many fast crashes in a row.
    #[serde(default = "default_max_fast_crashes")]
    pub max_fast_crashes: u32,
    /// First restart delay in milliseconds; doubles after each fast crash.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Ceiling for the restart delay in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_fast_crash_ms() -> u64 {
    10_000
}
fn default_max_fast_crashes() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    100
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

impl ServiceConfig {
    pub fn fast_crash(&self) -> Duration {
        Duration::from_millis(self.fast_crash_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(restart: RestartPolicy) -> ServiceConfig {
        ServiceConfig {
            name: "t".into(),
            command: vec!["/bin/true".into()],
            env: vec![],
            restart,
            fast_crash_ms: 1000,
            max_fast_crashes: 3,
            backoff_ms: 100,
            max_backoff_ms: 250,
        }
    }

    const FAST: Duration = Duration::from_millis(10);
    const SLOW: Duration = Duration::from_secs(5);

    #[test]
    fn fast_crashes_back_off_then_give_up() {
        let mut s = RestartState::new(&svc(RestartPolicy::Always));
        let fail = Exit::Code(1);
        assert_eq!(
            s.on_exit(fail, FAST),
            Decision::Restart(Duration::from_millis(100))
        );
        assert_eq!(
            s.on_exit(fail, FAST),
            Decision::Restart(Duration::from_millis(200))
        );
        assert_eq!(s.on_exit(fail, FAST), Decision::GiveUp(3));
    }

    #[test]
    fn backoff_is_capped_and_a_long_run_resets_it() {
        let mut c = svc(RestartPolicy::Always);
        c.max_fast_crashes = 10;
        let mut s = RestartState::new(&c);
        for _ in 0..4 {
            s.on_exit(Exit::Signal(11), FAST);
        }
        assert_eq!(
            s.on_exit(Exit::Signal(11), FAST),
            Decision::Restart(Duration::from_millis(250))
        );
        assert_eq!(
            s.on_exit(Exit::Code(1), SLOW),
            Decision::Restart(Duration::from_millis(100))
        );
    }

    #[test]
    fn policies_decide_what_restarts() {
        let mut never = RestartState::new(&svc(RestartPolicy::Never));
        assert_eq!(never.on_exit(Exit::Code(1), FAST), Decision::Done);
        let mut on_failure = RestartState::new(&svc(RestartPolicy::OnFailure));
        assert_eq!(on_failure.on_exit(Exit::Code(0), FAST), Decision::Done);
        assert!(matches!(
            on_failure.on_exit(Exit::Code(2), FAST),
            Decision::Restart(_)
        ));
        let mut always = RestartState::new(&svc(RestartPolicy::Always));
        assert!(matches!(
            always.on_exit(Exit::Code(0), SLOW),
            Decision::Restart(_)
        ));
    }
}
