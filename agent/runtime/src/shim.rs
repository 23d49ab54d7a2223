//! The per-container shim: a fresh `sosna shim DIR` process that mounts the container's
//! root, creates and starts it through libcontainer, copies its output into size-capped
//! logs, enforces the wall-clock timeout, reads its resource use from the cgroup, tears
//! everything down and writes the outcome.
//!
//! Why a separate process: libcontainer forks without fork handlers and blocks while doing
//! so, which is only safe in a single-threaded process; and the container's init is cloned
//! with no exit signal, so only its direct parent can wait for it (with `__WALL`), which
//! must not be the agent's reaper.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

pub const PLAN: &str = "plan.json";
pub const OUTCOME: &str = "outcome.json";
pub const PID: &str = "pid";
/// A signal the agent asked for before the pid was known.
pub const KILL: &str = "kill";
pub const STDOUT: &str = "stdout.log";
pub const STDERR: &str = "stderr.log";

/// What the agent tells the shim; written to `DIR/plan.json` beside the bundle's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    /// libcontainer's state root.
    pub runtime_root: PathBuf,
    /// Unpacked layers, top first (overlayfs order).
    pub lowers: Vec<PathBuf>,
    pub timeout_secs: u64,
    /// Size of the tmpfs holding the overlay's private upper layer.
    #[serde(default)]
    pub scratch_bytes: u64,
    pub log_cap_bytes: u64,
    pub cgroup_path: String,
    /// The container's veth and addresses, for `network = "nat"`.
    #[serde(default)]
    pub nat: Option<super::network::NatPlan>,
}

/// How a container ended, and what it used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub timed_out: bool,
    pub cpu_usec: u64,
    pub memory_peak_bytes: u64,
    pub wall_ms: u64,
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
    /// Set when the container could not be created or started.
    pub error: Option<String>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.error, self.exit_code, self.signal) {
            (Some(e), _, _) => write!(f, "failed: {e}")?,
            (None, Some(c), _) => write!(f, "exit code {c}")?,
            (None, None, Some(s)) => write!(f, "killed by signal {s}")?,
            _ => write!(f, "unknown")?,
        }
        if self.oom_killed {
            write!(f, " (out of memory)")?;
        }
        if self.timed_out {
            write!(f, " (timed out)")?;
        }
        Ok(())
    }
}

/// Entry point of `sosna shim DIR`; returns the process exit code.
pub fn main(dir: &Path) -> i32 {
    let plan: Plan = match fs::read(dir.join(PLAN))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shim: {}: {e}", dir.join(PLAN).display());
            return 2;
        }
    };
    let started = Instant::now();
    let mut outcome = run(dir, &plan).unwrap_or_else(|e| Outcome {
        error: Some(e),
        ..Default::default()
    });
    outcome.wall_ms = started.elapsed().as_millis() as u64;
    teardown(dir, &plan);
    let json = serde_json::to_vec(&outcome).expect("outcome serializes");
    // Atomic, not synced: after a power cut the runtime restarts with no containers.
    let written =
        sosna_durable::write_atomic(&dir.join(OUTCOME), &json, sosna_durable::Durability::Atomic);
    if let Err(e) = written {
        eprintln!("shim: write outcome: {e}");
        return 2;
    }
    0
}

/// The tmpfs under a container's dir that holds its overlay's upper and work dirs.
const SCRATCH: &str = "scratch";

