//! Facts about this boot for the console: the READY line other tools wait for.

/// Milliseconds since the kernel started (CLOCK_BOOTTIME includes time suspended, which
/// is what "since boot" means to an operator).
pub fn boot_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// Resident set size of this process in KiB, from /proc/self/status.
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
        .unwrap_or(0)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The one machine-readable line that says the agent is up.
pub fn ready_line() -> String {
    format!(
        "SOSNA READY version={} boot_ms={} rss_kb={}",
        env!("CARGO_PKG_VERSION"),
        boot_ms(),
        rss_kb()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_from_status_text() {
        let s = "Name:\tsosna\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_vm_rss(s), Some(2048));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn ready_line_has_the_documented_shape() {
        let line = ready_line();
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(&fields[..2], ["SOSNA", "READY"]);
        assert!(fields[2].starts_with("version="));
        let rss: u64 = fields[4].strip_prefix("rss_kb=").unwrap().parse().unwrap();
        assert!(rss > 0, "this test process has some RSS");
        let boot: u64 = fields[3].strip_prefix("boot_ms=").unwrap().parse().unwrap();
        assert!(boot > 0);
    }
}
