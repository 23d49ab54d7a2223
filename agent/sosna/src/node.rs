//! The agent's long-running core, shared by PID 1 and the host daemon: reaper, network
//! (PID 1 only), supervised services, the READY line, and waiting for a power request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use sosna_init::net::{self, Iface, Netlink, UplinkMode};
use sosna_init::power::{PowerRequest, PowerSignals};
use sosna_init::reaper::Reaper;
use sosna_init::status;
use sosna_init::supervisor::Supervisor;
use sosna_init::watchdog::Watchdog;
use sosna_ota::health::{Probes, SlotHealth};
use sosna_runtime::{self as runtime, Runtime, RuntimeConfig};

/// Time the parts get to stop, on top of the processes' grace period.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(20);

/// Whether this process owns the machine (PID 1) or is a guest on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Init,
    Daemon,
}

/// Runs until a power request arrives, then stops services and the reaper.
/// `watchdog`, when the early stage armed one, is petted from here on.
pub async fn run(
    config: &Config,
    mode: Mode,
    watchdog: Option<Watchdog>,
) -> std::io::Result<PowerRequest> {
    // Signal handlers first: no child may exit, and no request arrive, unobserved.
    let mut signals = PowerSignals::install(mode == Mode::Init)?;
    let reaper = Reaper::new();
    let (stop_reaper, stop_rx) = watch::channel(false);
    let reaper_task = tokio::spawn(reaper.clone().run(stop_rx));
    // The verdict on the booted slot: settled at once where there are no slots.
    let slots = mode == Mode::Init && sosna_ota::present();
    let (verdict, health) = watch::channel(if slots {
        SlotHealth::Checking
    } else {
        SlotHealth::Good
    });
    if slots {
        // Once the slot is good, a fatal error no longer needs to reboot to fall back.
        let mut settled = health.clone();
        tokio::spawn(async move {
            if settled.wait_for(|h| *h == SlotHealth::Good).await.is_ok() {
                sosna_init::shutdown::set_on_trial(false);
            }
        });
    }
    let (stop_petting, petting) = watch::channel(false);
    let petter =
        watchdog.map(|wd| tokio::spawn(sosna_init::watchdog::keep(wd, health.clone(), petting)));

    if mode == Mode::Init {
        bring_up_network(config).await;
    }
    // PID 1 owns the clock; on a host, the host does.
    let (stop_clock, clock_stop) = watch::channel(false);
    let clock = match mode {
        Mode::Init => sosna_init::clock::keep(&config.time, clock_stop),
        Mode::Daemon => watch::channel(true).1,
    };
    let grace = Duration::from_secs(config.power.stop_timeout_secs);
    let runtime = config
        .runtime
        .enabled
        .then(|| start_runtime(config, &reaper))
        .flatten();
    let supervisor = Supervisor::start(&reaper, &config.services, grace);
    // The disk image's update path: dbus-daemon and RAUC (absent on the fast-path image).
    let ota = slots.then(|| sosna_ota::services::OtaServices::start(&reaper, grace));
    // The runtime, if any, is the slave's `node` service.
    let node_service = runtime.iter().map(|rt| {
        let apps = sosna_slave::apps::RuntimeApps::new(rt.clone());
        Arc::new(sosna_slave::node::NodeService(Arc::new(apps)))
            as Arc<dyn sosna_slave::session::Service>
    });
    let slave =
        sosna_slave::start_or_log(&config.slave, &config.state_dir, node_service.collect()).await;
    let slave_services = slave.as_ref().map(|s| s.services.clone());
    let bus =
        crate::roles::start_if_enabled(config, runtime.clone(), health, slave_services, clock);
    println!("{}", status::ready_line());
    if ota.is_some() {
        // Peers are required only when the config names some to join.
        let peers_named = !config.bus.bootstrap.is_empty();
        let probes = Probes {
            runtime: runtime.clone(),
            bus: bus.as_ref().filter(|_| peers_named).map(|b| b.handle()),
            chain: config.chain.enabled().then(|| config.chain.clone()),
        };
        tokio::spawn(sosna_ota::health::after_boot(probes, verdict));
    }
    if mode == Mode::Init {
        // Each module costs a signature check; those not needed for READY load after it.
        let loader = std::thread::Builder::new().name("modules".into());
        if let Err(e) =
            loader.spawn(|| sosna_init::kmod::load_and_log(sosna_init::kmod::DEFERRED_LIST))
        {
            tracing::error!("start module loader: {e}");
        }
    }

    #[cfg(feature = "fault-injection")]
    fault_injection::after_ready();

    let (req, why) = signals.next(config.power.ctrl_alt_del).await;
    tracing::info!("{why}: shutting down");
    // However the parts behave, the machine goes down: a hung chain retry or container
    // wait gets the deadline, then the final stage kills what is left.
    let deadline = grace + SHUTDOWN_SLACK;
    let stopping = async {
        if let Some(rt) = runtime {
            rt.stop_all().await;
        }
        if let Some(slave) = slave {
            slave.stop().await;
        }
        if let Some(bus) = bus {
            bus.stop().await;
        }
        supervisor.stop().await;
        if let Some(ota) = ota {
            ota.stop().await;
        }
    };
    if tokio::time::timeout(deadline, stopping).await.is_err() {
        tracing::error!("shutdown: parts still stopping after {deadline:?}; going down anyway");
    }
    let _ = stop_clock.send(true);
    let _ = stop_reaper.send(true);
    let _ = reaper_task.await;
    let _ = stop_petting.send(true);
    if let Some(p) = petter {
        let _ = p.await;
    }
    Ok(req)
}

