//! Boots the built image under QEMU and checks PID 1's duties end to end.
//! Needs `./image/build.sh` first; run with `cargo test -p sosna-qemu-tests --features qemu`.

use std::time::Duration;

use sosna_qemu_tests::{Arch, Image, Overlay, Ready, Vm, VmConfig};

/// Generous: TCG on a loaded 2-core CI machine is slow. Waits end as soon as the
/// awaited line appears, so a healthy run never sits these out.
const BOOT: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(30);

fn image() -> Image {
    Image::built().expect("image")
}

/// Boots with a provisioning file, Debian's static busybox and an optional workload script.
fn boot_with_config(config: &str, workload: Option<&str>) -> Vm {
    let image = image();
    let mut overlay = Overlay::default()
        .file("/etc/sosna/config.toml", 0o644, config)
        .busybox(image.arch)
        .unwrap();
    if let Some(script) = workload {
        overlay = overlay.file("/workload.sh", 0o755, script);
    }
    Vm::boot(
        VmConfig::new(image)
            .overlay(overlay)
            .append("sosna.fatal_delay=1"),
    )
    .unwrap()
}

/// A service that prints what the kernel really has configured, for the network tests.
const NET_REPORT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
echo "REPORT addr: $($bb ip -4 -o addr show dev eth0)"
echo "REPORT route: $($bb ip route show default)"
echo "REPORT dns: $($bb cat /etc/resolv.conf)"
echo "REPORT hostname: $($bb hostname)"
echo "REPORT lo: $($bb ip -o link show lo)"
echo "REPORT DONE"
"#;

const NET_REPORT_SERVICE: &str = r#"
[[service]]
name = "net-report"
command = ["/bin/busybox", "sh", "/workload.sh"]
restart = "never"
"#;

#[test]
fn test_boots_to_ready_with_dhcp_network() {
    let mut vm = Vm::boot(VmConfig::new(image())).unwrap();
    let line = vm.wait_for("SOSNA READY", BOOT).unwrap();
    let ready = Ready::parse(&line).unwrap_or_else(|| panic!("malformed ready line {line:?}"));
    assert_eq!(ready.version, env!("CARGO_PKG_VERSION"));
    assert!(ready.boot_ms > 0 && ready.rss_kb > 0, "{ready:?}");
    let console = vm.console();
    // QEMU's user network hands out 10.0.2.15 with gateway 10.0.2.2.
    assert!(
        console.contains("network: eth0 10.0.2.15/24 via 10.0.2.2 (dhcp)"),
        "DHCP lease not applied"
    );
    assert!(
        console.contains("modules loaded from /etc/sosna/modules: ")
            && console.contains("virtio_net")
    );
    assert!(
        console.contains("hostname: sosna-12"),
        "hostname from the MAC"
    );
    assert!(!console.contains("ERROR"), "no errors on a default boot");
    // Modules off the boot path follow right after READY.
    let deferred = vm
        .wait_for("modules loaded from /etc/sosna/modules.deferred", STEP)
        .unwrap();
    for m in ["overlay", "virtio_blk", "veth", "nft_chain_nat", "nft_masq"] {
        assert!(deferred.contains(m), "{m} not loaded: {deferred}");
    }
}

#[test]
fn test_dhcp_lease_is_really_configured() {
    // Default network settings plus a service that reads the kernel's state back.
    let mut vm = boot_with_config(NET_REPORT_SERVICE, Some(NET_REPORT));
    let text = vm
        .wait_until("the network report", BOOT, |t| t.contains("REPORT DONE"))
        .unwrap();
    assert!(text.contains("inet 10.0.2.15/24"), "address");
    assert!(text.contains("default via 10.0.2.2 dev eth0"), "route");
    assert!(text.contains("nameserver 10.0.2.3"), "DNS from the lease");
    assert!(
        text.contains("REPORT hostname: sosna-"),
        "hostname from the MAC"
    );
    assert!(text.contains("<LOOPBACK,UP,LOWER_UP>"), "loopback up");
}

