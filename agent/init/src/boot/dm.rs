//! Device-mapper through its ioctls on `/dev/mapper/control`: just enough to create a
//! read-only dm-verity device for the early-boot stage.
//!
//! Raw ioctls rather than the `devicemapper` crate: that crate generates its bindings
//! with bindgen (a libclang build dependency) and pins its own `nix`; the three calls
//! needed here (create, load table, resume) are a few fixed-layout structs.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("open /dev/mapper/control: {0} (is dm_mod loaded?)")]
    Control(std::io::Error),
    #[error("device-mapper {op} for {name}: {source}")]
    Ioctl {
        op: &'static str,
        name: String,
        source: nix::Error,
    },
    #[error("device-mapper: {0}")]
    Invalid(String),
}

// `struct dm_ioctl` from `<linux/dm-ioctl.h>` is 312 bytes: version[3], data_size,
// data_start, target_count, open_count, flags, event_nr, padding (u32 each, offsets 0-39),
// dev (u64 at 40), name[128] at 48, uuid[129], data[7]. `struct dm_target_spec` is 40
// bytes: sector_start, length (u64), status (i32), next (u32 at 20), target_type[16] at
// 24; the target's parameter string follows it.
const HEADER: usize = 312;
const SPEC: usize = 40;

const DM_IOCTL: u8 = 0xfd;
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;
const DM_READONLY_FLAG: u32 = 1 << 0;

/// One target line: `start length type params`, in 512-byte sectors.
pub struct Target {
    pub sectors: u64,
    pub kind: &'static str,
    pub params: String,
}

/// A request buffer: header, then (for a table load) the target specs, 8-byte aligned.
struct Request {
    buf: Vec<u64>,
    len: usize,
}

impl Request {
    fn new(name: &str, flags: u32, targets: &[Target]) -> Result<Request, DmError> {
        if name.is_empty() || name.len() >= 128 || name.contains('/') {
            return Err(DmError::Invalid(format!("bad device name {name:?}")));
        }
        let mut bytes = vec![0u8; HEADER];
        let mut start = 0u64;
        for t in targets {
            if t.kind.len() >= 16 {
                return Err(DmError::Invalid(format!("bad target type {:?}", t.kind)));
            }
            let mut params = t.params.as_bytes().to_vec();
            params.push(0);
            let size = (SPEC + params.len()).next_multiple_of(8);
            let mut spec = vec![0u8; size];
            spec[0..8].copy_from_slice(&start.to_ne_bytes());
            spec[8..16].copy_from_slice(&t.sectors.to_ne_bytes());
            // `next` is the offset from this spec to the following one.
            spec[20..24].copy_from_slice(&(size as u32).to_ne_bytes());
            spec[24..24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
            spec[SPEC..SPEC + params.len()].copy_from_slice(&params);
            bytes.extend_from_slice(&spec);
            start += t.sectors;
        }
        // Room for the kernel's reply (it writes status strings after the header).
        bytes.resize(bytes.len().max(HEADER + 4096), 0);
        let len = bytes.len();
        let put = |bytes: &mut Vec<u8>, at: usize, v: u32| {
            bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        };
        put(&mut bytes, 0, 4); // interface version 4.0.0
        put(&mut bytes, 12, len as u32);
        put(&mut bytes, 16, HEADER as u32);
        put(&mut bytes, 20, targets.len() as u32);
        put(&mut bytes, 28, flags);
        bytes[48..48 + name.len()].copy_from_slice(name.as_bytes());
        // u64 storage keeps the buffer aligned for the kernel's u64 fields.
        let mut buf = vec![0u64; len.div_ceil(8)];
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            buf[i] = u64::from_ne_bytes(w);
        }
        Ok(Request { buf, len })
    }

    fn dev(&self) -> u64 {
        self.buf[5] // byte offset 40
    }

