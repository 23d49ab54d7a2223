//! PID 1: set the machine up, run the agent, and always end in poweroff or reboot.
//! Nothing in here may return or panic out: the kernel panics when init exits.

use std::time::Duration;

use crate::config::Config;
use crate::node::{self, Mode};
use sosna_init::boot::early;
use sosna_init::cmdline::BootArgs;
use sosna_init::shutdown::{fatal, finish};
use sosna_init::watchdog::Watchdog;
use sosna_init::{kmod, logging, mounts};

pub fn run() -> ! {
    // Before /proc exists we can't read the command line; use the default delay.
    if let Err(e) = mounts::mount_early() {
        fatal(&e.to_string(), BootArgs::default().fatal_delay);
    }
    let (boot, warnings) = BootArgs::from_proc();
    if early::wanted(&boot) {
        early::run(&boot);
    }
    // While this is the only thread: taking it edits the environment.
    let watchdog = Watchdog::inherited();
    let delay = boot.fatal_delay;
    // A panic is logged where it happens. One inside a task or a service's thread ends
    // only that (tokio contains it); one that unwinds through PID 1's own stack is fatal.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("sosna: panic (contained where caught): {info}");
        tracing::error!("panic: {info}");
    }));
    let outcome = std::panic::catch_unwind(move || serve(boot, warnings, watchdog));
    match outcome {
        Ok(never) => never,
        Err(_) => fatal("the agent panicked", delay),
    }
}

/// PID 1 after the early stage: the agent, until a power request.
fn serve(boot: BootArgs, warnings: Vec<String>, watchdog: Result<Option<Watchdog>, String>) -> ! {
    let delay = boot.fatal_delay;
    // A release that cannot come up reboots while its slot is on trial, so the bootloader
    // falls back; the health check clears this once the slot is good.
    sosna_init::shutdown::set_on_trial(sosna_ota::on_trial());
    let config = Config::load(&boot.config);
    let level = boot.log.as_deref();
    logging::init(level.unwrap_or(config.as_ref().map_or("info", |c| c.log.level.as_str())));
    tracing::info!(
        "sosna {} starting as PID 1, config {}",
        env!("CARGO_PKG_VERSION"),
        boot.config.display()
    );
    for w in warnings {
        tracing::warn!("{w}");
    }
    let config = match config {
        Ok(c) => c,
        Err(e) => fatal(&format!("bad provisioning file: {e}"), delay),
    };
    tracing::info!("role: {:?}", config.role);
    let watchdog = watchdog.unwrap_or_else(|e| {
        tracing::error!("watchdog: {e}");
        None
    });
    #[cfg(feature = "fault-injection")]
    if sosna_ota::present() && std::path::Path::new(sosna_ota::TEST_HANG_FLAG).exists() {
        // Test images only: a release that hangs at start, for the watchdog to catch.
        tracing::error!("{} present: hanging", sosna_ota::TEST_HANG_FLAG);
        loop {
            std::thread::park();
        }
    }

    // With the kernel's own Ctrl-Alt-Del reboot off, it sends us SIGINT instead.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        tracing::warn!("disable Ctrl-Alt-Del reboot: {e}");
    }
    kmod::load_and_log(kmod::MODULE_LIST);
    mounts::delegate_cgroup_controllers();

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fatal(&format!("start async runtime: {e}"), delay),
    };
    let req = match rt.block_on(node::run(&config, Mode::Init, watchdog)) {
        Ok(req) => req,
        Err(e) => fatal(&format!("agent: {e}"), delay),
    };
    rt.shutdown_timeout(Duration::from_millis(200));
    finish(req, Duration::from_secs(config.power.stop_timeout_secs))
}
