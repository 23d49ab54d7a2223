//! The end of every boot: stop all processes, sync, unmount, and power off or reboot.
//! Runs after the async runtime is gone, so nothing else is waiting on children.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::mounts;
use crate::power::PowerRequest;

/// Console lines go straight to stderr: logging may not be set up (fatal early errors) and
/// must not be buffered when the machine is about to stop.
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("sosna: {}", format_args!($($arg)*)) };
}

/// Stops everything and asks the kernel to power off or reboot. Never returns.
pub fn finish(req: PowerRequest, grace: Duration) -> ! {
    say!("stopping all processes");
    let left = terminate_all(grace);
    if left > 0 {
        say!("{left} processes ignored SIGTERM and were killed");
    }
    nix::unistd::sync();
    for line in mounts::unmount_all() {
        say!("{line}");
    }
    nix::unistd::sync();
    let mode = match req {
        PowerRequest::Poweroff => RebootMode::RB_POWER_OFF,
        PowerRequest::Reboot => RebootMode::RB_AUTOBOOT,
    };
    say!(
        "{}",
        if req == PowerRequest::Poweroff {
            "powering off"
        } else {
            "rebooting"
        }
    );
    let err = reboot(mode).unwrap_err();
    // Only reachable if the kernel refused; PID 1 must still not exit.
    say!("reboot syscall failed: {err}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// SIGTERM to every process, a grace period, then SIGKILL. Returns how many were still
/// alive at SIGKILL time.
fn terminate_all(grace: Duration) -> usize {
    // kill(-1) reaches every process but PID 1 and kernel threads.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    if reap_until_empty(Instant::now() + grace) {
        return 0;
    }
    let left = count_user_processes();
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    reap_until_empty(Instant::now() + Duration::from_secs(2));
    left
}

/// Reaps children until none are left (true) or the deadline passes (false).
fn reap_until_empty(deadline: Instant) -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(nix::Error::ECHILD) => return true,
            Ok(_) | Err(_) => {}
        }
    }
}

/// User-space processes other than ourselves (kernel threads have an empty cmdline).
fn count_user_processes() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.bytes().all(|b| b.is_ascii_digit())
                && name != me
                && std::fs::read(e.path().join("cmdline")).is_ok_and(|c| !c.is_empty())
        })
        .count()
}

/// Whether the booted slot is still on trial (its boot entry counts tries).
static ON_TRIAL: AtomicBool = AtomicBool::new(false);

/// Records whether the booted slot is on trial; PID 1 updates it as the slot's health is
/// settled.
pub fn set_on_trial(on: bool) {
    ON_TRIAL.store(on, Ordering::SeqCst);
}

/// What a fatal error ends in: on a slot still on trial a reboot, which costs the slot a
/// try, so a release that cannot come up falls back to the other slot; otherwise power
/// off, rather than loop.
pub fn fatal_request() -> PowerRequest {
    if ON_TRIAL.load(Ordering::SeqCst) {
        PowerRequest::Reboot
    } else {
        PowerRequest::Poweroff
    }
}

/// A fatal error in PID 1: say it, leave it on the console for `delay`, then reboot (a
/// slot on trial) or power off.
pub fn fatal(message: &str, delay: Duration) -> ! {
    let req = fatal_request();
    say!("FATAL: {message}");
    match req {
        PowerRequest::Reboot => say!(
            "this slot is on trial: rebooting in {} s (its tries fall back to the other slot)",
            delay.as_secs()
        ),
        PowerRequest::Poweroff => say!("powering off in {} s", delay.as_secs()),
    }
    std::thread::sleep(delay);
    finish(req, Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_error_on_a_slot_on_trial_reboots() {
        assert_eq!(fatal_request(), PowerRequest::Poweroff);
        set_on_trial(true);
        assert_eq!(fatal_request(), PowerRequest::Reboot);
        set_on_trial(false);
        assert_eq!(fatal_request(), PowerRequest::Poweroff);
    }
}
