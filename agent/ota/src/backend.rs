//! RAUC's `custom` boot backend and its `post-install` handler, both run by RAUC as
//! this binary (through symlinks, see `image/ota.sh`). RAUC 1.8 calls the backend as
//! `get-primary`, `set-primary BOOTNAME`, `get-state BOOTNAME` and
//! `set-state BOOTNAME good|bad`; answers go to stdout. Bootnames are the slot letters.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use sosna_init::boot::bootslot::{self, BootSlotError, Entry, ENTRY_DIR};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("usage: get-primary | set-primary SLOT | get-state SLOT | set-state SLOT good|bad | get-current (got {0:?})")]
    Usage(Vec<String>),
    #[error("bad slot bootname {0:?}: expected one lowercase letter")]
    Bootname(String),
    #[error("bad slot state {0:?}: expected good or bad")]
    State(String),
    #[error(transparent)]
    Slot(#[from] BootSlotError),
    #[error("no boot entry in {0}/EFI/Linux")]
    NoPrimary(PathBuf),
    #[error("the kernel command line names no sosna.slot")]
    NoCurrent,
    #[error("remount {esp} {mode}: {source}")]
    Remount {
        esp: PathBuf,
        mode: &'static str,
        source: nix::Error,
    },
    #[error("post-install: environment variable {0} is missing (not run by RAUC?)")]
    MissingEnv(String),
    #[error("post-install: no rootfs slot among RAUC_TARGET_SLOTS {0:?}")]
    NoTarget(String),
    #[error("post-install: {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// One backend call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    GetPrimary,
    SetPrimary(char),
    GetState(char),
    SetState(char, bool),
    GetCurrent,
}

fn bootname(s: &str) -> Result<char, BackendError> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_lowercase() => Ok(c),
        _ => Err(BackendError::Bootname(s.to_owned())),
    }
}

impl Op {
    pub fn parse(args: &[String]) -> Result<Op, BackendError> {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(match a.as_slice() {
            ["get-primary"] => Op::GetPrimary,
            ["get-current"] => Op::GetCurrent,
            ["set-primary", slot] => Op::SetPrimary(bootname(slot)?),
            ["get-state", slot] => Op::GetState(bootname(slot)?),
            ["set-state", slot, state] => Op::SetState(
                bootname(slot)?,
                match *state {
                    "good" => true,
                    "bad" => false,
                    other => return Err(BackendError::State(other.to_owned())),
                },
            ),
            _ => return Err(BackendError::Usage(args.to_vec())),
        })
    }

    fn writes(&self) -> bool {
        matches!(self, Op::SetPrimary(_) | Op::SetState(..))
    }
}

/// Runs one call against the ESP mounted at `esp`; returns what to print.
pub fn run(esp: &Path, op: &Op) -> Result<Option<String>, BackendError> {
    let _rw = if op.writes() {
        Some(Writable::new(esp)?)
    } else {
        None
    };
    let out = match *op {
        Op::GetPrimary => {
            let all = bootslot::entries(esp)?;
            let p = bootslot::primary(&all).ok_or_else(|| BackendError::NoPrimary(esp.into()))?;
            Some(p.slot.to_string())
        }
        Op::GetState(slot) => {
            let all = bootslot::entries(esp)?;
            let (_, e) = all
                .iter()
                .find(|(_, e)| e.slot == slot)
                .ok_or(BootSlotError::NoEntry(slot))?;
            Some(if e.is_bad() { "bad" } else { "good" }.to_owned())
        }
        Op::GetCurrent => Some(
            super::booted_slot()
                .ok_or(BackendError::NoCurrent)?
                .to_string(),
        ),
        Op::SetPrimary(slot) => {
            let name = bootslot::set_primary(esp, slot)?;
            tracing::info!("rauc backend: slot {slot} is primary ({name})");
            None
        }
        Op::SetState(slot, good) => {
            let name = bootslot::set_state(esp, slot, good)?;
            tracing::info!("rauc backend: slot {slot} marked {} ({name})", state(good));
            None
        }
    };
    Ok(out)
}

fn state(good: bool) -> &'static str {
    if good {
        "good"
    } else {
        "bad"
    }
}

/// The ESP made writable for one change: the early stage mounts it read-only, so a
/// read-only mount is remounted read-write and back (with a sync) when this drops.
pub struct Writable {
    esp: PathBuf,
    was_ro: bool,
}

const ESP_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

impl Writable {
    pub fn new(esp: &Path) -> Result<Writable, BackendError> {
        let was_ro = nix::sys::statvfs::statvfs(esp)
            .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
            .unwrap_or(false);
        if was_ro {
            mount(
                None::<&str>,
                esp,
                None::<&str>,
                MsFlags::MS_REMOUNT | ESP_FLAGS,
                None::<&str>,
            )
            .map_err(|source| BackendError::Remount {
                esp: esp.into(),
                mode: "read-write",
                source,
            })?;
        }
        Ok(Writable {
            esp: esp.into(),
            was_ro,
        })
    }
}

impl Drop for Writable {
    fn drop(&mut self) {
        nix::unistd::sync();
        if self.was_ro {
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | ESP_FLAGS;
            if let Err(e) = mount(None::<&str>, &self.esp, None::<&str>, flags, None::<&str>) {
                tracing::warn!("remount {} read-only: {e}", self.esp.display());
            }
        }
    }
}