    fn call(&mut self, ctl: &File, cmd: u8, op: &'static str, name: &str) -> Result<(), DmError> {
        let nr = nix::request_code_readwrite!(DM_IOCTL, cmd, HEADER);
        debug_assert!(self.buf.len() * 8 >= self.len);
        // SAFETY: the buffer is at least data_size bytes and starts with a dm_ioctl header.
        let r = unsafe { libc::ioctl(ctl.as_raw_fd(), nr as _, self.buf.as_mut_ptr()) };
        nix::errno::Errno::result(r)
            .map(drop)
            .map_err(|source| DmError::Ioctl {
                op,
                name: name.to_owned(),
                source,
            })
    }
}

/// Creates device `name` with `targets`, read-only, and activates it. Returns its node
/// (`/dev/dm-N`, made by devtmpfs).
pub fn create_readonly(name: &str, targets: &[Target]) -> Result<PathBuf, DmError> {
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .map_err(DmError::Control)?;
    let mut create = Request::new(name, DM_READONLY_FLAG, &[])?;
    create.call(&ctl, DM_DEV_CREATE, "create", name)?;
    let dev = create.dev();
    let loaded = Request::new(name, DM_READONLY_FLAG, targets)
        .and_then(|mut load| load.call(&ctl, DM_TABLE_LOAD, "load table", name))
        // Resume (suspend without the suspend flag) swaps the loaded table in.
        .and_then(|()| Request::new(name, 0, &[]))
        .and_then(|mut resume| resume.call(&ctl, DM_DEV_SUSPEND, "resume", name));
    if let Err(e) = loaded {
        if let Ok(mut remove) = Request::new(name, 0, &[]) {
            let _ = remove.call(&ctl, DM_DEV_REMOVE, "remove", name);
        }
        return Err(e);
    }
    Ok(PathBuf::from(format!("/dev/dm-{}", libc::minor(dev))))
}

/// The dm-verity table for data and hash tree on one device, as `veritysetup format
/// --hash-offset=<data bytes>` lays them out: 4 KiB blocks, sha256, the hash superblock
/// in the first hash block and the tree right after it.
pub fn verity_target(
    device: &str,
    data_blocks: u64,
    root_hash: &str,
    salt: &str,
) -> Result<Target, DmError> {
    let hex =
        |s: &str| !s.is_empty() && s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if root_hash.len() != 64 || !hex(root_hash) {
        return Err(DmError::Invalid(format!(
            "root hash {root_hash:?} is not 64 hex digits"
        )));
    }
    if salt != "-" && !hex(salt) {
        return Err(DmError::Invalid(format!("salt {salt:?} is not hex")));
    }
    if data_blocks == 0 {
        return Err(DmError::Invalid("no data blocks".into()));
    }
    Ok(Target {
        sectors: data_blocks * 8,
        kind: "verity",
        params: format!(
            "1 {device} {device} 4096 4096 {data_blocks} {} sha256 {root_hash} {salt}",
            data_blocks + 1
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_load_lays_out_spec_and_params() {
        let t = Target {
            sectors: 16,
            kind: "verity",
            params: "1 2 3".into(),
        };
        let r = Request::new("root", DM_READONLY_FLAG, &[t]).unwrap();
        let bytes: Vec<u8> = r.buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[0..12], &[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 1);
        assert_eq!(&bytes[48..53], b"root\0");
        let spec = &bytes[HEADER..];
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 16);
        assert_eq!(&spec[24..31], b"verity\0");
        assert_eq!(&spec[40..46], b"1 2 3\0");
        assert_eq!(u32::from_ne_bytes(spec[20..24].try_into().unwrap()), 48);
    }

    #[test]
    fn bad_names_and_hashes_are_refused() {
        assert!(Request::new("a/b", 0, &[]).is_err());
        assert!(Request::new("", 0, &[]).is_err());
        let err = verity_target("254:2", 10, "xyz", "-").err().unwrap();
        assert!(err.to_string().contains("root hash"), "{err}");
        let h = "ab".repeat(32);
        let t = verity_target("254:2", 10, &h, "00ff").unwrap();
        assert_eq!(t.sectors, 80);
        assert_eq!(
            t.params,
            format!("1 254:2 254:2 4096 4096 10 11 sha256 {h} 00ff")
        );
        assert!(verity_target("254:2", 10, &h, "0g").is_err());
    }
}
