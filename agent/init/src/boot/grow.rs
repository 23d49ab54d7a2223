//! First boot on a disk larger than the image: move the backup GPT to the disk's end,
//! stretch the last partition (state) over the free space, tell the kernel, and grow the
//! mounted ext4 online. The image carries no resize2fs; the kernel resizes ext4 itself.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no GPT with 512-byte sectors")]
    NoTable(PathBuf),
    #[error("{path}: partition {number} is not the last one on the disk")]
    NotLast { path: PathBuf, number: u32 },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
}

const SECTOR: u64 = 512;
/// Sectors the 128 entries of 128 bytes take.
const ENTRY_SECTORS: u64 = 32;
/// Partitions end on 1 MiB boundaries.
const ALIGN: u64 = 2048;

/// IEEE CRC-32 as GPT uses it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

/// Grows partition `number` of `disk` (a whole disk or an image file) to the end of the
/// disk. Returns the partition's new `(start, length)` in bytes, or `None` when there was
/// nothing to grow.
pub fn grow_last_partition(disk: &Path, number: u32) -> Result<Option<(u64, u64)>, GrowError> {
    let io = |what| {
        move |source| GrowError::Io {
            what,
            path: disk.to_owned(),
            source,
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io("open"))?;
    let sectors = f.seek(SeekFrom::End(0)).map_err(io("size of"))? / SECTOR;
    let mut hdr = vec![0u8; SECTOR as usize];
    f.seek(SeekFrom::Start(SECTOR)).map_err(io("seek"))?;
    f.read_exact(&mut hdr).map_err(io("read GPT header"))?;
    let hsize = le32(&hdr, 12) as usize;
    if &hdr[0..8] != b"EFI PART" || !(92..=512).contains(&hsize) {
        return Err(GrowError::NoTable(disk.to_owned()));
    }
    let (count, esize) = (le32(&hdr, 80) as usize, le32(&hdr, 84) as usize);
    if count * esize != (ENTRY_SECTORS * SECTOR) as usize {
        return Err(GrowError::NoTable(disk.to_owned()));
    }
    let mut entries = vec![0u8; count * esize];
    f.seek(SeekFrom::Start(le64(&hdr, 72) * SECTOR))
        .map_err(io("seek"))?;
    f.read_exact(&mut entries).map_err(io("read GPT entries"))?;

    let last = sectors - 1;
    let last_usable = last - ENTRY_SECTORS - 1;
    let idx = number as usize - 1;
    let end_of = |i: usize| le64(&entries, i * esize + 40);
    let used = |i: usize| entries[i * esize..i * esize + 16].iter().any(|b| *b != 0);
    if idx >= count || !used(idx) {
        return Err(GrowError::NoTable(disk.to_owned()));
    }
    if (0..count).any(|i| used(i) && i != idx && end_of(i) > end_of(idx)) {
        return Err(GrowError::NotLast {
            path: disk.to_owned(),
            number,
        });
    }
    let start = le64(&entries, idx * esize + 32);
    let new_end = (last_usable + 1) / ALIGN * ALIGN - 1;
    if new_end <= end_of(idx) {
        return Ok(None);
    }
    entries[idx * esize + 40..idx * esize + 48].copy_from_slice(&new_end.to_le_bytes());
    let entries_crc = crc32(&entries);

    let header = |my: u64, alternate: u64, entries_lba: u64| {
        let mut h = hdr[..hsize].to_vec();
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut write = |at: u64, data: &[u8]| -> Result<(), GrowError> {
        f.seek(SeekFrom::Start(at * SECTOR)).map_err(io("seek"))?;
        f.write_all(data).map_err(io("write GPT"))
    };
    // Backup first: until the primary is rewritten, the old table stays valid.
    write(last - ENTRY_SECTORS, &entries)?;
    write(last, &header(last, 1, last - ENTRY_SECTORS))?;
    write(le64(&hdr, 72), &entries)?;
    write(1, &header(1, last, le64(&hdr, 72)))?;
    // The protective MBR's one partition covers the whole disk (capped at 32 bits).
    let mbr_len = u32::try_from(last).unwrap_or(u32::MAX);
    f.seek(SeekFrom::Start(446 + 12)).map_err(io("seek"))?;
    f.write_all(&mbr_len.to_le_bytes())
        .map_err(io("write MBR"))?;
    f.sync_all().map_err(io("sync"))?;
    Ok(Some((start * SECTOR, (new_end - start + 1) * SECTOR)))
}

/// Tells the kernel partition `number` of the open disk now spans `(start, len)` bytes
/// (BLKPG_RESIZE_PARTITION: works while the disk is in use, unlike a table re-read).
pub fn resize_in_kernel(disk: &Path, number: u32, start: u64, len: u64) -> Result<(), GrowError> {
    #[repr(C)]
    struct BlkpgPartition {
        start: i64,
        length: i64,
        pno: i32,
        devname: [u8; 64],
        volname: [u8; 64],
    }
    #[repr(C)]
    struct BlkpgIoctlArg {
        op: i32,
        flags: i32,
        datalen: i32,
        data: *mut BlkpgPartition,
    }
    const BLKPG: libc::c_ulong = 0x1269;
    const BLKPG_RESIZE_PARTITION: i32 = 3;
    let f = File::open(disk).map_err(|source| GrowError::Io {
        what: "open",
        path: disk.to_owned(),
        source,
    })?;
    let mut part = BlkpgPartition {
        start: start as i64,
        length: len as i64,
        pno: number as i32,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut part,
    };
    // SAFETY: arg points at a live, correctly laid out blkpg request for this call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKPG as _, &mut arg) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(|source| GrowError::Sys {
            what: "BLKPG resize partition",
            source,
        })
}