/// RAUC's `post-install` handler: copies the target slot's UKI from the mounted bundle
/// onto the ESP, replacing that slot's entry under its current name. RAUC 1.8 runs it
/// after writing the root and after `set-primary` (so the name is `sosna-1-b+3-0.efi`).
/// A crash before it leaves the old UKI, whose root hash the new root fails: the early
/// stage refuses that slot and the old one boots. `env` reads RAUC's handler
/// environment. Returns the entry's file name.
pub fn post_install(
    esp: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, BackendError> {
    let var = |k: &str| env(k).ok_or_else(|| BackendError::MissingEnv(k.to_owned()));
    let targets = var("RAUC_TARGET_SLOTS")?;
    let mut slot = None;
    for i in targets.split_whitespace() {
        if env(&format!("RAUC_SLOT_CLASS_{i}")).as_deref() == Some("rootfs") {
            slot = Some(bootname(&var(&format!("RAUC_SLOT_BOOTNAME_{i}"))?)?);
        }
    }
    let slot = slot.ok_or(BackendError::NoTarget(targets))?;
    let bundle = PathBuf::from(var("RAUC_BUNDLE_MOUNT_POINT")?);
    let uki = bundle.join(format!("uki-{slot}.efi"));
    let io = |what: String| move |source| BackendError::Io { what, source };
    let data = std::fs::read(&uki).map_err(io(format!("read {}", uki.display())))?;

    let _rw = Writable::new(esp)?;
    let dir = esp.join(ENTRY_DIR);
    let name = bootslot::entries(esp)?
        .into_iter()
        .find(|(_, e)| e.slot == slot)
        .map(|(n, _)| n)
        .unwrap_or_else(|| {
            Entry {
                rank: 0,
                slot,
                tries: Some((0, 0)),
            }
            .file_name()
        });
    // Written beside, then renamed: a crash leaves the old file or the new, never half.
    let to = dir.join(&name);
    sosna_durable::write_atomic(&to, &data, sosna_durable::Durability::Synced)
        .map_err(io(format!("write {}", to.display())))?;
    tracing::info!(
        "rauc post-install: slot {slot}'s kernel ({} bytes) installed as {name}",
        data.len()
    );
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn backend_arguments_parse_or_are_named() {
        assert_eq!(Op::parse(&args("get-primary")).unwrap(), Op::GetPrimary);
        assert_eq!(
            Op::parse(&args("set-state b good")).unwrap(),
            Op::SetState('b', true)
        );
        assert_eq!(
            Op::parse(&args("set-primary a")).unwrap(),
            Op::SetPrimary('a')
        );
        let e = Op::parse(&args("set-state b maybe")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad slot state \"maybe\": expected good or bad"
        );
        let e = Op::parse(&args("get-state B")).unwrap_err();
        assert!(e.to_string().contains("bad slot bootname \"B\""), "{e}");
        assert!(matches!(
            Op::parse(&args("reboot")),
            Err(BackendError::Usage(_))
        ));
        assert!(matches!(Op::parse(&[]), Err(BackendError::Usage(_))));
    }

    fn esp() -> tempfile::TempDir {
        let esp = tempfile::tempdir().unwrap();
        let dir = esp.path().join(ENTRY_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sosna-1-a.efi"), "old a").unwrap();
        std::fs::write(dir.join("sosna-0-b.efi"), "old b").unwrap();
        esp
    }

    #[test]
    fn backend_calls_drive_the_entries() {
        let esp = esp();
        let p = esp.path();
        assert_eq!(run(p, &Op::GetPrimary).unwrap().as_deref(), Some("a"));
        run(p, &Op::SetState('b', false)).unwrap();
        assert_eq!(run(p, &Op::GetState('b')).unwrap().as_deref(), Some("bad"));
        run(p, &Op::SetPrimary('b')).unwrap();
        assert_eq!(run(p, &Op::GetPrimary).unwrap().as_deref(), Some("b"));
        assert_eq!(run(p, &Op::GetState('b')).unwrap().as_deref(), Some("good"));
        assert!(run(p, &Op::GetState('c')).is_err());
    }

    #[test]
    fn post_install_puts_the_targets_kernel_on_the_esp() {
        let esp = esp();
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(bundle.path().join("uki-b.efi"), "new b").unwrap();
        let mut env: HashMap<String, String> = [
            ("RAUC_TARGET_SLOTS", "2"),
            ("RAUC_SLOT_CLASS_2", "rootfs"),
            ("RAUC_SLOT_BOOTNAME_2", "b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert(
            "RAUC_BUNDLE_MOUNT_POINT".into(),
            bundle.path().display().to_string(),
        );
        let get = |k: &str| env.get(k).cloned();
        bootslot::mark_bad(esp.path(), 'b').unwrap();
        assert_eq!(post_install(esp.path(), &get).unwrap(), "sosna-0-b+0-1.efi");
        let dir = esp.path().join(ENTRY_DIR);
        assert_eq!(
            std::fs::read_to_string(dir.join("sosna-0-b+0-1.efi")).unwrap(),
            "new b"
        );
        let none = |_: &str| None;
        let e = post_install(esp.path(), &none).unwrap_err();
        assert!(e.to_string().contains("RAUC_TARGET_SLOTS"), "{e}");
    }
}