/// The container runtime and its control socket; a failure leaves the node up without it.
fn start_runtime(config: &Config, reaper: &Reaper) -> Option<Runtime> {
    let cfg = RuntimeConfig {
        root: config.state_dir.join("runtime"),
        run_dir: PathBuf::from("/run/sosna/containers"),
        shim_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
        insecure_registries: config.runtime.insecure_registries.clone(),
        log_cap_bytes: config.runtime.log_cap_bytes,
        arch: runtime::pull::host_arch().into(),
        caps: config.runtime.caps(),
    };
    let rt = match Runtime::open(cfg, reaper.clone()) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("container runtime: {e}");
            return None;
        }
    };
    // Bound before services start, so a service may use the CLI at once.
    let listener = match runtime::api::bind(&config.runtime.socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("control socket: {e}");
            return Some(rt);
        }
    };
    let served = rt.clone();
    tokio::spawn(async move {
        if let Err(e) = runtime::api::serve(listener, served).await {
            tracing::error!("control socket: {e}");
        }
    });
    Some(rt)
}

/// Loopback, hostname, uplink. Failures are logged, not fatal: a node without network can
/// still be reached on its console and fixed by a new provisioning file.
async fn bring_up_network(config: &Config) {
    let nl = match Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            tracing::error!("network: {e}");
            set_hostname(config, None);
            return;
        }
    };
    if let Err(e) = net::loopback_up(&nl).await {
        tracing::error!("loopback: {e}");
    }
    let cfg = &config.network;
    if cfg.mode == UplinkMode::Off {
        set_hostname(config, None);
        tracing::info!("network: off by config");
        return;
    }
    let iface = match net::wait_for_uplink(
        &cfg.interface,
        Duration::from_secs(cfg.link_timeout_secs),
    )
    .await
    {
        Ok(iface) => iface,
        Err(e) => {
            set_hostname(config, None);
            tracing::error!("network: {e}");
            return;
        }
    };
    set_hostname(config, Some(&iface));
    match net::uplink_up(&nl, cfg, iface).await {
        Ok(up) => {
            tracing::info!(
                "network: {} {}/{} via {} ({})",
                up.iface.name,
                up.address,
                up.prefix,
                up.gateway
                    .map_or("no gateway".to_string(), |g| g.to_string()),
                if up.lease.is_some() { "dhcp" } else { "static" }
            );
            let timeout = Duration::from_secs(cfg.dhcp_timeout_secs);
            tokio::spawn(net::keep_lease(nl.clone(), up, timeout));
        }
        Err(e) => tracing::error!("network: {e}"),
    }
    for link in &cfg.links {
        let timeout = Duration::from_secs(cfg.link_timeout_secs);
        match net::static_link_up(&nl, link, timeout).await {
            Ok(()) => tracing::info!("network: {} {} (static)", link.interface, link.address),
            Err(e) => tracing::error!("network: {}: {e}", link.interface),
        }
    }
}

/// The configured hostname, else `sosna-` and the uplink MAC's last three bytes.
pub fn hostname_for(config: &Config, uplink: Option<&Iface>) -> String {
    if !config.hostname.is_empty() {
        return config.hostname.clone();
    }
    match uplink {
        Some(i) => format!("sosna-{:02x}{:02x}{:02x}", i.mac[3], i.mac[4], i.mac[5]),
        None => "sosna".into(),
    }
}

fn set_hostname(config: &Config, uplink: Option<&Iface>) {
    let name = hostname_for(config, uplink);
    match nix::unistd::sethostname(&name) {
        Ok(()) => tracing::info!("hostname: {name}"),
        Err(e) => tracing::warn!("sethostname {name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_comes_from_config_or_mac() {
        let mut c = Config::default();
        let iface = Iface {
            name: "eth0".into(),
            index: 2,
            mac: [0x52, 0x54, 0, 0xab, 0xcd, 0x0e],
        };
        assert_eq!(hostname_for(&c, Some(&iface)), "sosna-abcd0e");
        assert_eq!(hostname_for(&c, None), "sosna");
        c.hostname = "rig-1".into();
        assert_eq!(hostname_for(&c, Some(&iface)), "rig-1");
    }
}

/// Test images only: faults a QEMU test switches on with a file in the image.
#[cfg(feature = "fault-injection")]
mod fault_injection {
    /// A task panics after READY: the node must stay up.
    pub const PANIC_IN_TASK_FLAG: &str = "/etc/sosna/test-panic-in-task";

    pub fn after_ready() {
        if std::path::Path::new(PANIC_IN_TASK_FLAG).exists() {
            tracing::warn!("{PANIC_IN_TASK_FLAG} present: a task panics");
            tokio::spawn(async { panic!("test: a task panics") });
        }
    }
}
