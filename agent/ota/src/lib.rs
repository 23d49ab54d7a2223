//! Over-the-air updates of the disk image through RAUC (DESIGN §5, issue 8), and fleet
//! rollouts over the bus ([`rollout`]).
//!
//! Design: a bundle carries one RAUC image, `root.img` (the erofs root followed by its
//! dm-verity tree, written raw into the other root partition), plus both slots' unified
//! kernel images as plain bundle files (`uki-a.efi`, `uki-b.efi`): a new root needs the
//! kernel whose command line holds its root hash. RAUC verifies the bundle's signature
//! (verity format: every byte read from it is covered), writes the root, then runs its
//! `post-install` system handler — this binary ([`backend::post_install`]) — which puts
//! the target slot's UKI on the ESP. RAUC's `custom` boot backend is this binary too
//! ([`backend`]), on top of [`sosna_init::boot::bootslot`]'s systemd-boot file names. The agent talks
//! to RAUC only over D-Bus ([`rauc`]).

pub mod backend;
pub mod cli;
pub mod fetch;
pub mod health;
pub mod rauc;
pub mod rollout;
pub mod services;

use std::path::Path;

/// RAUC's system configuration; its presence means this image can be updated.
pub const RAUC_CONF: &str = "/etc/rauc/system.conf";
/// The image's release, written by the image build.
pub const VERSION_FILE: &str = "/etc/sosna-version";
/// Where the early stage mounts the ESP (read-only) in the final root.
pub const ESP: &str = "/boot";
/// Test images (built with the `fault-injection` feature) carry this file to make the
/// post-boot health check fail.
#[cfg(feature = "fault-injection")]
pub const HEALTH_FAIL_FLAG: &str = "/etc/sosna/health-fail";
/// Test images (built with the `fault-injection` feature) carry this file to make the
/// agent hang at start (before it pets the watchdog), like a release that locks up.
#[cfg(feature = "fault-injection")]
pub const TEST_HANG_FLAG: &str = "/etc/sosna/test-hang";
/// Digests of bundles installed so far (for `update install --once`), on the state partition.
pub const INSTALLED_DIR: &str = "/var/lib/sosna/ota/installed";

/// Whether this root carries RAUC (the disk image does; the fast-path initramfs does not).
pub fn present() -> bool {
    Path::new(RAUC_CONF).exists()
}

/// The running image's release: the version file, else the agent's own version.
pub fn version() -> String {
    std::fs::read_to_string(VERSION_FILE)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
}

/// Whether the booted slot is still on trial: its boot entry on the ESP still counts tries
/// (RAUC has not marked it good).
pub fn on_trial() -> bool {
    present() && booted_slot().is_some_and(|slot| on_trial_in(Path::new(ESP), slot))
}

fn on_trial_in(esp: &Path, slot: char) -> bool {
    sosna_init::boot::bootslot::entries(esp).is_ok_and(|entries| {
        entries
            .iter()
            .any(|(_, e)| e.slot == slot && e.tries.is_some())
    })
}

/// The slot this boot came from (`sosna.slot=` on the kernel command line).
pub fn booted_slot() -> Option<char> {
    sosna_init::cmdline::BootArgs::from_proc().0.disk.slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_on_trial_while_its_entry_counts_tries() {
        let esp = tempfile::tempdir().unwrap();
        let dir = esp.path().join(sosna_init::boot::bootslot::ENTRY_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sosna-0-a.efi"), b"").unwrap();
        std::fs::write(dir.join("sosna-1-b+2-1.efi"), b"").unwrap();
        assert!(!on_trial_in(esp.path(), 'a'));
        assert!(on_trial_in(esp.path(), 'b'));
        assert!(!on_trial_in(esp.path(), 'c'));
    }
}