#[test]
fn test_ctrl_alt_del_shuts_down_in_order() {
    let image = image();
    assert_eq!(
        image.arch,
        Arch::X86_64,
        "not applicable on {}: its machine has no keyboard controller (./dev test leaves it out)",
        image.arch.name()
    );
    let mut vm = Vm::boot(VmConfig::new(image)).unwrap();
    vm.wait_for("SOSNA READY", BOOT).unwrap();
    vm.ctrl_alt_del().unwrap();
    vm.wait_for("Ctrl-Alt-Del (SIGINT): shutting down", STEP)
        .unwrap();
    let status = vm.wait_exit(STEP).unwrap();
    assert!(status.success(), "qemu exit {status}");
    let console = vm.console();
    for line in [
        "unmounted /tmp",
        "unmounted /run",
        "unmounted /proc",
        "rebooting",
    ] {
        assert!(console.contains(line), "console lacks {line:?}");
    }
    // Order: processes stopped before unmounting, unmounting before the reboot call.
    let at = |s: &str| console.find(s).unwrap();
    assert!(at("stopping all processes") < at("unmounted /tmp"));
    assert!(at("unmounted /tmp") < at("rebooting"));
    assert!(!console.contains("Kernel panic"));
}

#[test]
fn test_power_button_powers_off() {
    let mut vm = Vm::boot(VmConfig::new(image())).unwrap();
    vm.wait_for("SOSNA READY", BOOT).unwrap();
    vm.powerdown().unwrap();
    vm.wait_for("power button: shutting down", STEP).unwrap();
    assert!(vm.wait_exit(STEP).unwrap().success());
    let console = vm.console();
    assert!(console.contains("unmounted /sys/fs/cgroup"));
    assert!(console.contains("powering off"));
}

/// A panic inside a task (the test image panics one after READY when a flag file is
/// there) is logged and contained: the node stays up and still powers off cleanly.
#[test]
fn test_a_panic_in_a_task_leaves_the_node_up() {
    let overlay = Overlay::default().file("/etc/sosna/test-panic-in-task", 0o644, "");
    let mut vm = Vm::boot(
        VmConfig::new(image())
            .overlay(overlay)
            .append("sosna.fatal_delay=1"),
    )
    .unwrap();
    vm.wait_for("SOSNA READY", BOOT).unwrap();
    vm.wait_for("test: a task panics", STEP).unwrap();
    vm.powerdown().unwrap();
    vm.wait_for("power button: shutting down", STEP).unwrap();
    assert!(vm.wait_exit(STEP).unwrap().success());
    let console = vm.console();
    assert!(!console.contains("FATAL"), "the panic took the node down");
    assert!(console.contains("powering off"));
}

