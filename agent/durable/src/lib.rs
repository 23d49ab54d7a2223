//! Replacing a file whole, the one way every sosna crate keeps state: the data goes to a
//! temporary file beside the target, which is then renamed over it. A reader (or a crash)
//! sees the old contents or the new, never half of either.
//!
//! [`Durability`] says whether the new contents must also survive a power cut: keys,
//! journals, job files and the hub book must (the file and its directory are synced);
//! files that die with the boot or are rewritten anyway (resolv.conf under /run, a
//! container's outcome) need only atomicity and skip the syncs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a replacement must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers and crashes of this process: the rename is atomic.
    Atomic,
    /// Power loss as well: the file's data and the directory entry are synced.
    Synced,
}

/// Replaces `path` with `data`, created with mode 0644 (before the umask), creating the
/// parent directory if it is missing.
pub fn write_atomic(path: &Path, data: &[u8], durability: Durability) -> io::Result<()> {
    replace(path, data, 0o644, durability)
}

/// Replaces `path` with `data` readable by its owner only (0600 from creation, so never
/// world-readable even briefly), synced: for keys.
pub fn write_secret(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, 0o600, Durability::Synced)
}

fn replace(path: &Path, data: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let tmp = temp_beside(dir, path);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if durability == Durability::Synced {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    if durability == Durability::Synced {
        // The rename itself lives in the directory: sync it too, or a power cut may undo it.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A temporary name in `dir`, unique within this machine's running processes: two
/// writers of one file (threads or processes) never share a temporary.
fn temp_beside(dir: &Path, target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.json");
        write_atomic(&path, b"old", Durability::Synced).unwrap();
        write_atomic(&path, b"new contents", Durability::Atomic).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new contents");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn secrets_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_secret(&path, b"k").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failed_rename_keeps_the_old_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the target's place: the rename fails.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"data", Durability::Synced).is_err());
        assert!(path.join("inside").exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("taken")]);
    }
}
