//! After a boot into a slot that is still on trial (its boot entry counts tries), the
//! agent checks that the system works and tells RAUC: `Mark("good", "booted")`, or
//! `Mark("bad", "booted")` and a reboot, so systemd-boot falls back to the other slot.
//! A slot that hangs before this never gets marked, and systemd-boot's counter runs out.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::rauc::{self, Rauc};
use sosna_bus::Bus;
use sosna_chain::ChainConfig;
use sosna_init::boot::bootslot;
use sosna_runtime::Runtime;

/// How long RAUC may take to come up on the bus after READY.
const RAUC_WAIT: Duration = Duration::from_secs(120);
/// How long the node may take to reach a peer, and the chain's endpoint to answer.
const PEER_WAIT: Duration = Duration::from_secs(120);
const CHAIN_WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(500);

pub use sosna_init::health::SlotHealth;

/// The parts of the node the check looks at, besides RAUC; each is checked only when
/// this node runs it.
pub struct Probes {
    /// The container runtime: a probe container must start and exit as expected.
    pub runtime: Option<Runtime>,
    /// The bus, once started, when the config names peers to join: one must connect.
    pub bus: Option<watch::Receiver<Option<Bus>>>,
    /// The chain: its endpoint must answer with the deployment's chain id.
    pub chain: Option<ChainConfig>,
}

/// Checks this boot and marks its slot; reboots when it is bad. Prints one
/// `SOSNA OTA slot=… version=… state=…` line for operators and tests, and publishes
/// the outcome on `verdict`.
pub async fn after_boot(probes: Probes, verdict: watch::Sender<SlotHealth>) {
    let Some(slot) = super::booted_slot() else {
        verdict.send_replace(SlotHealth::Good);
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
        verdict.send_replace(SlotHealth::Good);
        return;
    }
    tracing::info!("ota: slot {slot} is on trial; checking health");
    let checked = match check(slot, &probes).await {
        Ok(rauc) => rauc.mark_booted(true).await.map_err(HealthError::MarkGood),
        Err(why) => Err(why),
    };
    drop(probes);
    match checked {
        Ok(msg) => {
            tracing::info!("ota: {msg}");
            println!("SOSNA OTA slot={slot} version={version} state=good");
            verdict.send_replace(SlotHealth::Good);
        }
        Err(why) => {
            let why = why.to_string();
            println!("SOSNA OTA slot={slot} version={version} state=bad reason={why}");
            verdict.send_replace(SlotHealth::Bad(why));
            mark_bad(slot, esp).await;
            tracing::error!("ota: slot {slot} failed its health check; rebooting");
            let reboot = sosna_init::power::signal_for(sosna_init::power::PowerRequest::Reboot);
            if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), reboot) {
                tracing::error!("ota: reboot: {e}");
            }
        }
    }
}

/// The health check: the agent reached READY (this runs after it); RAUC answers on the
/// bus and agrees which slot booted; a container starts and exits as it should; the bus
/// reaches a peer; the chain answers as the deployment's chain (and, on test images, the
/// test flag is absent).
async fn check(slot: char, probes: &Probes) -> Result<Rauc, HealthError> {
    #[cfg(feature = "fault-injection")]
    if Path::new(super::HEALTH_FAIL_FLAG).exists() {
        return Err(HealthError::TestFlag(super::HEALTH_FAIL_FLAG));
    }
    let rauc = Rauc::connect(RAUC_WAIT).await?;
    let booted = rauc.booted().await?;
    if booted != slot.to_string() {
        return Err(HealthError::OtherSlot {
            rauc: booted,
            kernel: slot,
        });
    }
    let slots = rauc.slots().await?;
    rauc::booted_slot(&slots, &booted)?;
    if let Some(rt) = &probes.runtime {
        sosna_runtime::probe::run(rt).await?;
        tracing::info!("ota: health: a probe container ran");
    }
    if let Some(bus) = &probes.bus {
        let peers = peer_joined(bus.clone(), PEER_WAIT).await?;
        tracing::info!("ota: health: bus connected to {peers} peers");
    }
    if let Some(chain) = &probes.chain {
        let id = chain_answers(chain, CHAIN_WAIT).await?;
        tracing::info!("ota: health: chain {id} answers");
    }
    Ok(rauc)
}

/// Why a boot failed its health check; the text is the `reason=` operators see.
#[derive(Debug, thiserror::Error)]
enum HealthError {
    #[cfg(feature = "fault-injection")]
    #[error("{0} present")]
    TestFlag(&'static str),
    #[error(transparent)]
    Rauc(#[from] rauc::RaucError),
    #[error("mark good: {0}")]
    MarkGood(rauc::RaucError),
    #[error("RAUC says slot {rauc:?} booted, the kernel says {kernel}")]
    OtherSlot { rauc: String, kernel: char },
    #[error(transparent)]
    Probe(#[from] sosna_runtime::probe::ProbeError),
    #[error("the bus did not start within {0:?}")]
    BusDown(Duration),
    #[error("bus: {last} within {wait:?}")]
    NoPeer { last: String, wait: Duration },
    #[error(transparent)]
    Chain(#[from] sosna_chain::ChainError),
    #[error("chain {url}: chain id {got}, the deployment is for {want}")]
    WrongChain { url: String, got: u64, want: u64 },
    #[error("chain {url}: {last} within {wait:?}")]
    ChainSilent {
        url: String,
        last: String,
        wait: Duration,
    },
}

/// Waits until the bus has started and holds a connection to some peer.
async fn peer_joined(
    mut bus: watch::Receiver<Option<Bus>>,
    wait: Duration,
) -> Result<usize, HealthError> {
    let deadline = tokio::time::Instant::now() + wait;
    let handle = match tokio::time::timeout_at(deadline, bus.wait_for(Option::is_some)).await {
        Ok(Ok(b)) => b.clone().expect("waited for Some"),
        Ok(Err(_)) | Err(_) => return Err(HealthError::BusDown(wait)),
    };
    loop {
        let last = match handle.status().await {
            Ok(s) if s.connected > 0 => return Ok(s.connected),
            Ok(_) => "no peer connected".to_owned(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(HealthError::NoPeer { last, wait });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the chain's endpoint answers with the deployment's chain id.
async fn chain_answers(cfg: &ChainConfig, wait: Duration) -> Result<u64, HealthError> {
    use alloy_provider::Provider;
    let want = sosna_chain::deployment(cfg)?.chain_id;
    let provider = sosna_chain::connect(&cfg.rpc_url, cfg.timeout())?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = match provider.get_chain_id().await {
            Ok(id) if id == want => return Ok(id),
            Ok(id) => {
                return Err(HealthError::WrongChain {
                    url: cfg.rpc_url.clone(),
                    got: id,
                    want,
                })
            }
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(HealthError::ChainSilent {
                url: cfg.rpc_url.clone(),
                last,
                wait,
            });
        }
        tokio::time::sleep(POLL).await;
    }
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