/// Grows the ext4 filesystem mounted at `mount_point` to `bytes` (online, by the kernel).
/// Returns the new size in blocks, or `None` if it already had them.
pub fn grow_ext4(device: &Path, mount_point: &Path, bytes: u64) -> Result<Option<u64>, GrowError> {
    let io = |what| {
        move |source| GrowError::Io {
            what,
            path: device.to_owned(),
            source,
        }
    };
    let mut sb = vec![0u8; 1024];
    let mut dev = File::open(device).map_err(io("open"))?;
    dev.seek(SeekFrom::Start(1024)).map_err(io("seek"))?;
    dev.read_exact(&mut sb)
        .map_err(io("read ext4 superblock"))?;
    let block = 1024u64 << le32(&sb, 24);
    let mut blocks = u64::from(le32(&sb, 4));
    if le32(&sb, 0x60) & 0x80 != 0 {
        blocks |= u64::from(le32(&sb, 0x150)) << 32; // 64bit feature
    }
    let want = bytes / block;
    if want <= blocks {
        return Ok(None);
    }
    let dir = File::open(mount_point).map_err(|source| GrowError::Io {
        what: "open",
        path: mount_point.to_owned(),
        source,
    })?;
    // EXT4_IOC_RESIZE_FS = _IOW('f', 16, __u64)
    let nr = nix::request_code_write!(b'f', 16, std::mem::size_of::<u64>());
    // SAFETY: the ioctl reads one u64 from the pointer, which lives across the call.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), nr as _, &want) };
    nix::errno::Errno::result(r).map_err(|source| GrowError::Sys {
        what: "EXT4_IOC_RESIZE_FS",
        source,
    })?;
    Ok(Some(want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::gpt;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    fn sfdisk(img: &Path, script: &str) -> std::process::Output {
        let mut child = std::process::Command::new("sfdisk")
            .arg(img)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (fdisk package, ./dev deps)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// sfdisk writes a table, the file grows, we move the table; sfdisk then verifies the
    /// result (both headers' CRCs, backup at the end) and sees the bigger partition.
    #[test]
    fn grows_the_last_partition_of_a_bigger_disk() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let out = sfdisk(
            &img,
            "label: gpt\nsize=2MiB, type=L, name=a\nsize=3MiB, type=L, name=state\n",
        );
        assert!(out.status.success(), "{out:?}");
        let before = gpt::read_table(&img).unwrap().unwrap();
        File::options()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(40 << 20)
            .unwrap();
        let err = grow_last_partition(&img, 1).unwrap_err();
        assert!(err.to_string().contains("not the last"), "{err}");
        let (start, len) = grow_last_partition(&img, 2).unwrap().expect("grown");
        assert_eq!(start, before[1].first_lba * 512);
        // Up to the last 1 MiB boundary before the backup table.
        assert_eq!(start + len, 39 << 20);
        let after = gpt::read_table(&img).unwrap().unwrap();
        assert_eq!(after[0], before[0]);
        assert_eq!(after[1].uuid, before[1].uuid);
        assert_eq!(after[1].last_lba + 1, (39 << 20) / 512);
        let verify = std::process::Command::new("sfdisk")
            .arg("--verify")
            .arg(&img)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&verify.stdout).into_owned()
            + &String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success(), "{text}");
        assert!(!text.to_lowercase().contains("corrupt"), "{text}");
        assert!(
            !text.contains("ackup"),
            "backup header where expected: {text}"
        );
        // A second run finds nothing to do.
        assert_eq!(grow_last_partition(&img, 2).unwrap(), None);
    }
}
