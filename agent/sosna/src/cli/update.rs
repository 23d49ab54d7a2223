//! `sosna update install|status|mark`: this machine's A/B update through RAUC.

use clap::Subcommand;
use sosna_init::power::PowerRequest;

use super::power::ask_init;
use super::Blocking;

#[derive(Subcommand)]
pub enum UpdateAction {
    /// Install a signed RAUC bundle into the other slot (a path, or an http:// URL that
    /// is downloaded with resume); the next boot tries it.
    Install {
        bundle: String,
        /// Expected sha256 of the bundle (hex).
        #[arg(long)]
        sha256: Option<String>,
        /// Do nothing if this bundle (by sha256) was installed before.
        #[arg(long)]
        once: bool,
        /// Reboot into the new slot once installed.
        #[arg(long, conflicts_with = "poweroff")]
        reboot: bool,
        /// Power off once installed.
        #[arg(long)]
        poweroff: bool,
    },
    /// Show this image's version and the slots as RAUC sees them.
    Status,
    /// Mark the booted slot good (keep it) or bad (fall back on the next boot).
    Mark {
        #[arg(value_parser = ["good", "bad"])]
        state: String,
    },
}

pub fn update(action: UpdateAction) -> anyhow::Result<()> {
    use sosna_ota::cli;
    match action {
        UpdateAction::Install {
            bundle,
            sha256,
            once,
            reboot,
            poweroff,
        } => {
            let done = cli::install(&bundle, sha256.as_deref(), once).await_blocking()?;
            if matches!(done, cli::Installed::Done { .. }) {
                if reboot {
                    ask_init(PowerRequest::Reboot)?;
                } else if poweroff {
                    ask_init(PowerRequest::Poweroff)?;
                }
            }
        }
        UpdateAction::Status => print!("{}", cli::status().await_blocking()?),
        UpdateAction::Mark { state } => {
            println!("{}", cli::mark(state == "good").await_blocking()?)
        }
    }
    Ok(())
}
