//! A miner running buyers' tasks through the real runtime: images from a local registry,
//! containers through libcontainer, results as bundles whose digests replicas compare.
//! Needs root, like the runtime's own tests.

use std::time::Duration;

use sosna_agent::market::work::{execute, WorkError};
use sosna_agent::reaper::Reaper;
use sosna_agent::runtime::build::{self, busybox_layer, Image};
use sosna_agent::runtime::registry::LocalRegistry;
use sosna_agent::runtime::task::TaskSpec;
use sosna_agent::runtime::{pull, Runtime, RuntimeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tasks_run_into_bundles_replicas_can_compare() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: container tests need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start(&dir.path().join("registry")).unwrap();
    let reference = format!("{}/busybox:task", registry.host());
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (./dev deps)");
    let (layer, diff) = busybox_layer(
        busybox,
        &["sh", "echo", "seq", "wc", "yes", "head", "sleep"],
    )
    .finish();
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
            shim_exe: env!("CARGO_BIN_EXE_sosna").into(),
            insecure_registries: vec![registry.host()],
            log_cap_bytes: 4096,
            arch: pull::host_arch().into(),
        },
        reaper,
    )
    .unwrap();
    let task = |script: &str| TaskSpec {
        image: reference.clone(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        timeout_secs: 20,
        ..TaskSpec::default()
    };

    // Two replicas of one task: same bundle, same digest.
    let a = execute(&rt, task("seq 1 5 | wc -l; echo done"))
        .await
        .unwrap();
    let b = execute(&rt, task("seq 1 5 | wc -l; echo done"))
        .await
        .unwrap();
    assert_eq!(a.exit_code, 0);
    assert_eq!(String::from_utf8_lossy(&a.stdout), "5\ndone\n");
    assert_eq!(a.digest(), b.digest());
    // stderr is not part of the result; the exit code is.
    let noisy = execute(&rt, task("seq 1 5 | wc -l; echo done; echo $$ >&2"))
        .await
        .unwrap();
    assert_eq!(noisy.digest(), a.digest());
    let failed = execute(&rt, task("echo done; exit 3")).await.unwrap();
    assert_eq!(failed.exit_code, 3);
    assert_ne!(failed.digest(), a.digest());

    // No result to vote on: too much output, or killed by the timeout.
    let big = execute(&rt, task("yes | head -c 10000")).await.unwrap_err();
    assert!(
        matches!(big, WorkError::TooLarge { cap: 4096, .. }),
        "{big}"
    );
    let mut slow = task("sleep 30");
    slow.timeout_secs = 1;
    let killed = tokio::time::timeout(Duration::from_secs(30), execute(&rt, slow))
        .await
        .expect("the timeout ends the task")
        .unwrap_err();
    assert!(
        matches!(&killed, WorkError::Killed(why) if why == "timeout"),
        "{killed}"
    );
    // A reference that does not exist is an error, not a result.
    let mut missing = task("true");
    missing.image = format!("{}/nothing:here", registry.host());
    assert!(execute(&rt, missing).await.is_err());

    // Every task container is gone afterwards.
    assert!(rt.ps().is_empty(), "{:?}", rt.ps());
    let _ = stop.send(true);
}
