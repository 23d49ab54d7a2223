//! The disk image's [`Updater`]: the bundle is fetched (resumable, sha256-checked) and
//! installed through RAUC over D-Bus by [`sosna_ota`], then PID 1 reboots itself in order.
//! After the reboot the new slot health-checks and marks itself (`ota::health`).

use super::{InstallError, InstallFuture, Updater};
use sosna_init::power::{signal_for, PowerRequest};
use sosna_proto::bus::messages::RolloutNotice;

pub struct Rauc;

impl Updater for Rauc {
    fn running(&self) -> String {
        crate::version()
    }

    fn slots(&self) -> String {
        match crate::booted_slot() {
            Some(slot) => format!("booted {slot}"),
            None => "booted slot unknown".into(),
        }
    }

    fn install(&self, notice: &RolloutNotice) -> InstallFuture {
        let url = notice.url.clone();
        let digest = format!("{:x}", notice.sha256);
        Box::pin(async move {
            // The install's progress callback is not Send: it gets a thread and a runtime
            // of its own.
            let installed = tokio::task::spawn_blocking(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| InstallError::Task(format!("async runtime: {e}")))?;
                Ok::<_, InstallError>(rt.block_on(crate::cli::install(
                    &url,
                    Some(&digest),
                    true,
                ))?)
            })
            .await
            .map_err(|e| InstallError::Task(e.to_string()))??;
            if let crate::cli::Installed::Already { .. } = installed {
                // Installed once, yet the old release runs: the new slot fell back. Trying
                // again would loop; the failure goes to the operator instead.
                return Err(InstallError::FellBack);
            }
            // This is PID 1: the signal starts its own orderly reboot.
            nix::sys::signal::kill(nix::unistd::Pid::this(), signal_for(PowerRequest::Reboot))
                .map_err(InstallError::Reboot)
        })
    }
}