fn run(dir: &Path, plan: &Plan) -> Result<Outcome, String> {
    let rootfs = dir.join("rootfs");
    mount_rootfs(dir, &rootfs, &plan.lowers, plan.scratch_bytes)
        .map_err(|e| format!("mount rootfs: {e}"))?;
    let (out_r, out_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let devnull = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;

    let mut container = ContainerBuilder::new(plan.id.clone(), SyscallType::default())
        .with_root_path(&plan.runtime_root)
        .and_then(|b| b.validate_id())
        .map_err(|e| format!("container {}: {e}", plan.id))?
        .with_stdin(OwnedFd::from(devnull))
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(dir)
        .with_systemd(false)
        .with_detach(true)
        .with_no_pivot(root_is_ramfs())
        .build()
        .map_err(|e| format!("create: {e}"))?;
    // From here on the builder's copies of the pipe's write ends are gone; ours close when
    // the container's processes exit, which ends the log copiers.
    let copiers = [
        spawn_copier(out_r, dir.join(STDOUT), plan.log_cap_bytes),
        spawn_copier(err_r, dir.join(STDERR), plan.log_cap_bytes),
    ];
    // The init exists and waits for start: its network namespace can be wired now.
    if let Some(nat) = &plan.nat {
        let pid = container.pid().ok_or("created container has no pid")?;
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        super::network::attach(nat, &netns).map_err(|e| format!("network: {e}"))?;
    }
    container.start().map_err(|e| format!("start: {e}"))?;
    let pid = container.pid().ok_or("started container has no pid")?;
    let _ = fs::write(dir.join(PID), pid.to_string());
    if let Some(sig) = fs::read_to_string(dir.join(KILL))
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        super::send_signal(pid.as_raw(), sig);
    }

    let mut outcome = wait(pid.as_raw(), plan.timeout_secs)?;
    read_usage(&plan.cgroup_path, &mut outcome);
    if let Err(e) = container.delete(true) {
        tracing::warn!("delete {}: {e}", plan.id);
    }
    // Every writer is gone once the container is deleted; the deadline only guards
    // against a leaked descriptor keeping a pipe open.
    let deadline = Instant::now() + Duration::from_secs(5);
    let [out, err] = copiers;
    outcome.stdout_dropped = out
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or(0);
    outcome.stderr_dropped = err
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or(0);
    Ok(outcome)
}

/// Overlay of the image's layers with a private upper dir: layers stay shared and pristine,
/// and the spec's `readonly` decides whether the container may write at all. The upper
/// dir is on a tmpfs of `scratch_bytes` (charged to the task's memory cgroup as it is
/// written), so a writable root cannot fill the node's disk.
fn mount_rootfs(
    dir: &Path,
    rootfs: &Path,
    lowers: &[PathBuf],
    scratch_bytes: u64,
) -> io::Result<()> {
    if lowers.is_empty() {
        return Err(io::Error::other("image has no layers"));
    }
    let scratch = dir.join(SCRATCH);
    for d in [&scratch, rootfs] {
        fs::create_dir_all(d)?;
    }
    let size = format!("size={},mode=0700", scratch_bytes.max(1 << 20));
    mount(
        Some("tmpfs"),
        &scratch,
        Some("tmpfs"),
        MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        Some(size.as_str()),
    )?;
    for d in ["upper", "work"] {
        fs::create_dir_all(scratch.join(d))?;
    }
    // The overlay's root takes its owner from the upper dir: the task's root, so that a
    // writable root is writable to it.
    let upper = scratch.join("upper");
    std::os::unix::fs::chown(&upper, Some(super::idmap::BASE), Some(super::idmap::BASE))?;
    fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    wait_for_overlayfs(Duration::from_secs(20))?;
    let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        scratch.join("upper").display(),
        scratch.join("work").display()
    );
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(io::Error::from)
}

/// On the image the overlay module loads on a thread after READY; a task that arrives
/// first waits for it (bounded) instead of failing.
fn wait_for_overlayfs(limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let known = fs::read_to_string("/proc/filesystems")?
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"));
        if known {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("the kernel has no overlay filesystem"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// pivot_root cannot leave the initramfs; there libcontainer must move the root instead.
fn root_is_ramfs() -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.split(' ').nth(4) == Some("/"))
                .map(|l| l.contains(" - rootfs ") || l.contains(" - ramfs "))
        })
        .unwrap_or(false)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Copies a pipe into `path` (appending: a restarted service keeps its earlier output),
/// keeping the first `cap` bytes; reports how many were dropped when the pipe closes.
fn spawn_copier(r: OwnedFd, path: PathBuf, cap: u64) -> mpsc::Receiver<u64> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut src = File::from(r);
        let Ok(mut dst) = fs::OpenOptions::new().create(true).append(true).open(&path) else {
            return;
        };
        let mut kept = dst.metadata().map(|m| m.len()).unwrap_or(0);
        let mut dropped = 0u64;
        let mut buf = vec![0u8; 1 << 15];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let take = (cap.saturating_sub(kept)).min(n as u64) as usize;
            if take > 0 && dst.write_all(&buf[..take]).is_err() {
                break;
            }
            kept += take as u64;
            dropped += (n - take) as u64;
        }
        let _ = tx.send(dropped);
    });
    rx
}

