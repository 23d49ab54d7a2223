//! A container runtime over a local registry holding a busybox image, shared by the
//! market tests. Needs root, like the runtime's own tests.

use std::path::Path;

use crate::registry::LocalRegistry;
use sosna_init::reaper::Reaper;
use sosna_runtime::build::{busybox_layer, Image};
use sosna_runtime::{build, pull, Runtime, RuntimeConfig};

/// One fixture at a time: each has its own reaper, and two reapers in one process would
/// reap each other's shims.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A runtime with a busybox image pushed to a local registry.
pub struct Fixture {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    _dir: tempfile::TempDir,
    _registry: LocalRegistry,
    pub registry_host: String,
    pub reference: String,
    pub rt: Runtime,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// A runtime whose containers run under `shim` (the `sosna` binary), with a busybox
/// image pushed to a local registry. Needs root.
pub async fn fixture(shim: impl AsRef<Path>) -> Fixture {
    fixture_after(shim, |_| async {}).await.0
}

/// Starts the registry, runs `setup` (given the registry's `host:port`), then builds the
/// fixture. Whatever spawns and waits for child processes (anvil, forge) must run in
/// `setup`: once the fixture's reaper runs, it reaps every child of this process, and
/// `std::process` waits would find theirs gone.
pub async fn fixture_after<T, F: std::future::Future<Output = T>>(
    shim: impl AsRef<Path>,
    setup: impl FnOnce(String) -> F,
) -> (Fixture, T) {
    crate::require::root();
    let serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start(&dir.path().join("registry")).unwrap();
    let before = setup(registry.host()).await;
    let reference = format!("{}/busybox:task", registry.host());
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (./dev deps)");
    let applets = ["sh", "echo", "seq", "wc", "yes", "head", "sleep"];
    let (layer, diff) = busybox_layer(busybox, &applets).finish();
    let image = Image {
        arch: pull::host_arch().into(),
        layers: vec![(layer, diff)],
        cmd: vec!["/bin/sh".into()],
        env: vec![],
    };
    build::push(
        &pull::client(&[registry.host()]).unwrap(),
        &reference,
        &[image],
    )
    .await
    .unwrap();
    let reaper = Reaper::new();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(reaper.clone().run(stop_rx));
    let rt = Runtime::open(
        RuntimeConfig {
            root: dir.path().join("runtime"),
            run_dir: dir.path().join("run"),
            shim_exe: shim.as_ref().to_owned(),
            insecure_registries: vec![registry.host()],
            log_cap_bytes: 64 * 1024,
            arch: pull::host_arch().into(),
            caps: sosna_runtime::caps::TaskCaps::default(),
        },
        reaper,
    )
    .unwrap();
    let fixture = Fixture {
        _serial: serial,
        _dir: dir,
        registry_host: registry.host(),
        _registry: registry,
        reference,
        rt,
        _stop: stop,
    };
    (fixture, before)
}
