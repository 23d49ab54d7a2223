//! `sosna.*` keys on the kernel command line: the few settings needed before the
//! provisioning file can be read, or to override it from the boot loader.

use std::path::PathBuf;
use std::time::Duration;

/// Where the agent looks when neither the command line nor the CLI names a file.
pub const DEFAULT_CONFIG: &str = "/etc/sosna/config.toml";

#[derive(Debug, Clone, PartialEq)]
pub struct BootArgs {
    /// `sosna.config=PATH`: the provisioning file.
    pub config: PathBuf,
    /// `sosna.fatal_delay=SECS`: how long a fatal error stays on the console before poweroff.
    pub fatal_delay: Duration,
    /// `sosna.log=FILTER`: overrides the provisioning file's log level (debugging a boot).
    pub log: Option<String>,
    /// What the disk image's early-boot stage needs; all `None` on the fast path.
    pub disk: DiskArgs,
}

/// Keys a slot's unified kernel image sets for the early-boot stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskArgs {
    /// `sosna.slot=a`: the slot this kernel belongs to.
    pub slot: Option<char>,
    /// `sosna.root=PARTUUID=…`: the slot's root partition (erofs data, then verity tree).
    pub root: Option<String>,
    /// `sosna.roothash=HEX`: dm-verity root hash of the root partition.
    pub roothash: Option<String>,
    /// `sosna.salt=HEX`: dm-verity salt.
    pub salt: Option<String>,
    /// `sosna.data_blocks=N`: 4 KiB data blocks before the hash tree.
    pub data_blocks: Option<u64>,
    /// `sosna.state=PARTUUID=…`: the writable state partition (ext4).
    pub state: Option<String>,
    /// `sosna.esp=PARTUUID=…`: the EFI system partition (provisioning file, boot entries).
    pub esp: Option<String>,
    /// `sosna.watchdog=SECS`: arm the hardware watchdog with this timeout (0 or absent: don't).
    pub watchdog: Option<u32>,
}

impl DiskArgs {
    /// Whether this boot came from the disk image (a root to set up).
    pub fn present(&self) -> bool {
        self.root.is_some()
    }
}

fn partuuid(value: &str) -> Option<String> {
    value
        .strip_prefix("PARTUUID=")
        .filter(|u| u.len() == 36)
        .map(str::to_ascii_lowercase)
}

impl Default for BootArgs {
    fn default() -> Self {
        BootArgs {
            config: PathBuf::from(DEFAULT_CONFIG),
            fatal_delay: Duration::from_secs(10),
            log: None,
            disk: DiskArgs::default(),
        }
    }
}

impl BootArgs {
    /// Reads `/proc/cmdline`; falls back to defaults when it can't be read.
    pub fn from_proc() -> (BootArgs, Vec<String>) {
        let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        BootArgs::parse(&text)
    }

    /// Parses a command line; returns the arguments plus a warning per bad `sosna.*` word
    /// (a bad boot argument must not stop the boot).
    pub fn parse(cmdline: &str) -> (BootArgs, Vec<String>) {
        let mut args = BootArgs::default();
        let mut warnings = Vec::new();
        for word in split(cmdline) {
            let Some(rest) = word.strip_prefix("sosna.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            match key {
                "config" if !value.is_empty() => args.config = PathBuf::from(value),
                "log" if !value.is_empty() => args.log = Some(value.to_owned()),
                "slot" if value.len() == 1 && value.as_bytes()[0].is_ascii_lowercase() => {
                    args.disk.slot = value.chars().next()
                }
                "root" if partuuid(value).is_some() => args.disk.root = partuuid(value),
                "state" if partuuid(value).is_some() => args.disk.state = partuuid(value),
                "esp" if partuuid(value).is_some() => args.disk.esp = partuuid(value),
                "roothash" if !value.is_empty() => args.disk.roothash = Some(value.to_owned()),
                "salt" if !value.is_empty() => args.disk.salt = Some(value.to_owned()),
                "data_blocks" if value.parse::<u64>().is_ok() => {
                    args.disk.data_blocks = value.parse().ok()
                }
                "watchdog" => match value.parse::<u32>() {
                    Ok(secs) => args.disk.watchdog = (secs > 0).then_some(secs),
                    Err(_) => warnings.push(format!(
                        "sosna.watchdog={value:?} is not a number of seconds; the watchdog stays off"
                    )),
                },
                "fatal_delay" => match value.parse::<u64>() {
                    Ok(secs) => args.fatal_delay = Duration::from_secs(secs),
                    Err(_) => warnings.push(format!(
                        "sosna.fatal_delay={value:?} is not a number of seconds; using {}",
                        args.fatal_delay.as_secs()
                    )),
                },
                _ => warnings.push(format!("unknown or empty boot argument sosna.{rest}")),
            }
        }
        (args, warnings)
    }
}

/// Splits like the kernel does: on spaces, with double quotes grouping.
fn split(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in cmdline.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sosna_keys_and_ignores_others() {
        let (a, w) = BootArgs::parse(
            "console=ttyS0 quiet sosna.config=/boot/x.toml sosna.fatal_delay=2 sosna.log=debug\n",
        );
        assert_eq!(a.config, PathBuf::from("/boot/x.toml"));
        assert_eq!(a.fatal_delay, Duration::from_secs(2));
        assert_eq!(a.log.as_deref(), Some("debug"));
        assert!(w.is_empty());
    }

    #[test]
    fn reads_disk_keys() {
        let (a, w) = BootArgs::parse(
            "sosna.slot=b sosna.root=PARTUUID=AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE \
             sosna.roothash=abcd sosna.salt=00 sosna.data_blocks=42 \
             sosna.state=PARTUUID=11111111-2222-3333-4444-555555555555",
        );
        assert!(w.is_empty(), "{w:?}");
        assert!(a.disk.present());
        assert_eq!(a.disk.slot, Some('b'));
        assert_eq!(
            a.disk.root.as_deref(),
            Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
        );
        assert_eq!(a.disk.data_blocks, Some(42));
        assert_eq!(a.disk.esp, None);
        assert_eq!(a.disk.watchdog, None);
        let (a, w) = BootArgs::parse("sosna.watchdog=60");
        assert_eq!((a.disk.watchdog, w.len()), (Some(60), 0));
        let (a, w) = BootArgs::parse("sosna.watchdog=0");
        assert_eq!((a.disk.watchdog, w.len()), (None, 0));
        let (a, w) = BootArgs::parse("sosna.watchdog=1m");
        assert_eq!(a.disk.watchdog, None);
        assert!(w[0].contains("watchdog"), "{w:?}");
        let (a, w) = BootArgs::parse("sosna.root=/dev/vda2 sosna.slot=AB sosna.data_blocks=x");
        assert!(!a.disk.present());
        assert_eq!(w.len(), 3, "{w:?}");
    }

    #[test]
    fn quotes_group_words() {
        let (a, _) = BootArgs::parse(r#"a "sosna.config=/my dir/c.toml" b"#);
        assert_eq!(a.config, PathBuf::from("/my dir/c.toml"));
    }

    #[test]
    fn bad_values_warn_and_keep_defaults() {
        let (a, w) = BootArgs::parse("sosna.fatal_delay=soon sosna.colour=red sosna.config=");
        assert_eq!(a, BootArgs::default());
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("fatal_delay"));
        assert!(w[1].contains("colour"));
    }
}
