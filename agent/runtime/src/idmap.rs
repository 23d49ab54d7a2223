//! Who a task's users are on the host. Every task runs in a user namespace: container uid
//! and gid `n` are host `BASE + n`, for `n` below `RANGE`, so a task's root is an
//! unprivileged host user that owns nothing outside its own files, and a process that
//! escapes its other namespaces still cannot touch the host's.
//!
//! Layers are unpacked with their owners shifted into the range once, when they are
//! stored (one fixed range for every task: no per-start cost, layers stay shared). The
//! alternative, idmapped mounts, needs kernel and libcontainer support this image does not
//! have for overlayfs lower layers (libcontainer 0.7 rejects mount id mappings).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Host uid and gid of a task's root.
pub const BASE: u32 = 100_000;
/// How many ids a task has: 0..RANGE inside.
pub const RANGE: u32 = 65_536;

/// An id inside the range, as the host sees it.
pub fn host_id(id: u32) -> Option<u32> {
    (id < RANGE).then_some(BASE + id)
}

/// An owner that does not fit the range, named for the layer's error.
#[derive(Debug, thiserror::Error)]
pub enum ShiftError {
    #[error("{path}: owner {uid}:{gid} is outside the task id range 0..{RANGE}")]
    OutOfRange { path: String, uid: u32, gid: u32 },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Moves every owner under `dir` (itself included) into the task range. Symlinks are
/// changed themselves, never followed; set-id bits, which a change of owner clears, are
/// put back. File capabilities are dropped: they would name the host's root.
pub fn shift_tree(dir: &Path) -> Result<u64, ShiftError> {
    let mut shifted = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let io = |source| ShiftError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = fs::symlink_metadata(&path).map_err(io)?;
        let (uid, gid) = match (host_id(meta.uid()), host_id(meta.gid())) {
            (Some(u), Some(g)) => (u, g),
            _ => {
                return Err(ShiftError::OutOfRange {
                    path: path.display().to_string(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                })
            }
        };
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io)?;
        let kind = meta.file_type();
        if !kind.is_symlink() && meta.mode() & 0o6000 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io)?;
        }
        shifted += 1;
        if kind.is_dir() {
            for entry in fs::read_dir(&path).map_err(io)? {
                stack.push(entry.map_err(io)?.path());
            }
        }
    }
    Ok(shifted)
}

/// Lets a task's root reach `path` from the host side (libcontainer resolves the bundle's
/// root as that user): every directory above it gets search permission for others, and
/// nothing else.
pub fn make_traversable(path: &Path) -> io::Result<()> {
    for dir in path.ancestors() {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let meta = fs::metadata(dir)?;
        if meta.mode() & 0o001 == 0 {
            fs::set_permissions(
                dir,
                fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o001),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_into_the_range_only() {
        assert_eq!(host_id(0), Some(BASE));
        assert_eq!(host_id(RANGE - 1), Some(BASE + RANGE - 1));
        assert_eq!(host_id(RANGE), None);
    }

    #[test]
    fn trees_shift_when_root_and_keep_set_id_bits() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "changing owners needs root (./dev test runs as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let su = bin.join("su");
        fs::write(&su, b"x").unwrap();
        std::os::unix::fs::symlink("su", bin.join("link")).unwrap();
        std::os::unix::fs::lchown(&su, Some(1000), Some(1000)).unwrap();
        fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();
        assert_eq!(shift_tree(dir.path()).unwrap(), 4);
        let m = fs::metadata(&su).unwrap();
        assert_eq!((m.uid(), m.gid()), (BASE + 1000, BASE + 1000));
        assert_eq!(m.mode() & 0o7777, 0o4755, "the setuid bit survived");
        let l = fs::symlink_metadata(bin.join("link")).unwrap();
        assert_eq!(l.uid(), BASE);
        let other = tempfile::tempdir().unwrap();
        let far = other.path().join("far");
        fs::write(&far, b"x").unwrap();
        std::os::unix::fs::lchown(&far, Some(RANGE), Some(0)).unwrap();
        assert!(matches!(
            shift_tree(other.path()),
            Err(ShiftError::OutOfRange { uid, .. }) if uid == RANGE
        ));
    }
}
