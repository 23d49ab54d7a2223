//! Extracts the uncompressed ELF `vmlinux` from an x86 bzImage, for QEMU's fast PVH boot
//! (`-kernel vmlinux` skips the in-guest decompressor, which is slow under TCG).

use xz2::stream::{Action, Status, Stream};

#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    #[error("not a bzImage: {0}")]
    NotBzImage(&'static str),
    #[error("bzImage payload is {0}, only xz is supported (Debian's amd64 kernels use xz)")]
    Compression(&'static str),
    #[error("decompress payload: {0}")]
    Decompress(std::io::Error),
    #[error("payload is not an ELF image")]
    NotElf,
}

/// Decodes the first xz stream and ignores what follows: the kernel build appends the
/// uncompressed size after the stream, which a whole-file decoder calls corrupt.
fn unxz_one_stream(payload: &[u8]) -> Result<Vec<u8>, VmlinuxError> {
    let err = |e: xz2::stream::Error| VmlinuxError::Decompress(e.into());
    let mut stream = Stream::new_stream_decoder(u64::MAX, 0).map_err(err)?;
    let mut out = Vec::with_capacity(payload.len() * 4);
    loop {
        let consumed = stream.total_in() as usize;
        match stream
            .process_vec(&payload[consumed..], &mut out, Action::Run)
            .map_err(err)?
        {
            Status::StreamEnd => return Ok(out),
            _ if out.len() == out.capacity() => out.reserve(out.len()),
            _ if stream.total_in() as usize == payload.len() => {
                return Err(VmlinuxError::Decompress(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            _ => {}
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Returns the ELF image inside `bzimage` (boot protocol ≥ 2.08 for payload fields).
pub fn extract(bzimage: &[u8]) -> Result<Vec<u8>, VmlinuxError> {
    if bzimage.get(0x202..0x206) != Some(b"HdrS") {
        return Err(VmlinuxError::NotBzImage("no HdrS signature"));
    }
    let setup_sects = match bzimage.get(0x1f1) {
        Some(0) => 4,
        Some(n) => usize::from(*n),
        None => return Err(VmlinuxError::NotBzImage("truncated header")),
    };
    let offset =
        u32_at(bzimage, 0x248).ok_or(VmlinuxError::NotBzImage("truncated header"))? as usize;
    let length =
        u32_at(bzimage, 0x24c).ok_or(VmlinuxError::NotBzImage("truncated header"))? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    let payload = bzimage
        .get(start..start + length)
        .ok_or(VmlinuxError::NotBzImage("payload outside the file"))?;
    let elf = match payload {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => unxz_one_stream(payload)?,
        [0x1f, 0x8b, ..] => return Err(VmlinuxError::Compression("gzip")),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => return Err(VmlinuxError::Compression("zstd")),
        _ => return Err(VmlinuxError::Compression("unknown")),
    };
    if !elf.starts_with(b"\x7fELF") {
        return Err(VmlinuxError::NotElf);
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 1u8;
        let mut b = vec![0u8; (setup_sects as usize + 1) * 512];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(payload);
        // What the kernel build appends after the stream: the uncompressed size.
        b.extend_from_slice(&0x0102_0304u32.to_le_bytes());
        let len = (payload.len() + 4) as u32;
        b[0x24c..0x250].copy_from_slice(&len.to_le_bytes());
        b.extend_from_slice(b"bytes after the payload");
        b
    }

    #[test]
    fn extracts_an_xz_payload() {
        let elf = b"\x7fELF and then the kernel".to_vec();
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&elf).unwrap();
        let got = extract(&fake_bzimage(&enc.finish().unwrap())).unwrap();
        assert_eq!(got, elf);
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(matches!(extract(b"MZ"), Err(VmlinuxError::NotBzImage(_))));
        assert!(matches!(
            extract(&fake_bzimage(&[0x1f, 0x8b, 8, 0])),
            Err(VmlinuxError::Compression("gzip"))
        ));
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(b"not elf").unwrap();
        assert!(matches!(
            extract(&fake_bzimage(&enc.finish().unwrap())),
            Err(VmlinuxError::NotElf)
        ));
    }
}
