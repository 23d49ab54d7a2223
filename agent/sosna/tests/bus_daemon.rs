//! Two `sosna run` daemons on real TCP: a hub announces itself, a miner bootstrapped with
//! the hub's static address hears it, fetches its metadata directly and lists it in the
//! hub book that `sosna hubs` prints. (No chain here: the miner accepts unlisted hubs.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sosna_testkit::daemon::Daemon;

const SOSNA: &str = env!("CARGO_BIN_EXE_sosna");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, name: &str, role: &str, bus: &str) -> std::path::PathBuf {
    let state = dir.join(name);
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "role = \"{role}\"\nstate_dir = \"{}\"\n[log]\nlevel = \"info,sosna=debug,sosna_bus=debug,sosna_market=debug\"\n\
         [runtime]\nenabled = false\n[slave]\nenabled = false\n{bus}",
        state.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn sosna(args: &[&str]) -> String {
    let out = Command::new(SOSNA).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "sosna {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn test_miner_daemon_lists_hub_heard_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub_cfg = write_config(
        dir.path(),
        "hub",
        "hub",
        &format!(
            "[bus]\nenabled = true\nmdns = false\n\
             listen = [\"/ip4/127.0.0.1/tcp/{port}\"]\n\
             [bus.hub]\nwallet = \"0x00000000000000000000000000000000000000aa\"\n\
             name = \"tcp-hub\"\nannounce_interval_secs = 1\ncpu_core_hour = 7\n"
        ),
    );
    let id = sosna(&["bus-id", "--config", hub_cfg.to_str().unwrap()]);
    let peer = id
        .lines()
        .find_map(|l| l.strip_prefix("peer_id "))
        .expect("peer_id line")
        .to_owned();
    let miner_cfg = write_config(
        dir.path(),
        "miner",
        "miner",
        &format!(
            "[bus]\nenabled = true\nmdns = false\nstrict_whitelist = false\n\
             listen = [\"/ip4/127.0.0.1/tcp/0\"]\n\
             bootstrap = [\"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}\"]\n"
        ),
    );
    let _hub = Daemon::start(SOSNA, &hub_cfg);
    let miner = Daemon::start(SOSNA, &miner_cfg);

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut table = String::new();
    while Instant::now() < deadline {
        table = sosna(&["hubs", "--config", miner_cfg.to_str().unwrap()]);
        if table.contains("tcp-hub") && table.contains("not-confirmed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        table.contains("tcp-hub") && table.contains("not-confirmed"),
        "hub book:\n{table}\nminer log:\n{}",
        miner.output().join("\n")
    );
    let book = std::fs::read_to_string(dir.path().join("miner/bus/hubs.json")).unwrap();
    assert!(
        book.contains("\"cpu_core_hour\": 7"),
        "metadata recorded: {book}"
    );
}
