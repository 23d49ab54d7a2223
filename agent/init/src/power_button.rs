//! The power button as a poweroff request: what QMP `system_powerdown`, a VM host's
//! "shut down" and a short press on a rig's or board's button send. The kernel only turns it
//! into an input event (ACPI "Power Button" on PCs, a `gpio-keys` KEY_POWER on ARM boards
//! and QEMU virt), so PID 1 reads it from evdev.

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on 64-bit: timeval (16 bytes), type, code (u16 each), value (i32).
const EVENT_SIZE: usize = 24;

/// The /dev/input node of the power button: the ACPI "Power Button", else a `gpio-keys`
/// device that has KEY_POWER. (Keyboards list KEY_POWER too, so names come first.)
fn find_device() -> Option<PathBuf> {
    let events: Vec<PathBuf> = std::fs::read_dir("/sys/class/input")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .map(|e| e.path())
        .collect();
    let name = |p: &PathBuf| std::fs::read_to_string(p.join("device/name")).unwrap_or_default();
    let has_power_key = |p: &PathBuf| {
        std::fs::read_to_string(p.join("device/capabilities/key"))
            .is_ok_and(|bits| has_bit(&bits, KEY_POWER))
    };
    events
        .iter()
        .find(|p| name(p).trim() == "Power Button")
        .or_else(|| {
            events
                .iter()
                .find(|p| name(p).trim() == "gpio-keys" && has_power_key(p))
        })
        .and_then(|p| p.file_name())
        .map(|f| Path::new("/dev/input").join(f))
}

/// Whether sysfs's capability bitmap (hex words, most significant first, 64 bits each on
/// the 64-bit machines we run on) has `bit` set.
fn has_bit(bitmap: &str, bit: u16) -> bool {
    let word = usize::from(bit / 64);
    bitmap
        .split_whitespace()
        .rev()
        .nth(word)
        .and_then(|w| u64::from_str_radix(w, 16).ok())
        .is_some_and(|w| w & (1 << (bit % 64)) != 0)
}

/// True for a key-press of KEY_POWER.
pub fn is_power_press(event: &[u8; EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// An open power-button device. Opened before the agent reports READY, so a press right
/// after READY is queued by evdev rather than lost.
pub struct PowerButton {
    dev: tokio::fs::File,
    path: PathBuf,
}

impl PowerButton {
    /// `None` when the machine has no ACPI power button (or it can't be opened).
    pub fn open() -> Option<PowerButton> {
        let path = find_device()?;
        match std::fs::File::open(&path) {
            Ok(f) => {
                tracing::debug!("watching {} for the power button", path.display());
                Some(PowerButton {
                    dev: tokio::fs::File::from_std(f),
                    path,
                })
            }
            Err(e) => {
                tracing::warn!("open {}: {e}", path.display());
                None
            }
        }
    }

    /// Resolves at the next press; never, if the device stops working.
    pub async fn pressed(&mut self) {
        let mut event = [0u8; EVENT_SIZE];
        loop {
            if let Err(e) = self.dev.read_exact(&mut event).await {
                tracing::warn!("read {}: {e}", self.path.display());
                return std::future::pending().await;
            }
            if is_power_press(&event) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bitmaps_are_read_word_by_word() {
        // gpio-keys on QEMU virt: only KEY_POWER (116 = word 1, bit 52).
        assert!(has_bit("10000000000000 0", KEY_POWER));
        assert!(!has_bit("0", KEY_POWER));
        assert!(!has_bit("10000000000000", KEY_POWER));
        assert!(!has_bit("garbage 0", KEY_POWER));
    }

    fn event(kind: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut e = [0u8; EVENT_SIZE];
        e[16..18].copy_from_slice(&kind.to_ne_bytes());
        e[18..20].copy_from_slice(&code.to_ne_bytes());
        e[20..24].copy_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(EV_KEY, 30, 1)), "another key");
        assert!(!is_power_press(&event(0, 0, 0)), "sync event");
    }
}
