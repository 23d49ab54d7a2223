//! `sosna flash IMAGE DEVICE`: writes a disk image to a block device (or a file) and
//! verifies it by reading it back, refusing a target that is in use.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const CHUNK: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a regular file")]
    NotAnImage(PathBuf),
    #[error("{0} is the image itself")]
    SameFile(PathBuf),
    #[error("{device} is in use: {why}; refusing to overwrite it")]
    InUse { device: PathBuf, why: String },
    #[error("{device} holds {have} bytes, the image needs {need}")]
    TooSmall {
        device: PathBuf,
        have: u64,
        need: u64,
    },
    #[error("{0}: no such device")]
    NoDevice(PathBuf),
    #[error("{device} is a partition; give the whole disk (e.g. /dev/sdb, not /dev/sdb1)")]
    Partition { device: PathBuf },
    #[error("{device} is neither a block device nor a regular file")]
    BadTarget { device: PathBuf },
    #[error("read-back of {device} differs: wrote sha256 {wrote}, read {read}")]
    Mismatch {
        device: PathBuf,
        wrote: String,
        read: String,
    },
}

/// What a finished flash did.
#[derive(Debug)]
pub struct Report {
    pub bytes: u64,
    pub sha256: String,
    pub write_time: Duration,
    pub verify_time: Duration,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FlashError + 'a {
    move |source| FlashError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `major:minor` of a block device and of its partitions (from sysfs).
fn device_numbers(rdev: u64) -> Vec<(u64, u64)> {
    let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
    let mut out = vec![(major, minor)];
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if let Ok(dir) = std::fs::read_dir(&sys) {
        for e in dir.flatten() {
            let dev = std::fs::read_to_string(e.path().join("dev")).unwrap_or_default();
            if e.path().join("partition").exists() {
                if let Some((a, b)) = dev.trim().split_once(':') {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        out.push((a, b));
                    }
                }
            }
        }
    }
    out
}

/// Why a device with these `major:minor` numbers (the disk and its partitions) is busy,
/// judged from `/proc/self/mountinfo` text and each one's sysfs `holders`.
pub fn busy_reason(
    numbers: &[(u64, u64)],
    mountinfo: &str,
    holders: &dyn Fn(u64, u64) -> Vec<String>,
) -> Option<String> {
    for line in mountinfo.lines() {
        let mut f = line.split(' ');
        let (Some(dev), Some(point)) = (f.nth(2), f.nth(1)) else {
            continue;
        };
        let Some((a, b)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
            continue;
        };
        if numbers.contains(&(a, b)) {
            let what = if point == "/" {
                "it holds the running system's root (/)".to_string()
            } else {
                format!("{a}:{b} is mounted on {point}")
            };
            return Some(what);
        }
    }
    for &(a, b) in numbers {
        let h = holders(a, b);
        if !h.is_empty() {
            return Some(format!("{a}:{b} is held by {}", h.join(", ")));
        }
    }
    None
}

