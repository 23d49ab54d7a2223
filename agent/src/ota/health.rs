//! After a boot into a slot that is still on trial (its boot entry counts tries), the
//! agent checks that the system works and tells RAUC: `Mark("good", "booted")`, or
//! `Mark("bad", "booted")` and a reboot, so systemd-boot falls back to the other slot.
//! A slot that hangs before this never gets marked, and systemd-boot's counter runs out.

use std::path::Path;
use std::time::Duration;

use crate::bootslot;
use crate::ota::rauc::{self, Rauc};

/// How long RAUC may take to come up on the bus after READY.
const RAUC_WAIT: Duration = Duration::from_secs(120);

/// Checks this boot and marks its slot; reboots when it is bad. Prints one
/// `SOSNA OTA slot=… version=… state=…` line for operators and tests.
pub async fn after_boot(runtime: Option<crate::runtime::Runtime>) {
    let Some(slot) = super::booted_slot() else {
        return;
    };
    let esp = Path::new(super::ESP);
    let version = super::version();
    let entry = bootslot::entries(esp)
        .ok()
        .and_then(|all| all.into_iter().find(|(_, e)| e.slot == slot));
    let on_trial = matches!(&entry, Some((_, e)) if e.tries.is_some());
    if !on_trial {
        println!("SOSNA OTA slot={slot} version={version} state=good");
        return;
    }
    tracing::info!("ota: slot {slot} is on trial; checking health");
    match check(slot, runtime.as_ref()).await {
        Ok(rauc) => match rauc.mark_booted(true).await {
            Ok(msg) => {
                tracing::info!("ota: {msg}");
                println!("SOSNA OTA slot={slot} version={version} state=good");
            }
            Err(e) => tracing::error!("ota: mark slot {slot} good: {e}"),
        },
        Err(why) => {
            println!("SOSNA OTA slot={slot} version={version} state=bad reason={why}");
            mark_bad(slot, esp).await;
            tracing::error!("ota: slot {slot} failed its health check; rebooting");
            let reboot = crate::power::signal_for(crate::power::PowerRequest::Reboot);
            if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), reboot) {
                tracing::error!("ota: reboot: {e}");
            }
        }
    }
}

/// The health check: the agent reached READY (this runs after it); the container
/// runtime, when configured, came up and reads its image store from the state partition;
/// RAUC answers on the bus and agrees which slot booted; and the test flag is absent.
async fn check(slot: char, runtime: Option<&crate::runtime::Runtime>) -> Result<Rauc, String> {
    if Path::new(super::HEALTH_FAIL_FLAG).exists() {
        return Err(format!("{} present", super::HEALTH_FAIL_FLAG));
    }
    if let Some(rt) = runtime {
        rt.images().map_err(|e| format!("container runtime: {e}"))?;
    }
    let rauc = Rauc::connect(RAUC_WAIT).await.map_err(|e| e.to_string())?;
    let booted = rauc.booted().await.map_err(|e| e.to_string())?;
    if booted != slot.to_string() {
        return Err(format!(
            "RAUC says slot {booted:?} booted, the kernel says {slot}"
        ));
    }
    let slots = rauc.slots().await.map_err(|e| e.to_string())?;
    rauc::booted_slot(&slots, &booted).map_err(|e| e.to_string())?;
    Ok(rauc)
}

/// Through RAUC when it answers; else straight on the ESP, so the fallback happens.
async fn mark_bad(slot: char, esp: &Path) {
    match Rauc::connect(Duration::from_secs(5)).await {
        Ok(rauc) => match rauc.mark_booted(false).await {
            Ok(msg) => return tracing::info!("ota: {msg}"),
            Err(e) => tracing::error!("ota: mark slot {slot} bad through RAUC: {e}"),
        },
        Err(e) => tracing::error!("ota: {e}"),
    }
    let marked = super::backend::Writable::new(esp)
        .map_err(|e| e.to_string())
        .and_then(|_rw| bootslot::set_state(esp, slot, false).map_err(|e| e.to_string()));
    match marked {
        Ok(name) => tracing::info!("ota: slot {slot} marked bad on the ESP ({name})"),
        Err(e) => tracing::error!("ota: mark slot {slot} bad: {e}"),
    }
}
