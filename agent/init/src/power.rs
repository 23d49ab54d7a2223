//! Turns signals into power requests.
//!
//! As PID 1: Ctrl-Alt-Del reaches us as SIGINT once the kernel's own CAD reboot is off;
//! SIGTERM and SIGPWR (UPS daemons, `sosna poweroff`) power off; SIGUSR1 (`sosna reboot`)
//! reboots; the ACPI power button powers off. As a host daemon every signal just ends
//! the daemon.

use tokio::signal::unix::{signal, SignalKind};

use crate::power_button::PowerButton;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    Poweroff,
    Reboot,
}

impl From<PowerAction> for PowerRequest {
    fn from(a: PowerAction) -> Self {
        match a {
            PowerAction::Poweroff => PowerRequest::Poweroff,
            PowerAction::Reboot => PowerRequest::Reboot,
        }
    }
}

/// Signal handlers, installed when this is built so no request is lost in between.
pub struct PowerSignals {
    /// As PID 1 the ACPI power button powers off too.
    button: Option<PowerButton>,
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    pwr: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl PowerSignals {
    pub fn install(button: bool) -> std::io::Result<PowerSignals> {
        Ok(PowerSignals {
            button: if button { PowerButton::open() } else { None },
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            pwr: signal(SignalKind::from_raw(libc::SIGPWR))?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Waits for the next request; `ctrl_alt_del` decides what SIGINT means.
    pub async fn next(&mut self, ctrl_alt_del: PowerAction) -> (PowerRequest, &'static str) {
        let button = async {
            match &mut self.button {
                Some(b) => b.pressed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = button => (PowerRequest::Poweroff, "power button"),
            _ = self.int.recv() => (ctrl_alt_del.into(), "Ctrl-Alt-Del (SIGINT)"),
            _ = self.term.recv() => (PowerRequest::Poweroff, "SIGTERM"),
            _ = self.pwr.recv() => (PowerRequest::Poweroff, "SIGPWR"),
            _ = self.usr1.recv() => (PowerRequest::Reboot, "SIGUSR1"),
        }
    }
}

/// The signal `sosna poweroff` / `sosna reboot` send to PID 1.
pub fn signal_for(req: PowerRequest) -> nix::sys::signal::Signal {
    match req {
        PowerRequest::Poweroff => nix::sys::signal::Signal::SIGTERM,
        PowerRequest::Reboot => nix::sys::signal::Signal::SIGUSR1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    #[default]
    Reboot,
    Poweroff,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// What Ctrl-Alt-Del does: `reboot` or `poweroff`.
    pub ctrl_alt_del: PowerAction,
    /// Grace period between SIGTERM and SIGKILL for every process at shutdown, in seconds.
    pub stop_timeout_secs: u64,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            ctrl_alt_del: PowerAction::Reboot,
            stop_timeout_secs: 5,
        }
    }
}
