//! Unpacking layer tarballs (plain, gzip or zstd; detected from the bytes, not trusted from
//! the media type) into directories that overlayfs stacks as lower layers. OCI whiteouts
//! become overlayfs whiteouts: `.wh.NAME` a 0/0 character device, `.wh..wh..opq` the
//! `trusted.overlay.opaque` xattr on its directory.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("layer entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("layer unpacks to more than {MAX_LAYER_BYTES} bytes or {MAX_LAYER_ENTRIES} entries")]
    TooLarge,
    #[error(transparent)]
    Shift(#[from] crate::idmap::ShiftError),
}

/// Most bytes one layer may unpack to: a small compressed blob can claim terabytes.
pub const MAX_LAYER_BYTES: u64 = 16 << 30;
/// Most entries one layer may hold.
pub const MAX_LAYER_ENTRIES: u64 = 1 << 20;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks `blob` into `dest` unless it is there already. Work happens in a sibling
/// temporary directory renamed into place at the end, so `dest` is all or nothing.
pub fn unpack_layer(blob: &Path, dest: &Path) -> Result<u64, UnpackError> {
    if dest.is_dir() {
        return Ok(0);
    }
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = File::open(blob).map_err(io_err(blob)).and_then(|f| {
        let n = unpack_into(
            decompress(BufReader::with_capacity(1 << 17, f), blob)?,
            &tmp,
        )?;
        // As root, owners move into the tasks' id range (elsewhere, unit tests, the
        // unpacking user owns everything anyway).
        if nix::unistd::geteuid().is_root() {
            crate::idmap::shift_tree(&tmp)?;
        }
        Ok(n)
    });
    match result {
        Ok(n) => {
            fs::rename(&tmp, dest).map_err(io_err(dest))?;
            Ok(n)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn decompress<R: io::BufRead + 'static>(
    mut r: R,
    path: &Path,
) -> Result<Box<dyn Read>, UnpackError> {
    let head = r.fill_buf().map_err(io_err(path))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(io_err(path))?)
    } else {
        Box::new(r)
    })
}

/// Returns the uncompressed bytes read.
fn unpack_into(r: Box<dyn Read>, dest: &Path) -> Result<u64, UnpackError> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    // Files keep the owners the image gave them; only root can do that, elsewhere the
    // unpacking user owns everything (unit tests).
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    let mut total = 0u64;
    let mut count = 0u64;
    let entries = archive.entries().map_err(io_err(dest))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err(dest))?;
        count += 1;
        if count > MAX_LAYER_ENTRIES || total.saturating_add(entry.size()) > MAX_LAYER_BYTES {
            return Err(UnpackError::TooLarge);
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason: &str| UnpackError::Entry {
            entry: name.clone(),
            reason: reason.into(),
        };
        let rel = clean_path(Path::new(std::ffi::OsStr::from_bytes(&raw)))
            .ok_or_else(|| bad("path escapes the layer"))?;
        total += entry.size();
        let file = rel.file_name().map(|f| f.as_bytes()).unwrap_or_default();
        if file == OPAQUE.as_bytes() {
            let dir = dest.join(rel.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            xattr::set(&dir, "trusted.overlay.opaque", b"y").map_err(io_err(&dir))?;
        } else if let Some(hidden) = file.strip_prefix(WHITEOUT.as_bytes()) {
            if hidden.is_empty() || hidden.contains(&b'/') {
                return Err(bad("empty whiteout"));
            }
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&parent).map_err(io_err(&parent))?;
            let target = parent.join(std::ffi::OsStr::from_bytes(hidden));
            let _ = fs::remove_dir_all(&target).or_else(|_| fs::remove_file(&target));
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| io_err(&target)(e.into()))?;
        } else if !entry.unpack_in(dest).map_err(io_err(dest))? {
            return Err(bad("path escapes the layer"));
        }
    }
    Ok(total)
}

/// The entry's path relative to the layer root, or `None` if it climbs out of it.
fn clean_path(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_zstd_and_plain_layers_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let tar = layer(&[("etc/motd", b"hi\n"), ("./bin/x", b"x")]);
        let blobs = [
            gzip(&tar),
            zstd::encode_all(&tar[..], 3).unwrap(),
            tar.clone(),
        ];
        for (i, blob) in blobs.iter().enumerate() {
            let src = dir.path().join(format!("blob{i}"));
            fs::write(&src, blob).unwrap();
            let dest = dir.path().join(format!("layer{i}"));
            unpack_layer(&src, &dest).unwrap();
            assert_eq!(fs::read(dest.join("etc/motd")).unwrap(), b"hi\n");
            assert_eq!(fs::read(dest.join("bin/x")).unwrap(), b"x");
        }
    }

    #[test]
    fn escaping_paths_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = layer(&[("ok", b"1"), ("evilxxxxxxx", b"2")]);
        // tar::Builder refuses `..`, so patch the second header's name by hand.
        let at = raw.windows(11).position(|w| w == b"evilxxxxxxx").unwrap();
        raw[at..at + 11].copy_from_slice(b"../../evil\0");
        let h = tar::Header::from_byte_slice(&raw[at..at + 512]).clone();
        let mut h = h;
        h.set_cksum();
        raw[at..at + 512].copy_from_slice(h.as_bytes());
        let src = dir.path().join("blob");
        fs::write(&src, &raw).unwrap();
        let dest = dir.path().join("layer");
        let e = unpack_layer(&src, &dest).unwrap_err().to_string();
        assert!(e.contains("escapes"), "{e}");
        assert!(!dest.exists());
        assert!(!dir.path().parent().unwrap().join("evil").exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp dir left behind"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("blob");
        fs::write(&src, [0x1f, 0x8b, 0, 1, 2, 3, 4, 5]).unwrap();
        assert!(unpack_layer(&src, &dir.path().join("l")).is_err());
        assert!(!dir.path().join("l").exists());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (mknod of whiteouts), as ./dev test runs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let tar = layer(&[("etc/.wh.passwd", b""), ("var/.wh..wh..opq", b"")]);
        let src = dir.path().join("blob");
        fs::write(&src, tar).unwrap();
        let dest = dir.path().join("layer");
        unpack_layer(&src, &dest).unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = fs::symlink_metadata(dest.join("etc/passwd")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert_eq!(
            xattr::get(dest.join("var"), "trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec())
        );
    }
}
