//! A deterministic writer for the `newc` cpio format the kernel unpacks as initramfs.
//!
//! Entries are written in the order given with fixed owner (root), inode numbers counted
//! from 1 and one timestamp for all, so equal inputs give byte-identical archives.
//! Several archives may be concatenated; the kernel unpacks them in order.

use std::io::{self, Write};

const MAGIC: &[u8] = b"070701";
const TRAILER: &str = "TRAILER!!!";

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    mtime: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W, mtime: u32) -> CpioWriter<W> {
        CpioWriter {
            out,
            ino: 0,
            mtime,
            written: 0,
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | perm, 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | perm, 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(TRAILER, 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio path {path:?}"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{path} is over 4 GiB"))
        })?;
        self.ino += 1;
        let ino = if name == TRAILER { 0 } else { self.ino };
        let mtime = if name == TRAILER { 0 } else { self.mtime };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            mtime,
            size,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check (unused by newc)
        ];
        let mut header = Vec::with_capacity(110 + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for f in fields {
            write!(header, "{f:08X}")?;
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.write_padded(&header)?;
        self.write_padded(data)
    }

    /// Header+name and data are each padded to 4 bytes.
    fn write_padded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        let pad = (4 - (self.written as usize + bytes.len()) % 4) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.written += (bytes.len() + pad) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new(), 1_700_000_000);
        w.dir("/dev", 0o755).unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        w.symlink("/sbin", "bin").unwrap();
        w.finish().unwrap()
    }

    /// Minimal reader, to check what the writer claims (not used by the build).
    fn entries(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>, u32, u32)> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&b[..6], MAGIC);
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) = (
                field(1),
                field(6) as usize,
                field(9),
                field(10),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_owned();
            let data_start = (offset + 110 + namesize).next_multiple_of(4) - offset;
            let data = b[data_start..data_start + size].to_vec();
            let next = (offset + data_start + size).next_multiple_of(4) - offset;
            offset += next;
            b = &b[next..];
            if name == TRAILER {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, data, rmaj, rmin));
        }
    }

    #[test]
    fn round_trips_every_entry_kind() {
        let got = entries(&archive());
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, "dev");
        assert_eq!(got[0].1, S_IFDIR | 0o755);
        assert_eq!((got[1].3, got[1].4), (5, 1));
        assert_eq!(got[2].2, b"#!/bin/sh\n");
        assert_eq!(got[3].1 & 0o170000, S_IFLNK);
        assert_eq!(got[3].2, b"bin");
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(archive(), archive());
        assert_eq!(archive().len() % 4, 0);
    }

    #[test]
    fn rejects_empty_and_nul_paths() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        assert!(w.file("/", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
    }
}
