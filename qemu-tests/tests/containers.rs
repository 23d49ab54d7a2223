//! The booted image as a miner's runtime: it pulls from a registry on the host (reached at
//! 10.0.2.2 through QEMU's user network), picks its platform out of a multi-arch index and
//! runs a container under PID 1. Runs for `$SOSNA_ARCH` (x86_64 or aarch64).

use std::time::Duration;

use sosna_qemu_tests::{Arch, Image, Overlay, Vm, VmConfig};
use sosna_runtime::build::{self, busybox_layer, Image as OciImage};
use sosna_runtime::pull;
use sosna_testkit::registry::LocalRegistry;

const BOOT: Duration = Duration::from_secs(120);

#[test]
fn test_image_pulls_from_host_registry_and_runs_a_container() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start(&dir.path().join("registry")).unwrap();
    let image = Image::built().unwrap();
    // A multi-arch index: the guest must pick its own platform out of it.
    let platforms: Vec<OciImage> = [Arch::X86_64, Arch::Aarch64]
        .into_iter()
        .map(|arch| {
            let busybox = arch.busybox().unwrap();
            let applets = ["sh", "echo", "hostname", "cat", "uname"];
            let (layer, diff) = busybox_layer(busybox, &applets).finish();
            OciImage {
                arch: arch.oci().into(),
                layers: vec![(layer, diff)],
                cmd: vec!["/bin/sh".into()],
                env: vec![],
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(build::push(
        &pull::client(&[registry.host()]).unwrap(),
        &format!("{}/busybox:1", registry.host()),
        &platforms,
    ))
    .unwrap();

    // The guest sees the host's loopback registry as 10.0.2.2:PORT.
    let guest_ref = format!("10.0.2.2:{}/busybox:1", registry.port());
    let config = format!(
        r#"
[runtime]
insecure_registries = ["10.0.2.2:{port}"]

[[service]]
name = "task"
command = ["/bin/busybox", "sh", "-c", "/sbin/sosna run {guest_ref} -- sh -c 'echo CONTAINER-MARKER $(uname -m) $(hostname) $(cat /proc/1/cmdline)'; echo RUN-EXIT=$?"]
restart = "never"
"#,
        port = registry.port()
    );
    let overlay = Overlay::default()
        .file("/etc/sosna/config.toml", 0o644, config)
        .busybox(image.arch)
        .unwrap();
    let arch = image.arch;
    let mut vm = Vm::boot(
        VmConfig::new(image)
            .overlay(overlay)
            .append("sosna.fatal_delay=1"),
    )
    .unwrap();
    let text = vm
        .wait_until("the container's exit", BOOT, |t| {
            t.split_inclusive('\n')
                .any(|l| l.starts_with("RUN-EXIT=") && l.ends_with('\n'))
        })
        .unwrap();
    assert!(text.contains("RUN-EXIT=0"), "sosna run failed");
    let marker = text
        .lines()
        .find(|l| l.contains("CONTAINER-MARKER"))
        .expect("container output on the console");
    // Its own UTS namespace and PID namespace: hostname task-…, and PID 1 is its shell.
    let want = format!("CONTAINER-MARKER {} task-", arch.name());
    assert!(marker.contains(&want), "{marker}");
    assert!(marker.contains("sh-c"), "{marker}");
}
