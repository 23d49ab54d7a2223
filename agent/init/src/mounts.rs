//! Early filesystems PID 1 mounts, and the unmount pass at shutdown.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {fstype} on {target}: {source}")]
    Mount {
        fstype: &'static str,
        target: &'static str,
        source: nix::Error,
    },
    #[error("create mount point {target}: {source}")]
    MountPoint {
        target: &'static str,
        source: std::io::Error,
    },
}

struct EarlyMount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// In mount order; parents before children.
const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    EarlyMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    EarlyMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    EarlyMount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
    },
    EarlyMount {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    EarlyMount {
        source: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    EarlyMount {
        source: "tmp",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    EarlyMount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
    },
];

/// Mounts the early filesystems. A target that is already a mount point (the kernel or
/// a boot loader did it) is left alone, so this is safe to call once per boot.
pub fn mount_early() -> Result<(), MountError> {
    for m in EARLY_MOUNTS {
        if is_mount_point(Path::new(m.target)) {
            continue;
        }
        std::fs::create_dir_all(m.target).map_err(|source| MountError::MountPoint {
            target: m.target,
            source,
        })?;
        mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data).map_err(|source| {
            MountError::Mount {
                fstype: m.fstype,
                target: m.target,
                source,
            }
        })?;
    }
    Ok(())
}

fn is_mount_point(path: &Path) -> bool {
    mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
        .iter()
        .any(|p| p == path)
}

/// Mount points from `/proc/self/mountinfo` text, in mount order.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything but `/`, newest first, then remounts `/` read-only.
/// Returns one line per mount point saying what happened, for the console.
pub fn unmount_all() -> Vec<String> {
    let points = mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let mut report = Vec::new();
    for p in points
        .iter()
        .rev()
        .filter(|p| p.as_path() != Path::new("/"))
    {
        // Lazy detach as a fallback: a busy mount must not block poweroff forever.
        let outcome = match umount2(p, MntFlags::empty()) {
            Ok(()) => "unmounted".to_string(),
            Err(nix::Error::EINVAL | nix::Error::ENOENT) => continue, // already gone under a parent
            Err(e) => match umount2(p, MntFlags::MNT_DETACH) {
                Ok(()) => format!("detached (busy: {e})"),
                Err(e2) => format!("left mounted ({e2})"),
            },
        };
        report.push(format!("{outcome} {}", p.display()));
    }
    match mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        Ok(()) => report.push("remounted / read-only".into()),
        // The initramfs root (rootfs) cannot be made read-only; nothing on it persists anyway.
        Err(e) => report.push(format!("kept / writable ({e})")),
    }
    report
}

/// Controllers delegated to the root cgroup's children (containers need them).
const CGROUP_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids"];

/// Lets the root cgroup's children use the controllers containers need.
pub fn delegate_cgroup_controllers() {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = CGROUP_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if let Err(e) = std::fs::write(root.join("cgroup.subtree_control"), wanted.join(" ")) {
        tracing::warn!("cgroup controllers {}: {e}", wanted.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_escapes() {
        let text = "\
22 1 0:21 / / rw,relatime - rootfs rootfs rw
23 22 0:22 / /proc rw,nosuid - proc proc rw
30 23 0:30 / /mnt/with\\040space rw - tmpfs t rw
";
        assert_eq!(
            mount_points(text),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/proc"),
                PathBuf::from("/mnt/with space")
            ]
        );
    }

    #[test]
    fn early_mounts_put_parents_first() {
        for (i, m) in EARLY_MOUNTS.iter().enumerate() {
            for later in &EARLY_MOUNTS[i + 1..] {
                assert!(
                    !Path::new(m.target).starts_with(later.target),
                    "{} must come after {}",
                    m.target,
                    later.target
                );
            }
        }
    }
}
