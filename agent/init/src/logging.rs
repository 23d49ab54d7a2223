//! Console logging: lines stamped with seconds since boot, like the kernel's, so agent and
//! kernel messages interleave readably on the serial console.

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::EnvFilter;

struct SinceBoot;

impl FormatTime for SinceBoot {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let ms = crate::status::boot_ms();
        write!(w, "[{:5}.{:03}] sosna:", ms / 1000, ms % 1000)
    }
}

/// Installs the global subscriber writing to stderr. `level` is a tracing filter that the
/// config has already validated; an invalid one falls back to `info`.
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(SinceBoot)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}
