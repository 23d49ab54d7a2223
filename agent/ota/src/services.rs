//! The OTA helpers PID 1 starts on the disk image: dbus-daemon (the system bus) and, once
//! its socket is there, `rauc service`. Both run under the ordinary [`Supervisor`].

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use sosna_init::reaper::Reaper;
use sosna_init::supervisor::Supervisor;
use sosna_init::supervisor::{RestartPolicy, ServiceConfig};

pub const DBUS_CONF: &str = "/etc/sosna/dbus-system.conf";
pub const DBUS_SOCKET: &str = "/run/dbus/system_bus_socket";
/// Writable directories RAUC and dbus need; the root itself is read-only.
const DIRS: &[&str] = &[
    "/run/dbus",
    "/run/rauc",
    "/var/lib/sosna/rauc",
    super::INSTALLED_DIR,
];
const SOCKET_WAIT: Duration = Duration::from_secs(30);

fn service(name: &str, command: &[&str], env: &[&str]) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|s| s.to_string()).collect(),
        restart: RestartPolicy::Always,
        fast_crash_ms: 10_000,
        max_fast_crashes: 5,
        backoff_ms: 200,
        max_backoff_ms: 30_000,
    }
}

pub struct OtaServices {
    dbus: Supervisor,
    rauc: JoinHandle<Option<Supervisor>>,
}

impl OtaServices {
    pub fn start(reaper: &Reaper, grace: Duration) -> OtaServices {
        for d in DIRS {
            if let Err(e) = std::fs::create_dir_all(d) {
                tracing::error!("ota: create {d}: {e}");
            }
        }
        if let Err(e) = partition_links() {
            tracing::error!("ota: partition links: {e}");
        }
        let dbus = service(
            "dbus",
            &[
                "/usr/bin/dbus-daemon",
                "--nofork",
                "--nopidfile",
                &format!("--config-file={DBUS_CONF}"),
            ],
            &[],
        );
        let dbus = Supervisor::start(reaper, &[dbus], grace);
        let reaper = reaper.clone();
        let rauc = tokio::spawn(async move {
            let deadline = Instant::now() + SOCKET_WAIT;
            while !Path::new(DBUS_SOCKET).exists() {
                if Instant::now() >= deadline {
                    tracing::error!("ota: no system bus at {DBUS_SOCKET}; RAUC not started");
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let bus = format!("DBUS_SYSTEM_BUS_ADDRESS={}", super::rauc::SYSTEM_BUS);
            // RAUC runs `mount` and its handlers by name.
            let path = "PATH=/usr/bin:/sbin";
            let rauc = service("rauc", &["/usr/bin/rauc", "service"], &[&bus, path]);
            Some(Supervisor::start(&reaper, &[rauc], grace))
        });
        OtaServices { dbus, rauc }
    }

    pub async fn stop(self) {
        self.rauc.abort();
        if let Ok(Some(rauc)) = self.rauc.await {
            rauc.stop().await;
        }
        self.dbus.stop().await;
    }
}

/// Why the partition links RAUC needs could not be made.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("no sosna.esp on the kernel command line")]
    NoEsp,
    #[error(transparent)]
    Gpt(#[from] sosna_init::boot::gpt::GptError),
    #[error("{}: no GPT", .0.display())]
    NoGpt(std::path::PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// `/dev/disk/by-partlabel/LABEL` for every partition on the disk that holds the ESP
/// (there is no udev): RAUC's slots name their devices this way.
fn partition_links() -> Result<(), LinkError> {
    use sosna_init::boot::gpt;
    let boot = sosna_init::cmdline::BootArgs::from_proc().0;
    let esp = boot.disk.esp.ok_or(LinkError::NoEsp)?;
    let found = gpt::find(&esp, Duration::ZERO)?;
    let table = gpt::read_table(&found.disk)?.ok_or(LinkError::NoGpt(found.disk.clone()))?;
    let dir = Path::new("/dev/disk/by-partlabel");
    std::fs::create_dir_all(dir).map_err(|source| LinkError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for p in table
        .iter()
        .filter(|p| !p.label.is_empty() && !p.label.contains('/'))
    {
        let node = gpt::find(&p.uuid, Duration::ZERO)?;
        let link = dir.join(&p.label);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&node.node, &link)
            .map_err(|source| LinkError::Io { path: link, source })?;
    }
    Ok(())
}
