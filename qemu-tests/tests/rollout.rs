//! A fleet rollout end to end on the disk image under OVMF: the operator runs
//! `sosna fleet publish` on the host; the device, which trusts that operator's key, hears
//! the signed notice on the bus, downloads the bundle from the host, installs it through
//! RAUC, reboots into slot B, health-checks and marks it, and reports the new version
//! back, which is when the publisher finishes. x86_64 only; needs the OTA test bundles.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sosna_qemu_tests::disk::{Disk, DiskCopy};
use sosna_qemu_tests::fleet::host_agent;
use sosna_qemu_tests::ota::{Bundle, FileServer};
use sosna_qemu_tests::{Arch, Vm};

const BOOT: Duration = Duration::from_secs(240);
/// Boot, download, install, reboot and health check, under TCG on a shared machine.
const ROLLOUT: Duration = Duration::from_secs(900);
const ESP_OFFSET: u64 = 1 << 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn test_a_published_rollout_updates_the_device_and_hears_it_is_good() {
    assert_eq!(
        Arch::from_env(),
        Arch::X86_64,
        "the disk image is built for x86_64 only until the hardware issue (21) brings it to \
         aarch64; ./dev test leaves this test out on aarch64"
    );
    let disk = Disk::built().expect("disk image (./image/build.sh x86_64)");
    let bundle = Bundle::built(&disk, "ota2").expect("OTA test bundles (./dev test builds them)");
    let server = FileServer::serve(bundle.path.parent().unwrap()).unwrap();
    let agent = host_agent().unwrap();

    // The operator: a key of its own and a listening bus on the host.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let op_config = dir.path().join("operator.toml");
    std::fs::write(
        &op_config,
        format!(
            "state_dir = \"{}\"\n[bus]\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/{port}\"]\n",
            dir.path().join("operator").display()
        ),
    )
    .unwrap();
    let id = Command::new(&agent)
        .args(["bus-id", "--config"])
        .arg(&op_config)
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&id.stdout).into_owned();
    let field = |k: &str| {
        id.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("bus-id printed {id:?}"))
            .to_owned()
    };
    let (peer, operator) = (field("peer_id "), field("address "));

    // The device trusts that operator and dials it through QEMU's user network.
    let copy = DiskCopy::new(&disk).unwrap();
    copy.enlarge(256 << 20).unwrap();
    copy.esp_write(
        ESP_OFFSET,
        "sosna/config.toml",
        &format!(
            "[bus]\nenabled = true\nmdns = false\nlisten = [\"/ip4/0.0.0.0/tcp/4001\"]\n\
             bootstrap = [\"/ip4/10.0.2.2/tcp/{port}/p2p/{peer}\"]\n\
             [rollout]\noperators = [\"{operator}\"]\nreport_secs = 3\n"
        ),
    )
    .unwrap();
    let mut vm = Vm::boot_disk(&disk, &copy).unwrap();
    vm.wait_for("SOSNA OTA slot=a", BOOT).unwrap();

    let url = server.guest_url(bundle.path.file_name().unwrap().to_str().unwrap());
    let started = Instant::now();
    let mut publisher = Command::new(&agent)
        .args(["fleet", "publish", "--config"])
        .arg(&op_config)
        .arg(&bundle.path)
        .args(["--url", &url, "--version", &bundle.version])
        .args([
            "--waves",
            "100",
            "--wave-secs",
            "1",
            "--every",
            "3",
            "--expect",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The publisher finishes once the device reports the new version good.
    let status = loop {
        if let Some(status) = publisher.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > ROLLOUT {
            let _ = publisher.kill();
            panic!("no good report within {ROLLOUT:?}:\n{}", vm.console());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut table = String::new();
    publisher
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut table)
        .unwrap();
    println!("{table}");
    assert!(status.success(), "fleet publish: {status}");
    let row = table
        .lines()
        .find(|l| l.contains(" good "))
        .unwrap_or_else(|| panic!("no good node in:\n{table}"));
    assert!(row.contains(&bundle.version), "{row}");
    assert!(row.contains("booted b"), "{row}");
    let console = vm.console();
    assert!(
        console.contains("rollout: operator"),
        "the notice was heard"
    );
    assert!(
        console.contains("ota: health: bus connected to"),
        "the health check saw a bus peer"
    );
    assert!(
        console.contains(&format!(
            "SOSNA OTA slot=b version={} state=good",
            bundle.version
        )),
        "slot B is marked good"
    );
    eprintln!(
        "rollout: published to good in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    vm.stop();
}
