//! `sosna poweroff|reboot`: ask PID 1, and nothing else, to stop the machine.

use anyhow::Context;
use sosna_init::power::{signal_for, PowerRequest};

pub fn ask_init(req: PowerRequest) -> anyhow::Result<()> {
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    anyhow::ensure!(
        comm.trim() == "sosna" || comm.trim() == "init",
        "PID 1 is {:?}, not the sosna agent; refusing to signal it",
        comm.trim()
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), signal_for(req))
        .context("signal PID 1")?;
    Ok(())
}
