//! Booting the flashable disk image (`target/image/x86_64/disk.img`) the way a PC does:
//! OVMF firmware, systemd-boot, a slot's unified kernel image, the early-boot stage, as a
//! [`Vm`] ([`Vm::boot_disk`]). The guest may reboot (slot fallback is a reboot), so the
//! console of every boot accumulates in one log.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{accel, HarnessError, Image, Vm};

/// Debian's `ovmf`: firmware code (read-only) and the template for per-VM variables.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The built disk image and what `image/disk.sh` recorded about it in `manifest.txt`.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    /// Needed for [`accel`]; the disk is booted through firmware, not from these files.
    pub image: Image,
    manifest: HashMap<String, String>,
}

impl Disk {
    /// The disk next to [`Image::built`]'s files.
    pub fn built() -> Result<Disk, HarnessError> {
        let image = Image::built()?;
        let dir = image.kernel.parent().unwrap_or(Path::new(".")).to_owned();
        let path = dir.join("disk.img");
        if !path.exists() {
            return Err(HarnessError::NoImage(path));
        }
        let text =
            std::fs::read_to_string(dir.join("manifest.txt")).map_err(io("read manifest.txt"))?;
        let manifest = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Disk {
            path,
            image,
            manifest,
        })
    }

    /// A `manifest.txt` value as a number (e.g. `disk_root_offset_a`).
    pub fn number(&self, key: &str) -> Result<u64, HarnessError> {
        self.manifest
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| HarnessError::NoImage(PathBuf::from(format!("manifest.txt: {key}"))))
    }
}

/// A private, writable copy of the disk and of the firmware variables for one VM.
pub struct DiskCopy {
    dir: tempfile::TempDir,
    pub disk: PathBuf,
}

impl DiskCopy {
    pub fn new(disk: &Disk) -> Result<DiskCopy, HarnessError> {
        let dir = tempfile::tempdir().map_err(io("tempdir"))?;
        let copy = dir.path().join("disk.img");
        std::fs::copy(&disk.path, &copy).map_err(io(format!("copy {}", disk.path.display())))?;
        std::fs::copy(OVMF_VARS, dir.path().join("vars.fd"))
            .map_err(io(format!("copy {OVMF_VARS} (./dev deps installs ovmf)")))?;
        Ok(DiskCopy { dir, disk: copy })
    }

    /// Makes the disk `extra` bytes bigger, like flashing the image onto a larger device.
    pub fn enlarge(&self, extra: u64) -> Result<(), HarnessError> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.disk)
            .map_err(io("open disk copy"))?;
        let len = f.metadata().map_err(io("stat disk copy"))?.len();
        f.set_len(len + extra).map_err(io("enlarge disk copy"))
    }

    /// Overwrites `len` bytes at `offset` of the disk with a pattern (simulated bit rot).
    pub fn corrupt(&self, offset: u64, len: usize) -> Result<(), HarnessError> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.disk)
            .map_err(io("open disk copy"))?;
        let mut old = vec![0u8; len];
        f.seek(SeekFrom::Start(offset)).map_err(io("seek"))?;
        f.read_exact(&mut old).map_err(io("read"))?;
        let new: Vec<u8> = old.iter().map(|b| !b).collect();
        f.seek(SeekFrom::Start(offset)).map_err(io("seek"))?;
        f.write_all(&new).map_err(io("write"))?;
        f.sync_all().map_err(io("sync"))
    }

    /// File names in the ESP's `EFI/Linux`, sorted (read with mtools from the disk copy).
    pub fn boot_entries(&self, esp_offset: u64) -> Result<Vec<String>, HarnessError> {
        let out = Command::new("mdir")
            .args(["-b", "-i"])
            .arg(format!("{}@@{esp_offset}", self.disk.display()))
            .arg("::EFI/Linux")
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .map_err(io("run mdir (mtools)"))?;
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        names.sort();
        Ok(names)
    }
}

impl DiskCopy {
    /// A file on the ESP (read with mtools from the disk copy), e.g. `sosna/config.toml`.
    pub fn esp_read(&self, esp_offset: u64, path: &str) -> Result<String, HarnessError> {
        let out = Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{esp_offset}", self.disk.display()))
            .arg(format!("::{path}"))
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .map_err(io("run mtype (mtools)"))?;
        if !out.status.success() {
            return Err(HarnessError::Io {
                what: format!("mtype ::{path}"),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Replaces a file on the ESP, as a user editing the provisioning file would.
    pub fn esp_write(&self, esp_offset: u64, path: &str, text: &str) -> Result<(), HarnessError> {
        let local = self.dir.path().join("esp-file");
        std::fs::write(&local, text).map_err(io("write esp-file"))?;
        let status = Command::new("mcopy")
            .args(["-o", "-i"])
            .arg(format!("{}@@{esp_offset}", self.disk.display()))
            .arg(&local)
            .arg(format!("::{path}"))
            .env("MTOOLS_SKIP_CHECK", "1")
            .status()
            .map_err(io("run mcopy (mtools)"))?;
        if !status.success() {
            return Err(HarnessError::Io {
                what: format!("mcopy ::{path}"),
                source: std::io::Error::other(format!("mcopy {status}")),
            });
        }
        Ok(())
    }
}

impl Vm {
    /// A PC (OVMF, virtio disk, user network, watchdog) booting a [`DiskCopy`]. Reboots stay
    /// in the same qemu process, so the console of every boot accumulates.
    pub fn boot_disk(disk: &Disk, copy: &DiskCopy) -> Result<Vm, HarnessError> {
        let vars = copy.dir.path().join("vars.fd");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", accel(&disk.image), "-M", "pc", "-m", "512"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio"])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()))
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=d,format=raw",
                copy.disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=d"])
            .args(["-device", "virtio-rng-pci"])
            // The early stage arms it; a hung boot is reset, as on a rig with a watchdog.
            .args(["-device", "i6300esb", "-action", "watchdog=reset"])
            // No option ROM: the firmware must not try a network boot.
            .args(["-netdev", "user,id=n0"])
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="]);
        Vm::spawn(cmd, "qemu-system-x86_64", None)
    }
}
