//! Finds partitions by their GPT unique partition GUID (PARTUUID). The kernel's uevents
//! name partitions but do not carry their GUIDs, so the table is read from the disk.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("read partition table of {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no partition with PARTUUID {uuid} appeared within {after:?}")]
    NotFound { uuid: String, after: Duration },
}

/// One entry of a GPT partition table.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// 1-based, as the kernel numbers them (`vda2` is 2).
    pub number: u32,
    /// Lower-case `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: String,
    pub label: String,
    pub first_lba: u64,
    pub last_lba: u64,
}

/// Mixed-endian GUID bytes as the usual string form.
fn guid(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// Reads the primary GPT of a disk (or disk image). `Ok(None)` when it has none.
pub fn read_table(path: &Path) -> Result<Option<Vec<Partition>>, GptError> {
    let err = |source| GptError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    read_table_from(&mut f).map_err(err)
}

/// [`read_table`] on any seekable bytes: whatever disk is plugged in is a stranger's input.
pub fn read_table_from<R: Read + Seek>(f: &mut R) -> std::io::Result<Option<Vec<Partition>>> {
    // The header sits in LBA 1; try the two common logical block sizes.
    for sector in [512u64, 4096] {
        let mut hdr = [0u8; 92];
        f.seek(SeekFrom::Start(sector))?;
        if f.read_exact(&mut hdr).is_err() || &hdr[0..8] != b"EFI PART" {
            continue;
        }
        let entries_lba = le64(&hdr, 72);
        let count = le32(&hdr, 80).min(1024) as usize;
        let size = le32(&hdr, 84) as usize;
        if !(128..=4096).contains(&size) {
            return Ok(None);
        }
        // The header is the disk's word: an entry LBA past any disk is no table.
        let Some(offset) = entries_lba.checked_mul(sector) else {
            return Ok(None);
        };
        let mut table = vec![0u8; count * size];
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut table)?;
        let parts = table
            .chunks(size)
            .enumerate()
            .filter(|(_, e)| e[0..16].iter().any(|b| *b != 0))
            .map(|(i, e)| Partition {
                number: i as u32 + 1,
                uuid: guid(&e[16..32]),
                label: String::from_utf16_lossy(
                    &e[56..128]
                        .chunks(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .take_while(|c| *c != 0)
                        .collect::<Vec<_>>(),
                ),
                first_lba: le64(e, 32),
                last_lba: le64(e, 40),
            })
            .collect();
        return Ok(Some(parts));
    }
    Ok(None)
}

/// Whole disks the kernel knows, as `(name, partitions' sysfs names by number)`.
fn disks() -> Vec<(String, Vec<(u32, String)>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/block") else {
        return out;
    };
    let mut parts: Vec<(String, u32, String)> = Vec::new();
    let mut whole = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let sys = e.path();
        match std::fs::read_to_string(sys.join("partition")) {
            Ok(n) => {
                // A partition's sysfs directory sits inside its disk's.
                let parent = std::fs::canonicalize(&sys)
                    .ok()
                    .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|d| d.to_owned()));
                if let (Ok(n), Some(parent)) = (n.trim().parse(), parent) {
                    parts.push((parent.to_string_lossy().into_owned(), n, name));
                }
            }
            Err(_) => whole.push(name),
        }
    }
    whole.sort();
    for disk in whole {
        let mine = parts
            .iter()
            .filter(|(d, _, _)| *d == disk)
            .map(|(_, n, p)| (*n, p.clone()))
            .collect();
        out.push((disk, mine));
    }
    out
}

/// A partition found on a disk.
#[derive(Debug, Clone)]
pub struct Found {
    /// The whole disk's node, e.g. `/dev/vda`.
    pub disk: PathBuf,
    /// The partition's node, e.g. `/dev/vda4`.
    pub node: PathBuf,
    pub partition: Partition,
    /// Whether it is the last partition on the disk (the one that can grow).
    pub last: bool,
}

/// The device node of the partition with GPT unique GUID `uuid` on any disk, waiting up
/// to `timeout` for it to appear (disk drivers may still be probing).
pub fn find_by_uuid(uuid: &str, timeout: Duration) -> Result<PathBuf, GptError> {
    find(uuid, timeout).map(|f| f.node)
}

/// Like [`find_by_uuid`], with the disk and the table entry.
pub fn find(uuid: &str, timeout: Duration) -> Result<Found, GptError> {
    let uuid = uuid.to_ascii_lowercase();
    let deadline = Instant::now() + timeout;
    loop {
        for (disk, parts) in disks() {
            let Ok(Some(table)) = read_table(&Path::new("/dev").join(&disk)) else {
                continue;
            };
            let Some(p) = table.iter().find(|p| p.uuid == uuid) else {
                continue;
            };
            if let Some((_, name)) = parts.iter().find(|(n, _)| *n == p.number) {
                return Ok(Found {
                    disk: Path::new("/dev").join(&disk),
                    node: Path::new("/dev").join(name),
                    last: table.iter().all(|q| q.last_lba <= p.last_lba),
                    partition: p.clone(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(GptError::NotFound {
                uuid,
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_mixed_endian() {
        let b = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid(&b), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    /// A table written by util-linux's sfdisk reads back with its GUIDs and labels.
    #[test]
    fn reads_a_table_sfdisk_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let script = "label: gpt\n\
            size=1MiB, type=U, uuid=11111111-2222-3333-4444-555555555555, name=esp\n\
            size=2MiB, type=L, uuid=AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE, name=root-a\n";
        let mut child = match std::process::Command::new("sfdisk")
            .arg("--quiet")
            .arg(&img)
            .stdin(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("sfdisk (fdisk package, ./dev deps): {e}"),
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let t = read_table(&img).unwrap().expect("a GPT");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].uuid, "11111111-2222-3333-4444-555555555555");
        assert_eq!(t[0].label, "esp");
        assert_eq!(t[1].number, 2);
        assert_eq!(t[1].uuid, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        assert_eq!(t[1].label, "root-a");
        assert_eq!(t[1].last_lba - t[1].first_lba + 1, 4096);
    }

    /// A header whose entry LBA overflows a byte offset (found by reading, for the
    /// fuzzer to confirm) is no table, not a panic.
    #[test]
    fn an_entry_lba_past_any_disk_is_no_table() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut disk = vec![0u8; 8192];
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&4u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        std::fs::write(f.path(), disk).unwrap();
        assert_eq!(read_table(f.path()).unwrap(), None);
    }

    #[test]
    fn a_plain_file_has_no_table() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), vec![0u8; 8192]).unwrap();
        assert_eq!(read_table(f.path()).unwrap(), None);
    }
}