/// Waits for the container's init (our child via CLONE_PARENT, with no exit signal) with
/// a deadline; past it the container is killed.
fn wait(pid: i32, timeout_secs: u64) -> Result<Outcome, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if raw < 0 {
        return Err(format!("pidfd_open {pid}: {}", io::Error::last_os_error()));
    }
    // SAFETY: raw is a fresh fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let deadline = (timeout_secs > 0).then(|| Instant::now() + Duration::from_secs(timeout_secs));
    let mut outcome = Outcome::default();
    loop {
        let wait_ms = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        if n > 0 {
            break;
        }
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n == 0 && !outcome.timed_out {
            outcome.timed_out = true;
            // SAFETY: pidfd is valid; null siginfo, no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    0usize,
                    0,
                )
            };
            // Wait for the kill to land without a deadline.
            return finish_wait(pid, outcome, true);
        }
        if n < 0 {
            return Err(format!("poll: {}", io::Error::last_os_error()));
        }
    }
    finish_wait(pid, outcome, false)
}

fn finish_wait(pid: i32, mut outcome: Outcome, _killed: bool) -> Result<Outcome, String> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(format!("waitpid {pid}: {e}"));
        }
    }
    if libc::WIFEXITED(status) {
        outcome.exit_code = Some(libc::WEXITSTATUS(status));
    } else if libc::WIFSIGNALED(status) {
        outcome.signal = Some(libc::WTERMSIG(status));
    }
    Ok(outcome)
}

/// CPU time, peak memory and OOM kills, read before the cgroup is removed. Only the three
/// numbers billing needs are read, from whichever hierarchy has them (v2, else v1).
fn read_usage(cgroup_path: &str, outcome: &mut Outcome) {
    let rel = cgroup_path.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    let read = |parts: &[&str]| -> Option<String> {
        parts
            .iter()
            .find_map(|p| fs::read_to_string(base.join(p.replace("{}", rel))).ok())
    };
    let field = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|n| n.trim().parse().ok())
    };
    outcome.cpu_usec = read(&["{}/cpu.stat"])
        .and_then(|t| field(&t, "usage_usec "))
        .or_else(|| {
            read(&["cpuacct/{}/cpuacct.usage", "cpu,cpuacct/{}/cpuacct.usage"])
                .and_then(|t| t.trim().parse::<u64>().ok())
                .map(|ns| ns / 1000)
        })
        .unwrap_or(0);
    outcome.memory_peak_bytes = read(&["{}/memory.peak", "memory/{}/memory.max_usage_in_bytes"])
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    outcome.oom_killed = read(&["{}/memory.events", "memory/{}/memory.oom_control"])
        .and_then(|t| field(&t, "oom_kill "))
        .is_some_and(|n| n > 0);
}

/// Undoes everything `run` may have done, whatever point it reached.
fn teardown(dir: &Path, plan: &Plan) {
    if let Ok(mut c) = Container::load(plan.runtime_root.join(&plan.id)) {
        if let Err(e) = c.delete(true) {
            tracing::warn!("delete {}: {e}", plan.id);
        }
    }
    if let Some(nat) = &plan.nat {
        if let Err(e) = super::network::detach(nat) {
            tracing::warn!("network teardown {}: {e}", plan.id);
        }
    }
    for m in ["rootfs", SCRATCH] {
        let path = dir.join(m);
        if let Err(e) = umount2(&path, MntFlags::MNT_DETACH) {
            if e != nix::Error::EINVAL && e != nix::Error::ENOENT {
                tracing::warn!("umount {}: {e}", path.display());
            }
        }
        let _ = fs::remove_dir_all(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_reads_well() {
        let o = Outcome {
            signal: Some(9),
            oom_killed: true,
            ..Default::default()
        };
        assert_eq!(o.to_string(), "killed by signal 9 (out of memory)");
        let o = Outcome {
            exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(o.to_string(), "exit code 3");
    }

    #[test]
    fn copier_caps_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) = pipe().unwrap();
        let h = spawn_copier(r, dir.path().join("log"), 10);
        let mut w = File::from(w);
        w.write_all(b"0123456789abcdef").unwrap();
        drop(w);
        assert_eq!(h.recv().unwrap(), 6);
        assert_eq!(fs::read(dir.path().join("log")).unwrap(), b"0123456789");
    }
}
