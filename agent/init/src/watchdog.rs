//! The hardware watchdog: a machine whose agent stops answering resets by itself. On the
//! disk image it is also what brings a new slot that hangs back to the old one: each reset
//! costs the slot one of its boot tries, and systemd-boot falls back once they run out.
//!
//! The early stage arms it (`sosna.watchdog=SECS`), so a hang anywhere from there on is
//! covered, and hands the open device to the agent across exec (`SOSNA_WATCHDOG=FD:SECS`)
//! rather than closing it (a close without the magic byte makes the kernel shout). The
//! agent pets it from its async runtime, so a runtime that hangs stops the pets too. A
//! slot on trial is petted only until [`TRIAL_LIMIT`] unless its health check passes.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::health::SlotHealth;

/// The variable that hands the device over: `FD:SECS`.
pub const ENV: &str = "SOSNA_WATCHDOG";
const DEVICE: &str = "/dev/watchdog";
/// How long a slot on trial may take to pass its health check (every step of which has
/// its own deadline well inside this).
pub const TRIAL_LIMIT: Duration = Duration::from_secs(600);
/// How long the device may take to appear after its driver loads.
const APPEAR: Duration = Duration::from_secs(2);

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);

/// An armed watchdog: the machine resets unless [`Watchdog::pet`] is called within the
/// timeout.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    timeout: Duration,
}

impl Watchdog {
    /// Opens the device and sets its timeout; `Ok(None)` when the machine has none.
    pub fn arm(secs: u32) -> io::Result<Option<Watchdog>> {
        // The class directory appears when a driver binds; the node follows shortly.
        if !Path::new("/sys/class/watchdog/watchdog0").exists() {
            return Ok(None);
        }
        let started = Instant::now();
        let file = loop {
            match std::fs::OpenOptions::new().write(true).open(DEVICE) {
                Ok(f) => break f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && started.elapsed() < APPEAR => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("open {DEVICE}: {e}"))),
            }
        };
        // Opening started the countdown: on any failure from here the device is stopped
        // with the magic close, or the machine would reset with nobody to pet it.
        let mut t = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid open fd and a pointer to a live c_int, as WDIOC_SETTIMEOUT takes.
        if let Err(e) = unsafe { wdioc_settimeout(file.as_raw_fd(), &mut t) } {
            disarm(file);
            return Err(io::Error::other(format!(
                "set the watchdog timeout to {secs} s: {e}"
            )));
        }
        Ok(Some(Watchdog {
            file,
            // The driver may round the timeout; it reports what it set.
            timeout: Duration::from_secs(t.max(1) as u64),
        }))
    }

    /// The `KEY=VALUE` that hands this device to the program about to be exec'd; the
    /// descriptor is left open across exec.
    pub fn hand_over(self) -> io::Result<String> {
        if let Err(e) = close_on_exec(&self.file, false) {
            disarm(self.file);
            return Err(io::Error::other(format!("hand the watchdog over: {e}")));
        }
        let secs = self.timeout.as_secs();
        Ok(format!("{ENV}={}:{secs}", self.file.into_raw_fd()))
    }

    /// Takes the device handed over by the early stage, if any; the variable is removed
    /// so no child sees it, and the descriptor is closed on exec from now on.
    ///
    /// Call before any other thread starts (it edits the environment).
    pub fn inherited() -> Result<Option<Watchdog>, String> {
        let Some(value) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        std::env::remove_var(ENV);
        let value = value.to_string_lossy();
        let (fd, secs) = parse(&value).ok_or_else(|| format!("{ENV}={value:?} is not FD:SECS"))?;
        let meta = nix::sys::stat::fstat(fd).map_err(|e| format!("{ENV}: fd {fd}: {e}"))?;
        if meta.st_mode & libc::S_IFMT != libc::S_IFCHR {
            return Err(format!("{ENV}: fd {fd} is not a character device"));
        }
        // SAFETY: the early stage opened this fd for us and nothing else in this process
        // owns it (checked above to be an open character device).
        let file = unsafe { File::from_raw_fd(fd) };
        if let Err(e) = close_on_exec(&file, true) {
            // Unusable here: stop it rather than leak it armed into every child.
            disarm(file);
            return Err(format!("{ENV}: fd {fd}: close-on-exec: {e}"));
        }
        Ok(Some(Watchdog {
            file,
            timeout: Duration::from_secs(secs.into()),
        }))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Restarts the countdown.
    pub fn pet(&mut self) -> io::Result<()> {
        self.file.write_all(b"\0")
    }
}

fn close_on_exec(file: &File, on: bool) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FdFlag, F_GETFD, F_SETFD};
    let mut flags = FdFlag::from_bits_truncate(fcntl(file.as_raw_fd(), F_GETFD)?);
    flags.set(FdFlag::FD_CLOEXEC, on);
    fcntl(file.as_raw_fd(), F_SETFD(flags)).map(drop)
}

/// Stops the countdown: the driver disarms on a close preceded by the magic byte 'V'
/// (drivers built with nowayout ignore it, which is their owner's choice).
fn disarm(mut file: File) {
    if let Err(e) = file.write_all(b"V") {
        tracing::warn!("watchdog: magic close: {e}");
    }
}

/// `FD:SECS`, with a descriptor above stdio and a non-zero timeout.
fn parse(value: &str) -> Option<(RawFd, u32)> {
    let (fd, secs) = value.split_once(':')?;
    let fd: RawFd = fd.parse().ok().filter(|fd| *fd > 2)?;
    let secs: u32 = secs.parse().ok().filter(|s| *s > 0)?;
    Some((fd, secs))
}

/// Pets `wd` every third of its timeout until `stop`, except that a slot whose verdict is
/// still pending after [`TRIAL_LIMIT`] is left to be reset. At `stop` it is petted once
/// more and left armed: the reboot or poweroff that follows must come within the timeout.
pub async fn keep(
    mut wd: Watchdog,
    verdict: watch::Receiver<SlotHealth>,
    mut stop: watch::Receiver<bool>,
) {
    let started = tokio::time::Instant::now();
    let every = wd.timeout / 3;
    tracing::info!("watchdog: armed, {} s", wd.timeout.as_secs());
    loop {
        let pending = *verdict.borrow() == SlotHealth::Checking;
        if pending && started.elapsed() > TRIAL_LIMIT {
            tracing::error!(
                "watchdog: the health check has not passed in {} s; letting the watchdog reset the machine",
                TRIAL_LIMIT.as_secs()
            );
            break;
        }
        if let Err(e) = wd.pet() {
            tracing::error!("watchdog: pet: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {
                let _ = wd.pet();
                break;
            }
        }
    }
    // Closing without the magic byte would not stop it either, but the kernel would
    // complain on the console; the descriptor goes with the process.
    std::mem::forget(wd);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_on_exec_is_set_and_cleared() {
        let file = File::open("/proc/self/stat").unwrap();
        let cloexec = |f: &File| {
            let flags = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::F_GETFD).unwrap();
            nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
        };
        close_on_exec(&file, false).unwrap();
        assert!(!cloexec(&file));
        close_on_exec(&file, true).unwrap();
        assert!(cloexec(&file));
    }

    #[test]
    fn the_hand_over_value_is_checked() {
        assert_eq!(parse("3:60"), Some((3, 60)));
        for bad in [
            "", "3", "3:", ":60", "2:60", "3:0", "x:60", "3:-1", "3:60:1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
