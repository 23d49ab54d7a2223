//! A/B boot slots as systemd-boot entries on the ESP: one unified kernel image per slot
//! in `EFI/Linux/`, named `sosna-<rank>-<slot>[+<left>[-<done>]].efi`.
//!
//! systemd-boot (252, checked in its `config_entry_compare`) orders Type #2 entries:
//! entries with no tries left last; then, as our `.osrel` carries no `ID`/`IMAGE_ID`
//! (so no sort key), by file name, highest version-compare first; and it boots the first.
//! So `rank` 1 is the primary slot and 0 the other. Before each boot of an entry with a
//! `+left-done` counter it renames the file one try down; an entry at `+0-…` is "bad" and
//! sorts last, so the other slot boots. A "good" entry has no counter.
//!
//! RAUC's `custom` boot backend (`sosna_ota::backend`) drives these files through
//! [`primary`], [`set_primary`] and [`set_state`]: primary = rank, state = counter.

use std::path::{Path, PathBuf};

pub const ENTRY_DIR: &str = "EFI/Linux";

#[derive(Debug, thiserror::Error)]
pub enum BootSlotError {
    #[error("list {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no boot entry for slot {0} in EFI/Linux")]
    NoEntry(char),
    #[error("rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// A parsed entry file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rank: u32,
    pub slot: char,
    /// `(left, done)` while being tried; `None` once marked good.
    pub tries: Option<(u32, u32)>,
}

impl Entry {
    pub fn parse(file: &str) -> Option<Entry> {
        let stem = file.strip_suffix(".efi")?.strip_prefix("sosna-")?;
        let (name, counter) = match stem.split_once('+') {
            Some((n, c)) => (n, Some(c)),
            None => (stem, None),
        };
        let (rank, slot) = name.split_once('-')?;
        let mut chars = slot.chars();
        let slot = chars.next().filter(|c| c.is_ascii_lowercase())?;
        if chars.next().is_some() {
            return None;
        }
        let tries = match counter {
            None => None,
            Some(c) => {
                let (left, done) = c.split_once('-').unwrap_or((c, "0"));
                Some((left.parse().ok()?, done.parse().ok()?))
            }
        };
        Some(Entry {
            rank: rank.parse().ok()?,
            slot,
            tries,
        })
    }

    pub fn file_name(&self) -> String {
        match self.tries {
            None => format!("sosna-{}-{}.efi", self.rank, self.slot),
            Some((left, done)) => format!("sosna-{}-{}+{left}-{done}.efi", self.rank, self.slot),
        }
    }

    pub fn is_bad(&self) -> bool {
        matches!(self.tries, Some((0, _)))
    }
}

