//! The disk image's early-boot stage: the same agent, run as PID 1 from the slot's
//! unified kernel image's initramfs. It opens the slot's root through dm-verity, checks
//! every block of it, mounts it with the state partition and the ESP, switches root and
//! execs the agent from the verified root as PID 1.
//!
//! The whole root (a few tens of MiB) is read once here rather than relying on dm-verity's
//! `restart_on_corruption`: a bad block anywhere is then caught before the agent starts,
//! with a clear console line, instead of whenever (or never) that block is first read.
//! A slot that fails is marked bad on the ESP (see [`crate::boot::bootslot`]) and the machine
//! reboots, so systemd-boot starts the other slot. Nothing here may panic or hang.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount, MsFlags};

use crate::boot::bootslot;
use crate::boot::dm::{self, DmError};
use crate::boot::gpt::{self, GptError};
use crate::boot::grow;
use crate::cmdline::{BootArgs, DiskArgs};
use crate::kmod;
use crate::watchdog::Watchdog;

/// The list of modules this stage loads (written by the image build).
pub const EARLY_LIST: &str = "/etc/sosna/modules.early";
const NEW_ROOT: &str = "/newroot";
/// How long to wait for the disk's partitions to show up.
const DEVICE_WAIT: Duration = Duration::from_secs(10);
/// Where the ESP is mounted in the final root; the UKI's `sosna.config` points into it.
const ESP_MOUNT: &str = "boot";
const STATE_MOUNT: &str = "var/lib/sosna";