/// A board whose real-time clock says 1970 (no battery) keeps off the bus until a time
/// server (chronyd on the host) sets its clock, then joins it: its hub announcement passes
/// the host's timestamp check.
#[test]
fn test_a_node_booted_in_1970_sets_its_clock_and_joins_the_bus() {
    use sosna_bus::{BusEvent, Identity, SwarmSettings};
    use sosna_proto::bus::messages::Message;
    let ntp = sosna_qemu_tests::time::TimeServer::start().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = Identity::ephemeral();
    let (bus, mut events) = rt
        .block_on(async {
            sosna_bus::spawn(
                &host,
                SwarmSettings {
                    listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                    mdns: false,
                    ..SwarmSettings::default()
                },
            )
        })
        .unwrap();
    let listen = rt.block_on(async {
        loop {
            let s = bus.status().await.unwrap();
            if let Some(a) = s.listen.first() {
                return a.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let port = listen.to_string().rsplit('/').next().unwrap().to_owned();
    let wallet = "0x00000000000000000000000000000000000dead1";
    let config = format!(
        "role = \"hub\"\n[time]\nservers = [\"10.0.2.2:{}\"]\n\
         [bus]\nenabled = true\nmdns = false\nlisten = [\"/ip4/0.0.0.0/tcp/4001\"]\n\
         bootstrap = [\"/ip4/10.0.2.2/tcp/{port}/p2p/{}\"]\n\
         [bus.hub]\nwallet = \"{wallet}\"\nannounce_interval_secs = 2\n",
        ntp.port,
        host.peer_id()
    );
    let image = image_with_busybox(&config);
    let mut vm = Vm::boot(
        VmConfig::new(image.0)
            .overlay(image.1)
            .append("sosna.fatal_delay=1")
            .rtc("1970-01-01T00:00:00"),
    )
    .unwrap();
    vm.wait_for("is before this build", BOOT).unwrap();
    vm.wait_for("clock: set from 10.0.2.2", BOOT).unwrap();
    let wallet: alloy_primitives::Address = wallet.parse().unwrap();
    let heard = rt.block_on(async {
        tokio::time::timeout(BOOT, async {
            while let Some(e) = events.recv().await {
                if let BusEvent::Message(v) = e {
                    if matches!(&v.message, Message::HubAnnouncement(a) if a.wallet == wallet) {
                        return true;
                    }
                }
            }
            false
        })
        .await
    });
    assert_eq!(
        heard,
        Ok(true),
        "the guest's announcement never passed; console:\n{}",
        vm.console()
    );
    let console = vm.console();
    let at = |s: &str| console.find(s).unwrap_or(usize::MAX);
    assert!(
        at("clock: set from") < at("bus: started as"),
        "the bus started before the clock"
    );
    vm.stop();
}

/// The image and an overlay with `config` and busybox.
fn image_with_busybox(config: &str) -> (Image, Overlay) {
    let image = image();
    let overlay = Overlay::default()
        .file("/etc/sosna/config.toml", 0o644, config)
        .busybox(image.arch)
        .unwrap();
    (image, overlay)
}

#[test]
fn test_static_network_config() {
    let config = format!(
        r#"
hostname = "rig-7"
[network]
mode = "static"
address = "10.0.2.99/24"
gateway = "10.0.2.2"
dns = ["192.0.2.53"]
{NET_REPORT_SERVICE}"#
    );
    let mut vm = boot_with_config(&config, Some(NET_REPORT));
    let text = vm
        .wait_until("the network report", BOOT, |t| t.contains("REPORT DONE"))
        .unwrap();
    assert!(text.contains("network: eth0 10.0.2.99/24 via 10.0.2.2 (static)"));
    assert!(text.contains("inet 10.0.2.99/24"), "address");
    assert!(text.contains("default via 10.0.2.2 dev eth0"), "route");
    assert!(
        text.contains("nameserver 192.0.2.53"),
        "DNS from the config"
    );
    assert!(text.contains("REPORT hostname: rig-7"));
}

#[test]
fn test_orphaned_grandchildren_are_reaped() {
    // The service forks 20 grandchildren that outlive their parent (so they are re-parented
    // to PID 1), waits for them to finish, then counts zombies until none are left.
    let script = r#"#!/bin/busybox sh
bb=/bin/busybox
for i in $($bb seq 20); do ( $bb sleep 0.3 & ) ; done
echo "ORPHANS SPAWNED"
n=0
while [ $n -lt 200 ]; do
  z=0; alive=0
  for s in /proc/[0-9]*/stat; do
    read -r pid comm state rest < "$s" 2>/dev/null || continue
    [ "$state" = Z ] && z=$((z+1))
    [ "$comm" = "(sleep)" ] && alive=$((alive+1))
  done
  if [ $z -eq 0 ] && [ $alive -eq 0 ]; then echo "REAPED ALL after $n checks"; exec $bb sleep 3600; fi
  n=$((n+1)); $bb usleep 50000
done
echo "ZOMBIES LEFT $z alive $alive"
exec $bb sleep 3600
"#;
    let config = r#"
[[service]]
name = "orphans"
command = ["/bin/busybox", "sh", "/workload.sh"]
restart = "never"
"#;
    let mut vm = boot_with_config(config, Some(script));
    vm.wait_for("ORPHANS SPAWNED", BOOT).unwrap();
    let text = vm
        .wait_until("the workload's verdict", STEP, |t| {
            t.contains("REAPED ALL") || t.contains("ZOMBIES LEFT")
        })
        .unwrap();
    assert!(text.contains("REAPED ALL"), "zombies were left behind");
}

#[test]
fn test_crashing_service_is_restarted_then_given_up() {
    let config = r#"
[[service]]
name = "crasher"
command = ["/bin/busybox", "sh", "-c", "echo CRASHER RUN; exit 3"]
max_fast_crashes = 3
backoff_ms = 50
"#;
    let mut vm = boot_with_config(config, None);
    let text = vm
        .wait_until("the give-up message", BOOT, |t| {
            t.contains("giving up after 3 fast crashes")
        })
        .unwrap();
    assert_eq!(
        text.matches("CRASHER RUN").count(),
        3,
        "ran once plus two restarts"
    );
    assert_eq!(text.matches("restarting in").count(), 2);
    assert!(text.contains("exited with exit code 3"));
    assert!(
        text.contains("SOSNA READY"),
        "a crashing service doesn't stop the boot"
    );
}

#[test]
fn test_broken_config_is_a_clear_console_error() {
    let mut vm = boot_with_config("[network]\nmdoe = \"dhcp\"\n", None);
    vm.wait_for("FATAL: bad provisioning file", BOOT).unwrap();
    let status = vm.wait_exit(STEP).unwrap();
    assert!(status.success());
    let console = vm.console();
    let error = &console[console.find("FATAL").unwrap()..];
    assert!(
        error.contains("unknown field `mdoe`"),
        "the error names the field"
    );
    assert!(console.contains("powering off"));
    assert!(!console.contains("Kernel panic"));
    assert!(!console.contains("SOSNA READY"));
}