/// The entries in `<esp>/EFI/Linux`, with their file names.
pub fn entries(esp: &Path) -> Result<Vec<(String, Entry)>, BootSlotError> {
    let dir = esp.join(ENTRY_DIR);
    let list = std::fs::read_dir(&dir).map_err(|source| BootSlotError::List {
        path: dir.clone(),
        source,
    })?;
    let mut out: Vec<(String, Entry)> = list
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Entry::parse(&name).map(|entry| (name, entry))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Marks `slot` bad (no tries left) so systemd-boot boots the other one. Returns the new
/// file name.
pub fn mark_bad(esp: &Path, slot: char) -> Result<String, BootSlotError> {
    let (name, mut entry) = entries(esp)?
        .into_iter()
        .find(|(_, e)| e.slot == slot)
        .ok_or(BootSlotError::NoEntry(slot))?;
    let done = entry.tries.map_or(0, |(_, done)| done);
    entry.tries = Some((0, done + 1));
    let to_name = entry.file_name();
    let dir = esp.join(ENTRY_DIR);
    let (from, to) = (dir.join(&name), dir.join(&to_name));
    std::fs::rename(&from, &to).map_err(|source| BootSlotError::Rename { from, to, source })?;
    Ok(to_name)
}

/// Tries a newly installed slot gets before systemd-boot gives up on it.
pub const TRIES: u32 = 3;

/// The entry systemd-boot would boot: not bad first, then the highest rank, then the
/// highest slot letter (its version compare of the names without counters).
pub fn primary(entries: &[(String, Entry)]) -> Option<&Entry> {
    entries
        .iter()
        .map(|(_, e)| e)
        .max_by_key(|e| (!e.is_bad(), e.rank, e.slot))
}

fn rename(esp: &Path, from: &str, to: &str) -> Result<(), BootSlotError> {
    if from == to {
        return Ok(());
    }
    let dir = esp.join(ENTRY_DIR);
    let (from, to) = (dir.join(from), dir.join(to));
    std::fs::rename(&from, &to).map_err(|source| BootSlotError::Rename { from, to, source })
}

/// Makes `slot` the one to boot next, on trial: rank 1 with [`TRIES`] tries; every other
/// entry drops to rank 0 (keeping its state). The others are demoted first, so a crash
/// half-way leaves no two entries at rank 1.
pub fn set_primary(esp: &Path, slot: char) -> Result<String, BootSlotError> {
    let all = entries(esp)?;
    let (name, _) = all
        .iter()
        .find(|(_, e)| e.slot == slot)
        .ok_or(BootSlotError::NoEntry(slot))?;
    for (other_name, other) in all.iter().filter(|(_, e)| e.slot != slot) {
        let demoted = Entry {
            rank: 0,
            ..other.clone()
        };
        rename(esp, other_name, &demoted.file_name())?;
    }
    let promoted = Entry {
        rank: 1,
        slot,
        tries: Some((TRIES, 0)),
    };
    let to = promoted.file_name();
    rename(esp, name, &to)?;
    Ok(to)
}

/// Marks `slot` good (drops its counter: systemd-boot stops counting) or bad (no tries
/// left: it sorts last). Returns the new file name.
pub fn set_state(esp: &Path, slot: char, good: bool) -> Result<String, BootSlotError> {
    if !good {
        return mark_bad(esp, slot);
    }
    let (name, mut entry) = entries(esp)?
        .into_iter()
        .find(|(_, e)| e.slot == slot)
        .ok_or(BootSlotError::NoEntry(slot))?;
    entry.tries = None;
    let to = entry.file_name();
    rename(esp, &name, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "sosna-1-a.efi",
            "sosna-0-b+3-0.efi",
            "sosna-1-b+0-3.efi",
            "sosna-12-c+1-2.efi",
        ] {
            let e = Entry::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(e.file_name(), name);
        }
        let e = Entry::parse("sosna-0-b+2.efi").unwrap();
        assert_eq!(e.tries, Some((2, 0)));
        assert!(Entry::parse("sosna-1-b+0-1.efi").unwrap().is_bad());
        assert!(!Entry::parse("sosna-1-b.efi").unwrap().is_bad());
    }

    #[test]
    fn foreign_names_are_ignored() {
        for name in [
            "linux.efi",
            "sosna-a.efi",
            "sosna-1-ab.efi",
            "sosna-1-A.efi",
            "sosna-x-a.efi",
            "sosna-1-a+x-1.efi",
            "sosna-1-a.conf",
        ] {
            assert_eq!(Entry::parse(name), None, "{name}");
        }
    }

    #[test]
    fn mark_bad_renames_only_that_slot() {
        let esp = tempfile::tempdir().unwrap();
        let dir = esp.path().join(ENTRY_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sosna-1-a.efi"), "a").unwrap();
        std::fs::write(dir.join("sosna-0-b+2-1.efi"), "b").unwrap();
        assert_eq!(mark_bad(esp.path(), 'a').unwrap(), "sosna-1-a+0-1.efi");
        assert_eq!(mark_bad(esp.path(), 'b').unwrap(), "sosna-0-b+0-2.efi");
        assert_eq!(
            std::fs::read_to_string(dir.join("sosna-1-a+0-1.efi")).unwrap(),
            "a"
        );
        let err = mark_bad(esp.path(), 'c').unwrap_err();
        assert_eq!(err.to_string(), "no boot entry for slot c in EFI/Linux");
    }

    fn names(esp: &Path) -> Vec<String> {
        entries(esp).unwrap().into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn primary_is_what_systemd_boot_picks() {
        let parse = |names: &[&str]| -> Vec<(String, Entry)> {
            names
                .iter()
                .map(|n| (n.to_string(), Entry::parse(n).unwrap()))
                .collect()
        };
        let slot = |names: &[&str]| primary(&parse(names)).map(|e| e.slot);
        assert_eq!(slot(&["sosna-0-b.efi", "sosna-1-a.efi"]), Some('a'));
        assert_eq!(slot(&["sosna-0-a.efi", "sosna-1-b+2-1.efi"]), Some('b'));
        assert_eq!(slot(&["sosna-0-a.efi", "sosna-1-b+0-3.efi"]), Some('a'));
        assert_eq!(slot(&[]), None);
    }

    /// The life of an update: RAUC marks the target bad, writes it, makes it primary;
    /// the new slot proves itself and is marked good.
    #[test]
    fn an_update_moves_through_the_names() {
        let esp = tempfile::tempdir().unwrap();
        let dir = esp.path().join(ENTRY_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sosna-1-a.efi"), "a").unwrap();
        std::fs::write(dir.join("sosna-0-b.efi"), "b").unwrap();
        set_state(esp.path(), 'b', false).unwrap();
        assert_eq!(names(esp.path()), ["sosna-0-b+0-1.efi", "sosna-1-a.efi"]);
        assert_eq!(set_primary(esp.path(), 'b').unwrap(), "sosna-1-b+3-0.efi");
        assert_eq!(names(esp.path()), ["sosna-0-a.efi", "sosna-1-b+3-0.efi"]);
        let all = entries(esp.path()).unwrap();
        assert_eq!(primary(&all).unwrap().slot, 'b');
        assert_eq!(set_state(esp.path(), 'b', true).unwrap(), "sosna-1-b.efi");
        assert_eq!(names(esp.path()), ["sosna-0-a.efi", "sosna-1-b.efi"]);
        assert!(set_primary(esp.path(), 'c').is_err());
    }
}