#[derive(Debug, thiserror::Error)]
pub enum EarlyError {
    #[error("boot argument sosna.{0} is missing")]
    MissingArg(&'static str),
    #[error("partition: {0}")]
    Partition(#[from] GptError),
    #[error("verity: {0}")]
    Dm(#[from] DmError),
    #[error("root failed verification at byte {offset} of {device}: {source}")]
    Corrupt {
        device: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> EarlyError {
    let what = what.into();
    move |source| EarlyError::Sys { what, source }
}

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("sosna: early: {}", format_args!($($arg)*)) };
}

/// Whether this PID 1 is the early stage: booted from a disk image (the kernel command
/// line names a root) and still running on the initramfs.
pub fn wanted(boot: &BootArgs) -> bool {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // The kernel's initramfs is ramfs (or tmpfs); nix has no constant for ramfs.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    boot.disk.present()
        && statfs("/").is_ok_and(|s| {
            let t = s.filesystem_type();
            t == RAMFS_MAGIC || t == TMPFS_MAGIC
        })
}

/// Sets up the root and execs the agent from it; on any failure refuses the slot and
/// reboots. Never returns.
pub fn run(boot: &BootArgs) -> ! {
    let started = Instant::now();
    let disk = &boot.disk;
    let slot = disk.slot.unwrap_or('?');
    load_modules();
    // Armed before anything that could hang; the agent takes it over.
    let watchdog = disk.watchdog.and_then(|secs| match Watchdog::arm(secs) {
        Ok(wd) => wd,
        Err(e) => {
            say!("ERROR: watchdog: {e}");
            None
        }
    });
    match setup(disk) {
        Ok(()) => {
            say!(
                "slot {slot} root verified and mounted in {} ms; starting the agent",
                started.elapsed().as_millis()
            );
            let err = exec_agent(watchdog);
            refuse(
                slot,
                disk,
                &format!("exec /sbin/sosna: {err}"),
                boot.fatal_delay,
            )
        }
        Err(e) => refuse(slot, disk, &e.to_string(), boot.fatal_delay),
    }
}

fn setup(disk: &DiskArgs) -> Result<(), EarlyError> {
    let (root_uuid, roothash, salt, blocks) = verity_args(disk)?;

    let part = gpt::find_by_uuid(root_uuid, DEVICE_WAIT)?;
    let rdev = std::fs::metadata(&part)
        .map_err(|source| EarlyError::Io {
            what: format!("stat {}", part.display()),
            source,
        })?
        .rdev();
    let devno = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let target = dm::verity_target(&devno, blocks, roothash, salt)?;
    let name = format!("sosna-root-{}", disk.slot.unwrap_or('x'));
    let verity = dm::create_readonly(&name, &[target])?;
    say!(
        "root {} opened as {} through dm-verity",
        part.display(),
        verity.display()
    );
    verify_all(&verity, blocks * 4096)?;

    let new = Path::new(NEW_ROOT);
    mkdir(new)?;
    mount(
        Some(&verity),
        new,
        Some("erofs"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(sys(format!(
        "mount {} (erofs) on {NEW_ROOT}",
        verity.display()
    )))?;

    mount_state(disk, &new.join(STATE_MOUNT));
    if let Some(esp) = &disk.esp {
        match gpt::find_by_uuid(esp, Duration::ZERO) {
            Ok(dev) => {
                if let Err(e) = mount(
                    Some(&dev),
                    &new.join(ESP_MOUNT),
                    Some("vfat"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("umask=0077"),
                ) {
                    say!("ERROR: mount ESP {} on /{ESP_MOUNT}: {e}", dev.display());
                }
            }
            Err(e) => say!("ERROR: ESP: {e}"),
        }
    }
    switch_root(new)
}

/// Loads the early modules; logging is not set up yet, so failures go to the console.
fn load_modules() {
    match kmod::load_listed(EARLY_LIST) {
        Ok(report) => {
            for e in report.failed {
                say!("ERROR: {e}");
            }
        }
        Err(e) => say!("ERROR: modules: {e}"),
    }
}

/// The root partition, root hash, salt and data block count, or which one is missing.
fn verity_args(disk: &DiskArgs) -> Result<(&str, &str, &str, u64), EarlyError> {
    Ok((
        disk.root.as_deref().ok_or(EarlyError::MissingArg("root"))?,
        disk.roothash
            .as_deref()
            .ok_or(EarlyError::MissingArg("roothash"))?,
        disk.salt.as_deref().unwrap_or("-"),
        disk.data_blocks
            .ok_or(EarlyError::MissingArg("data_blocks"))?,
    ))
}

/// Reads every data block through dm-verity: a corrupted one fails with EIO.
fn verify_all(dev: &Path, bytes: u64) -> Result<(), EarlyError> {
    let mut f = std::fs::File::open(dev).map_err(|source| EarlyError::Io {
        what: format!("open {}", dev.display()),
        source,
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < bytes {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => offset += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(EarlyError::Corrupt {
                    device: dev.to_owned(),
                    offset,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Mounts the state partition, first growing it over the rest of the disk when it is the
/// last partition and the disk is bigger than the image (first boot after flashing).
/// Without one the agent gets a tmpfs there (and says so): a broken state partition is no
/// reason to refuse the slot.
fn mount_state(disk: &DiskArgs, at: &Path) {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME;
    let result = match disk.state.as_deref() {
        None => Err("no sosna.state on the command line".to_string()),
        Some(uuid) => gpt::find(uuid, Duration::ZERO)
            .map_err(|e| e.to_string())
            .and_then(|found| {
                let bytes = grow_partition(&found);
                mount(Some(&found.node), at, Some("ext4"), flags, None::<&str>)
                    .map_err(|e| format!("mount {} (ext4): {e}", found.node.display()))?;
                // Also finishes a grow an earlier boot did not get to.
                match grow::grow_ext4(&found.node, at, bytes) {
                    Ok(Some(blocks)) => say!("state filesystem grown to {blocks} blocks"),
                    Ok(None) => {}
                    Err(e) => say!("ERROR: grow state filesystem: {e}"),
                }
                Ok(())
            }),
    };
    if let Err(e) = result {
        say!("ERROR: state partition: {e}; state is in memory this boot");
        let _ = mount(Some("state"), at, Some("tmpfs"), flags, Some("mode=0755"));
    }
}

/// Stretches the (last) state partition to the disk's end; returns its size in bytes.
fn grow_partition(found: &gpt::Found) -> u64 {
    let p = &found.partition;
    let size = (p.last_lba - p.first_lba + 1) * 512;
    if !found.last {
        return size;
    }
    match grow::grow_last_partition(&found.disk, p.number) {
        Ok(None) => size,
        Ok(Some((start, len))) => match grow::resize_in_kernel(&found.disk, p.number, start, len) {
            Ok(()) => {
                say!(
                    "state partition {} grown to {} MiB",
                    found.node.display(),
                    len >> 20
                );
                len
            }
            Err(e) => {
                say!("ERROR: state partition grown on disk, not yet in the kernel: {e}");
                size
            }
        },
        Err(e) => {
            say!("ERROR: grow state partition: {e}");
            size
        }
    }
}

fn mkdir(p: &Path) -> Result<(), EarlyError> {
    std::fs::create_dir_all(p).map_err(|source| EarlyError::Io {
        what: format!("create {}", p.display()),
        source,
    })
}

/// Moves the API filesystems into the new root, frees the initramfs and makes the new
/// root `/` (what busybox's switch_root does).
fn switch_root(new: &Path) -> Result<(), EarlyError> {
    for m in ["/dev", "/proc", "/sys", "/run", "/tmp"] {
        let to = new.join(&m[1..]);
        mount(Some(m), &to, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(sys(format!("move {m} to {}", to.display())))?;
    }
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).unwrap_or(0);
    free_tree(Path::new("/"), root_dev);
    nix::unistd::chdir(new).map_err(sys("chdir to the new root"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys("move the new root to /"))?;
    nix::unistd::chroot(".").map_err(sys("chroot"))?;
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    Ok(())
}

/// Deletes the initramfs's files (they would hold RAM forever), staying on its device.
fn free_tree(dir: &Path, dev: u64) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    for e in list.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue; // a mount point: the new root
        }
        if meta.is_dir() {
            free_tree(&path, dev);
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Execs the verified root's agent with this process's environment, plus the watchdog's
/// hand-over when one is armed.
fn exec_agent(watchdog: Option<Watchdog>) -> nix::Error {
    use std::os::unix::ffi::OsStrExt;
    let path = c"/sbin/sosna";
    let mut env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect();
    if let Some(wd) = watchdog {
        match wd.hand_over() {
            Ok(kv) => env.extend(std::ffi::CString::new(kv).ok()),
            Err(e) => say!("ERROR: watchdog hand-over: {e}"),
        }
    }
    match nix::unistd::execve(path, &[path], &env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Marks the slot bad on the ESP, says why, and reboots into the other slot.
fn refuse(slot: char, disk: &DiskArgs, reason: &str, delay: Duration) -> ! {
    say!("SLOT {slot} REFUSED: {reason}");
    match mark_bad(slot, disk) {
        Ok(name) => say!("slot {slot} marked bad on the ESP ({name})"),
        Err(e) => say!("could not mark slot {slot} bad: {e}"),
    }
    say!("rebooting in {} s", delay.as_secs());
    std::thread::sleep(delay);
    nix::unistd::sync();
    let err = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT).unwrap_err();
    say!("reboot failed: {err}; halting");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Why a slot could not be marked bad on the ESP.
#[derive(Debug, thiserror::Error)]
enum MarkBadError {
    #[error("no sosna.esp on the command line")]
    NoEsp,
    #[error(transparent)]
    Gpt(#[from] GptError),
    #[error("create {0}: {1}")]
    Dir(&'static str, std::io::Error),
    #[error("mount ESP {0}: {1}")]
    Mount(PathBuf, nix::Error),
    #[error(transparent)]
    BootSlot(#[from] bootslot::BootSlotError),
}

fn mark_bad(slot: char, disk: &DiskArgs) -> Result<String, MarkBadError> {
    let uuid = disk.esp.as_deref().ok_or(MarkBadError::NoEsp)?;
    let dev = gpt::find_by_uuid(uuid, Duration::ZERO)?;
    // Under /run: a tmpfs both before and after the switch to the read-only root.
    const AT: &str = "/run/sosna-esp";
    let at = Path::new(AT);
    std::fs::create_dir_all(at).map_err(|e| MarkBadError::Dir(AT, e))?;
    mount(
        Some(&dev),
        at,
        Some("vfat"),
        MsFlags::MS_NOSUID,
        None::<&str>,
    )
    .map_err(|e| MarkBadError::Mount(dev.clone(), e))?;
    let marked = bootslot::mark_bad(at, slot).map_err(MarkBadError::from);
    nix::unistd::sync();
    if let Err(e) = umount(at) {
        say!("unmount ESP: {e}");
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_boots_are_not_early() {
        let (boot, _) = BootArgs::parse("console=ttyS0 quiet");
        assert!(!wanted(&boot));
    }

    #[test]
    fn verify_all_reads_to_the_end() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), vec![7u8; 3 << 20]).unwrap();
        verify_all(f.path(), 3 << 20).unwrap();
    }

    #[test]
    fn a_missing_verity_argument_is_named() {
        let (boot, _) = BootArgs::parse("sosna.root=PARTUUID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        let err = verity_args(&boot.disk).unwrap_err();
        assert_eq!(err.to_string(), "boot argument sosna.roothash is missing");
        let (boot, _) = BootArgs::parse(
            "sosna.root=PARTUUID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee sosna.roothash=ab \
             sosna.data_blocks=3",
        );
        assert_eq!(verity_args(&boot.disk).unwrap().2, "-", "no salt given");
    }
}
