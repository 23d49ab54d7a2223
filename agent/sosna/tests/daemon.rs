//! The `sosna` binary as a host daemon, with real child processes: services start, a
//! crashing one is restarted then given up on, orphans of services are reaped (we are
//! their subreaper), and SIGTERM stops everything and exits 0.

use std::process::Command;
use std::time::{Duration, Instant};

use sosna_testkit::daemon::Daemon;

const LINE: Duration = Duration::from_secs(20);

/// Children of `pid` that are zombies.
fn zombie_children(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        })
        .count()
}

#[test]
fn test_daemon_supervises_reaps_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let marker = dir.path().join("orphan-done");
    std::fs::write(
        &config,
        format!(
            r#"
role = "hub"
state_dir = "{state}"
[runtime]
socket = "{state}/agent.sock"
[slave]
listen = "127.0.0.1"
locator_port = 0

[[service]]
name = "crasher"
command = ["/bin/sh", "-c", "echo crasher-ran >&2; exit 7"]
max_fast_crashes = 3
backoff_ms = 20

[[service]]
name = "parent"
# Leaves an orphan behind that outlives it, then stays up until stopped.
command = ["/bin/sh", "-c", "(sleep 0.2; touch {marker}) & echo parent-up >&2; exec sleep 600"]
restart = "never"
"#,
            marker = marker.display(),
            state = dir.path().display(),
        ),
    )
    .unwrap();

    let mut daemon = Daemon::start(env!("CARGO_BIN_EXE_sosna"), &config);
    daemon.wait_line("SOSNA READY", LINE);
    daemon.wait_line("giving up after 3 fast crashes", LINE);
    let seen = daemon.output();
    assert_eq!(seen.iter().filter(|l| l.contains("crasher-ran")).count(), 3);
    daemon.wait_line("parent-up", LINE);
    daemon.wait_line("starting as a Hub daemon", LINE); // the file's role is used

    // The orphan finishes on its own; as subreaper the daemon must reap it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "orphan never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = daemon.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    while zombie_children(pid) > 0 {
        assert!(Instant::now() < deadline, "daemon left zombie children");
        std::thread::sleep(Duration::from_millis(20));
    }

    let status = daemon.stop();
    let seen = daemon.output();
    assert!(
        status.success(),
        "exit {status}; output:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("service=\"parent\"") && l.contains("stopped")),
        "the running service was stopped: {}",
        seen.join("\n")
    );
}

#[test]
fn test_cli_lists_roles_and_checks_configs() {
    let sosna = env!("CARGO_BIN_EXE_sosna");
    let help = Command::new(sosna).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for word in [
        "miner", "hub", "daemon", "run", "ps", "pull", "config", "poweroff", "reboot",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[power]\nctrl_alt_del = \"explode\"\n").unwrap();
    let out = Command::new(sosna)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ctrl_alt_del") || err.contains("explode"),
        "{err}"
    );
    let example = Command::new(sosna)
        .args(["config", "example"])
        .output()
        .unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &example.stdout).unwrap();
    let out = Command::new(sosna)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
