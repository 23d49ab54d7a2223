//! The container runtime: pulls images, turns tasks into OCI bundles, runs each container
//! under its own [`shim`] process, and keeps the record operators and the market read.
//!
//! State lives under `STATE_DIR/runtime`: `store/` (blobs, layers, refs) and
//! `containers/ID/` (bundle, plan, logs, outcome). libcontainer's own state is in `/run`.

pub mod api;
pub mod build;
pub mod caps;
pub mod idmap;
pub mod network;
pub mod probe;
pub mod pull;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod store;
pub mod tls;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use shim::Outcome;
use sosna_init::reaper::Reaper;
pub use sosna_proto::task::{self, TaskSpec};
use store::{Digest, ImageRecord, Store};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Pull(#[from] pull::PullError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error(transparent)]
    Task(#[from] task::TaskError),
    #[error(transparent)]
    OverCap(#[from] caps::OverCap),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("no container {0:?}")]
    NoSuchContainer(String),
    #[error("container {0} is still running (kill it first, or force)")]
    Running(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Network(#[from] network::NetworkError),
    #[error("start shim for {id}: {source}")]
    Shim { id: String, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `STATE_DIR/runtime`.
    pub root: PathBuf,
    /// libcontainer's state (tmpfs: nothing there survives a reboot anyway).
    pub run_dir: PathBuf,
    /// The `sosna` executable that provides `sosna shim`.
    pub shim_exe: PathBuf,
    pub insecure_registries: Vec<String>,
    pub log_cap_bytes: u64,
    /// OCI architecture to pull (`amd64`, `arm64`).
    pub arch: String,
    /// The most any task gets here.
    pub caps: caps::TaskCaps,
}

/// What operators see of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub image: String,
    pub created: u64,
    pub running: bool,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub outcome: Option<Outcome>,
}

struct Entry {
    task: TaskSpec,
    image: ImageRecord,
    created: u64,
    shim_pid: Option<u32>,
    restarts: u32,
    /// Set by kill: an operator's stop is not a crash to restart from.
    stopped: bool,
    /// Its addresses under `network = "nat"` (kept across restarts).
    net: Option<network::NatPlan>,
    outcome: watch::Sender<Option<Outcome>>,
}

#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RuntimeConfig,
    store: Store,
    /// Built at the first pull: loading trust roots is off the boot path.
    client: std::sync::OnceLock<oci_client::Client>,
    reaper: Reaper,
    containers: Mutex<BTreeMap<String, Entry>>,
    pull_lock: tokio::sync::Mutex<()>,
    /// The host's NAT table, installed when the first NAT container starts: the
    /// nameservers containers are given.
    nat: tokio::sync::OnceCell<Vec<std::net::Ipv4Addr>>,
    /// Held while a NAT container's addresses are chosen and recorded.
    nat_alloc: tokio::sync::Mutex<()>,
}

impl Runtime {
    /// Opens the store and forgets containers from an earlier run of the agent, after
    /// undoing whatever their shims could not (mounts, cgroups).
    pub fn open(cfg: RuntimeConfig, reaper: Reaper) -> Result<Runtime, RuntimeError> {
        let store = Store::open(cfg.root.join("store"))?;
        let cdir = cfg.root.join("containers");
        fs::create_dir_all(&cdir).map_err(io_err(&cdir))?;
        // A task's root (an unprivileged host uid) must reach its bundle's root.
        idmap::make_traversable(&cdir).map_err(io_err(&cdir))?;
        fs::create_dir_all(&cfg.run_dir).map_err(io_err(&cfg.run_dir))?;
        for entry in fs::read_dir(&cdir).map_err(io_err(&cdir))?.flatten() {
            for m in ["rootfs", "scratch"] {
                let _ =
                    nix::mount::umount2(&entry.path().join(m), nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = fs::remove_dir_all(entry.path());
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                cfg,
                store,
                client: std::sync::OnceLock::new(),
                reaper,
                containers: Mutex::new(BTreeMap::new()),
                pull_lock: tokio::sync::Mutex::new(()),
                nat: tokio::sync::OnceCell::new(),
                nat_alloc: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The most any task gets here.
    pub fn caps(&self) -> &caps::TaskCaps {
        &self.inner.cfg.caps
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Pulls `reference` (even if present: tags move) and unpacks its layers.
    pub async fn pull(
        &self,
        reference: &str,
        progress: &(dyn Fn(pull::PullEvent) + Send + Sync),
    ) -> Result<ImageRecord, RuntimeError> {
        let _one_at_a_time = self.inner.pull_lock.lock().await;
        let client = match self.inner.client.get() {
            Some(c) => c,
            None => {
                let c = pull::client(&self.inner.cfg.insecure_registries)?;
                self.inner.client.get_or_init(|| c)
            }
        };
        let rec = pull::pull(
            client,
            &self.inner.store,
            reference,
            &self.inner.cfg.arch,
            progress,
        )
        .await?;
        self.unpack(&rec).await?;
        Ok(rec)
    }

    /// Stores a locally built image under `reference`, as a pull would, and unpacks it:
    /// how the node gets images it makes itself (see [`probe`]) without a registry.
    pub async fn import(
        &self,
        reference: &str,
        image: &build::Image,
    ) -> Result<ImageRecord, RuntimeError> {
        // Pulls also write blobs, unpack and rewrite the refs: one writer at a time.
        let _one_at_a_time = self.inner.pull_lock.lock().await;
        let store = &self.inner.store;
        let mut layers = Vec::new();
        let mut size = 0;
        for (blob, _) in &image.layers {
            let d = store::Digest::of(blob);
            store.put_blob(&d, blob)?;
            size += blob.len() as u64;
            layers.push(d);
        }
        let config = image.config_json();
        let manifest = image.manifest_json(&config);
        let rec = ImageRecord {
            reference: reference.to_owned(),
            manifest: store::Digest::of(&manifest),
            config: store::Digest::of(&config),
            layers,
            size: size + (config.len() + manifest.len()) as u64,
        };
        store.put_blob(&rec.config, &config)?;
        store.put_blob(&rec.manifest, &manifest)?;
        self.unpack(&rec).await?;
        store.set_ref(&rec)?;
        Ok(rec)
    }

    /// The image for a task: the stored one if complete, else pulled now.
    async fn image_for(&self, reference: &str) -> Result<ImageRecord, RuntimeError> {
        if let Some(rec) = self.inner.store.image(reference)? {
            let complete = rec
                .layers
                .iter()
                .all(|l| self.inner.store.layer_dir(l).is_dir());
            if complete && self.inner.store.has_blob(&rec.config) {
                return Ok(rec);
            }
        }
        self.pull(reference, &|_| {}).await
    }

    async fn unpack(&self, rec: &ImageRecord) -> Result<(), RuntimeError> {
        let store = self.inner.store.clone();
        let layers = rec.layers.clone();
        tokio::task::spawn_blocking(move || {
            for l in &layers {
                unpack::unpack_layer(&store.blob_path(l), &store.layer_dir(l))?;
            }
            Ok::<_, RuntimeError>(())
        })
        .await
        .expect("unpack task panicked")
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, RuntimeError> {
        Ok(self.inner.store.refs()?.into_values().collect())
    }

    /// Forgets `reference`; its content goes at the next [`Runtime::gc`].
    pub fn remove_image(&self, reference: &str) -> Result<bool, RuntimeError> {
        Ok(self.inner.store.remove_ref(reference)?)
    }

    /// Deletes content no image or container uses.
    pub fn gc(&self) -> Result<store::GcReport, RuntimeError> {
        let pinned: BTreeSet<Digest> = self
            .lock()
            .values()
            .flat_map(|e| {
                let i = &e.image;
                [i.manifest.clone(), i.config.clone()]
                    .into_iter()
                    .chain(i.layers.iter().cloned())
            })
            .collect();
        Ok(self.inner.store.gc(&pinned)?)
    }

    /// Creates and starts a container for `task`; returns its id at once.
    pub async fn run(&self, mut task: TaskSpec) -> Result<String, RuntimeError> {
        task.validate()?;
        self.inner.cfg.caps.apply(&mut task)?;
        let image = self.image_for(&task.image).await?;
        let config = self.inner.store.read_blob(&image.config)?;
        let defaults = spec::ImageDefaults::from_config(&config)?;
        let id = new_id();
        let cgroup = format!("/sosna/{id}");
        let mut spec = spec::build(&id, &task, &defaults, &cgroup)?;
        let dir = self.container_dir(&id);
        let alloc_guard = self.inner.nat_alloc.lock().await;
        let nat = match task.network {
            task::NetworkMode::None => None,
            task::NetworkMode::Nat => match self.prepare_nat(&id, &dir, &mut spec).await {
                Ok(n) => Some(n),
                Err(e) => {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
            },
        };
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let plan = shim::Plan {
            id: id.clone(),
            runtime_root: self.inner.cfg.run_dir.clone(),
            lowers: image
                .layers
                .iter()
                .rev()
                .map(|l| self.inner.store.layer_dir(l))
                .collect(),
            timeout_secs: task.timeout_secs,
            scratch_bytes: self.inner.cfg.caps.scratch_bytes,
            log_cap_bytes: self.inner.cfg.log_cap_bytes,
            cgroup_path: cgroup,
            nat,
        };
        let write = |name: &str, json: Vec<u8>| {
            let p = dir.join(name);
            fs::write(&p, json).map_err(io_err(&p))
        };
        let prepared = write(
            "config.json",
            serde_json::to_vec_pretty(&spec).expect("spec"),
        )
        .and_then(|()| write(shim::PLAN, serde_json::to_vec_pretty(&plan).expect("plan")));
        if let Err(e) = prepared {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        let (tx, _) = watch::channel(None);
        let net = plan.nat.clone();
        self.lock().insert(
            id.clone(),
            Entry {
                task,
                image,
                created: unix_now(),
                shim_pid: None,
                restarts: 0,
                stopped: false,
                outcome: tx,
                net,
            },
        );
        drop(alloc_guard);
        if let Err(e) = self.start_shim(&id) {
            self.lock().remove(&id);
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(id)
    }

    /// Installs the host's NAT once (the first NAT container), then the container's link.
    async fn prepare_nat(
        &self,
        id: &str,
        dir: &Path,
        spec: &mut oci_spec::runtime::Spec,
    ) -> Result<network::NatPlan, RuntimeError> {
        let dns = self
            .inner
            .nat
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(network::install_nat)
                    .await
                    .expect("NAT setup panicked")
            })
            .await?;
        let planned: Vec<_> = (self.lock().values())
            .filter_map(|e| e.net.as_ref().map(|n| n.host_addr))
            .collect();
        Ok(network::prepare(id, dir, spec, dns, planned).await?)
    }

    fn start_shim(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id);
        let _ = fs::remove_file(dir.join(shim::OUTCOME));
        let _ = fs::remove_file(dir.join(shim::PID));
        let _ = fs::remove_file(dir.join(shim::KILL));
        let log = dir.join("shim.log");
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err(&log))?;
        let mut cmd = Command::new(&self.inner.cfg.shim_exe);
        cmd.arg("shim")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let (pid, exited) =
            self.inner
                .reaper
                .spawn(&mut cmd)
                .map_err(|source| RuntimeError::Shim {
                    id: id.into(),
                    source,
                })?;
        if let Some(e) = self.lock().get_mut(id) {
            e.shim_pid = Some(pid);
        }
        let rt = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let exit = exited.await;
            rt.shim_exited(&id, exit.ok()).await;
        });
        Ok(())
    }

    async fn shim_exited(&self, id: &str, exit: Option<sosna_init::reaper::Exit>) {
        let dir = self.container_dir(id);
        let outcome = match fs::read(dir.join(shim::OUTCOME)) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| Outcome {
                error: Some(format!("unreadable outcome: {e}")),
                ..Default::default()
            }),
            Err(_) => {
                let log = fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or("no log").to_string();
                Outcome {
                    error: Some(format!(
                        "shim ended ({}) without an outcome: {last}",
                        exit.map_or("unknown".into(), |e| e.to_string())
                    )),
                    ..Default::default()
                }
            }
        };
        tracing::info!("container {id}: {outcome}");
        let restart_in = {
            let mut map = self.lock();
            let Some(e) = map.get_mut(id) else { return };
            e.shim_pid = None;
            let again = !e.stopped
                && match e.task.restart {
                    task::Restart::Never => false,
                    task::Restart::OnFailure => outcome.exit_code != Some(0),
                    task::Restart::Always => true,
                };
            e.outcome.send_replace(Some(outcome));
            again.then(|| {
                e.restarts += 1;
                // 100 ms doubling to 30 s: a crash loop costs little.
                Duration::from_millis(100u64 << e.restarts.min(9)).min(Duration::from_secs(30))
            })
        };
        if let Some(delay) = restart_in {
            tokio::time::sleep(delay).await;
            if self.lock().get(id).is_some_and(|e| !e.stopped) {
                if let Err(e) = self.start_shim(id) {
                    tracing::error!("restart {id}: {e}");
                }
            }
        }
    }

    /// Waits until the container's current run ends.
    pub async fn wait(&self, id: &str) -> Result<Outcome, RuntimeError> {
        let mut rx = self
            .lock()
            .get(id)
            .map(|e| e.outcome.subscribe())
            .ok_or_else(|| RuntimeError::NoSuchContainer(id.into()))?;
        loop {
            if let Some(o) = rx.borrow_and_update().clone() {
                if self.lock().get(id).is_none_or(|e| e.shim_pid.is_none()) {
                    return Ok(o);
                }
            }
            if rx.changed().await.is_err() {
                return Err(RuntimeError::NoSuchContainer(id.into()));
            }
        }
    }

    pub fn ps(&self) -> Vec<ContainerInfo> {
        self.lock()
            .iter()
            .map(|(id, e)| ContainerInfo {
                id: id.clone(),
                image: e.image.reference.clone(),
                created: e.created,
                running: e.shim_pid.is_some(),
                pid: e.shim_pid.and_then(|_| self.container_pid(id)),
                restarts: e.restarts,
                outcome: e.outcome.borrow().clone(),
            })
            .collect()
    }

    /// Bytes of stdout (and of stderr) kept per container.
    pub fn log_cap_bytes(&self) -> u64 {
        self.inner.cfg.log_cap_bytes
    }

    /// Output so far: (stdout, stderr).
    pub fn logs(&self, id: &str) -> Result<(Vec<u8>, Vec<u8>), RuntimeError> {
        if !self.lock().contains_key(id) {
            return Err(RuntimeError::NoSuchContainer(id.into()));
        }
        let dir = self.container_dir(id);
        let read = |n: &str| fs::read(dir.join(n)).unwrap_or_default();
        Ok((read(shim::STDOUT), read(shim::STDERR)))
    }

    /// Signals the container's init; it also stops the restart policy.
    pub fn kill(&self, id: &str, signal: i32) -> Result<bool, RuntimeError> {
        let running = {
            let mut map = self.lock();
            let e = map
                .get_mut(id)
                .ok_or_else(|| RuntimeError::NoSuchContainer(id.into()))?;
            e.stopped = true;
            e.shim_pid.is_some()
        };
        if !running {
            return Ok(false);
        }
        // The shim writes the pid, then reads this file; we write the file, then read the
        // pid. Whatever the interleaving, one side delivers the signal.
        let dir = self.container_dir(id);
        let _ = fs::write(dir.join(shim::KILL), signal.to_string());
        Ok(self
            .container_pid(id)
            .is_some_and(|pid| send_signal(pid, signal)))
    }

    /// Deletes a stopped container and its logs; `force` kills a running one first.
    pub async fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let running = self
            .lock()
            .get(id)
            .map(|e| e.shim_pid.is_some())
            .ok_or_else(|| RuntimeError::NoSuchContainer(id.into()))?;
        if running {
            if !force {
                return Err(RuntimeError::Running(id.into()));
            }
            self.kill(id, libc::SIGKILL)?;
            self.wait(id).await?;
        }
        self.lock().remove(id);
        let dir = self.container_dir(id);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))
    }

    /// Kills every container and waits for their shims (agent shutdown).
    pub async fn stop_all(&self) {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in &ids {
            let _ = self.kill(id, libc::SIGKILL);
        }
        for id in &ids {
            let _ = self.wait(id).await;
        }
        if self.inner.nat.initialized() {
            match tokio::task::spawn_blocking(network::remove_nat).await {
                Ok(Err(e)) => tracing::warn!("remove container NAT: {e}"),
                _ => tracing::info!("container NAT removed"),
            }
        }
    }

    fn container_pid(&self, id: &str) -> Option<i32> {
        fs::read_to_string(self.container_dir(id).join(shim::PID))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.inner.cfg.root.join("containers").join(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.inner
            .containers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Signals through a pidfd so a recycled pid can never receive it.
pub(crate) fn send_signal(pid: i32, signal: i32) -> bool {
    // SAFETY: plain syscalls on integers; the fd is closed below.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            return false;
        }
        let r = libc::syscall(libc::SYS_pidfd_send_signal, fd, signal, 0usize, 0);
        libc::close(fd);
        r == 0
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 16 hex digits, unique per agent: time, pid and a counter hashed (no RNG needed at boot).
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{nanos}/{}/{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    Digest::of(seed.as_bytes()).hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_valid_for_libcontainer() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