fn sysfs_holders(major: u64, minor: u64) -> Vec<String> {
    std::fs::read_dir(format!("/sys/dev/block/{major}:{minor}/holders"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `image` to `device` and reads it back. `progress` gets (bytes done, total).
pub fn flash(
    image: &Path,
    device: &Path,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Report, FlashError> {
    let img_meta = std::fs::metadata(image).map_err(io("read", image))?;
    if !img_meta.is_file() {
        return Err(FlashError::NotAnImage(image.to_owned()));
    }
    let size = img_meta.len();
    let target = std::fs::metadata(device).ok();
    let is_block = target
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    // A mistyped device name must not become a new file in /dev.
    if target.is_none() && device.starts_with("/dev") {
        return Err(FlashError::NoDevice(device.to_owned()));
    }
    if let Some(m) = &target {
        if m.dev() == img_meta.dev() && m.ino() == img_meta.ino() {
            return Err(FlashError::SameFile(device.to_owned()));
        }
        if !is_block && !m.is_file() {
            return Err(FlashError::BadTarget {
                device: device.to_owned(),
            });
        }
    }
    if let (true, Some(m)) = (is_block, &target) {
        let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
        if Path::new(&format!("/sys/dev/block/{major}:{minor}/partition")).exists() {
            return Err(FlashError::Partition {
                device: device.to_owned(),
            });
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(why) = busy_reason(&device_numbers(m.rdev()), &mountinfo, &sysfs_holders) {
            return Err(FlashError::InUse {
                device: device.to_owned(),
                why,
            });
        }
    }

    let mut src = File::open(image).map_err(io("open", image))?;
    let mut dst = OpenOptions::new()
        .write(true)
        .read(true)
        .create(!is_block)
        .truncate(!is_block)
        // O_EXCL on a block device fails while anything (a mount, dm) has it open.
        .custom_flags(if is_block { libc::O_EXCL } else { 0 })
        .open(device)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EBUSY) => FlashError::InUse {
                device: device.to_owned(),
                why: "the kernel reports it busy".into(),
            },
            _ => FlashError::Io {
                what: "open",
                path: device.to_owned(),
                source,
            },
        })?;
    if is_block {
        let have = dst.seek(SeekFrom::End(0)).map_err(io("size of", device))?;
        if have < size {
            return Err(FlashError::TooSmall {
                device: device.to_owned(),
                have,
                need: size,
            });
        }
        dst.seek(SeekFrom::Start(0)).map_err(io("seek", device))?;
    }

    let started = Instant::now();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io("read", image))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io("write", device))?;
        done += n as u64;
        progress("write", done, size);
    }
    dst.sync_all().map_err(io("sync", device))?;
    let write_time = started.elapsed();
    let wrote = hex(&hash.finalize());

    // Drop the cached pages so the read-back comes from the device, not from memory.
    // SAFETY: plain advisory call on an fd we own.
    unsafe { libc::posix_fadvise(dst.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let started = Instant::now();
    dst.seek(SeekFrom::Start(0)).map_err(io("seek", device))?;
    let mut hash = Sha256::new();
    let mut left = size;
    while left > 0 {
        let want = (left as usize).min(CHUNK);
        dst.read_exact(&mut buf[..want])
            .map_err(io("read back", device))?;
        hash.update(&buf[..want]);
        left -= want as u64;
        progress("verify", size - left, size);
    }
    let read = hex(&hash.finalize());
    if read != wrote {
        return Err(FlashError::Mismatch {
            device: device.to_owned(),
            wrote,
            read,
        });
    }
    Ok(Report {
        bytes: size,
        sha256: wrote,
        write_time,
        verify_time: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(dir: &Path, len: usize) -> PathBuf {
        let p = dir.join("disk.img");
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn flashes_a_file_and_verifies_it() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), 5 << 20 | 123);
        let out = dir.path().join("out.img");
        // A longer stale target is truncated to the image.
        std::fs::write(&out, vec![1u8; 9 << 20]).unwrap();
        let mut calls = 0;
        let r = flash(&img, &out, &mut |_, _, _| calls += 1).unwrap();
        assert_eq!(r.bytes, 5 << 20 | 123);
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&img).unwrap());
        assert_eq!(r.sha256, hex(&Sha256::digest(std::fs::read(&img).unwrap())));
        assert!(calls >= 2);
    }

    #[test]
    fn refuses_bad_inputs_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), 4096);
        let e = flash(&img, &img, &mut |_, _, _| {}).unwrap_err();
        assert!(matches!(e, FlashError::SameFile(_)), "{e}");
        let e = flash(dir.path(), &dir.path().join("x"), &mut |_, _, _| {}).unwrap_err();
        assert!(e.to_string().contains("is not a regular file"), "{e}");
        let e = flash(
            &dir.path().join("nope.img"),
            &dir.path().join("x"),
            &mut |_, _, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("nope.img"), "{e}");
        let e = flash(
            &img,
            Path::new("/dev/sosna-no-such-disk"),
            &mut |_, _, _| {},
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/dev/sosna-no-such-disk: no such device");
        assert!(!Path::new("/dev/sosna-no-such-disk").exists());
        let e = flash(&img, Path::new("/dev/null"), &mut |_, _, _| {}).unwrap_err();
        assert!(
            e.to_string()
                .contains("neither a block device nor a regular file"),
            "{e}"
        );
    }

    #[test]
    fn mounted_or_held_devices_are_busy() {
        let mountinfo = "\
22 1 8:2 / / rw - ext4 /dev/sda2 rw
30 22 8:17 / /mnt/usb rw - vfat /dev/sdb1 rw
";
        let none = |_: u64, _: u64| Vec::new();
        let why = busy_reason(&[(8, 0), (8, 1), (8, 2)], mountinfo, &none).unwrap();
        assert!(why.contains("root"), "{why}");
        let why = busy_reason(&[(8, 16), (8, 17)], mountinfo, &none).unwrap();
        assert!(why.contains("/mnt/usb"), "{why}");
        assert_eq!(busy_reason(&[(8, 32), (8, 33)], mountinfo, &none), None);
        let dm = |a: u64, b: u64| {
            if (a, b) == (8, 33) {
                vec!["dm-0".to_string()]
            } else {
                Vec::new()
            }
        };
        let why = busy_reason(&[(8, 32), (8, 33)], mountinfo, &dm).unwrap();
        assert!(why.contains("dm-0"), "{why}");
    }

    /// A real block device: a loop device over a file, flashed and read back. Needs root
    /// and losetup; skipped (with a note) where the host has neither.
    #[test]
    fn flashes_a_loop_device() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), 3 << 20);
        let backing = dir.path().join("backing");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output();
        let dev = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Ok(o) => panic!(
                "this test needs a loop device (root and losetup, as ./dev test has): {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("this test needs losetup: {e}"),
        };
        let r = flash(&img, Path::new(&dev), &mut |_, _, _| {});
        let _ = std::process::Command::new("losetup")
            .args(["-d", &dev])
            .status();
        let r = r.unwrap();
        assert_eq!(r.bytes, 3 << 20);
        let written = std::fs::read(&backing).unwrap();
        assert_eq!(&written[..3 << 20], &std::fs::read(&img).unwrap()[..]);

        // A partition of a partitioned loop device is refused: the image is a whole disk.
        let mut sfdisk = std::process::Command::new("sfdisk")
            .arg("--quiet")
            .arg(&backing)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (fdisk package, ./dev deps)");
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: gpt\nsize=1MiB, type=L\n")
            .unwrap();
        assert!(sfdisk.wait().unwrap().success());
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(&backing)
            .output()
            .unwrap();
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let part = format!("{dev}p1");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !Path::new(&part).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = flash(&img, Path::new(&part), &mut |_, _, _| {});
        let _ = std::process::Command::new("losetup")
            .args(["-d", &dev])
            .status();
        let err = r.unwrap_err();
        if Path::new(&format!("/sys/class/block/{}p1", &dev[5..])).exists() {
            assert!(matches!(err, FlashError::Partition { .. }), "{err}");
        } else {
            // Some kernels (sandboxes) never scan loop partitions: then the name is unknown.
            assert!(matches!(err, FlashError::NoDevice(_)), "{err}");
        }
    }
}
