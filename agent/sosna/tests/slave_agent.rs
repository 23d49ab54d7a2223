//! The slave protocol in the real `sosna` binary: storage survives an agent restart, the
//! logging service lands in the agent's log, `sosna call` works, and a gateway fails over
//! when one of two real nodes is killed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sosna_slave::client::{endpoint_addr, Connection, LocatorClient, StorageClient};
use sosna_slave::SlaveConfig;
use sosna_testkit::daemon::Daemon;

const DEADLINE: Duration = Duration::from_secs(20);

/// A `sosna run` daemon whose log lines are collected; killed on drop.
struct Agent {
    daemon: Daemon,
    locator: String,
}

impl Agent {
    fn start(state: &Path) -> Agent {
        std::fs::create_dir_all(state).unwrap();
        let config = state.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\n[log]\nlevel = \"debug\"\n[runtime]\nenabled = false\n[slave]\nlisten = \"127.0.0.1\"\nlocator_port = 0\n",
                state.display()
            ),
        )
        .unwrap();
        let mut agent = Agent {
            daemon: Daemon::start(env!("CARGO_BIN_EXE_sosna"), &config),
            locator: String::new(),
        };
        let line = agent.wait_line("locator listening on ");
        agent.locator = line
            .split("locator listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string();
        agent
    }

    fn wait_line(&mut self, needle: &str) -> String {
        self.daemon.wait_line(needle, DEADLINE)
    }

    fn signal(&mut self, sig: nix::sys::signal::Signal) {
        self.daemon.signal(sig);
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(mut self) {
        let status = self.daemon.stop();
        assert!(
            status.success(),
            "exit {status}: {}",
            self.daemon.output().join("\n")
        );
    }

    fn call(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_sosna"))
            .args(["call", "--timeout", "10", "--locator", &self.locator])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sosna call {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn test_storage_persists_across_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut agent = Agent::start(&state);
    let uuid = agent.call(&["locator", "uuid"]);
    assert_eq!(
        agent.call(&[
            "storage",
            "write",
            "apps",
            "web",
            "alpine:3.19",
            "[\"prod\"]"
        ]),
        "[]\n"
    );
    agent.call(&[
        "storage",
        "write",
        "apps",
        "db",
        "plain text",
        "[\"prod\", \"sql\"]",
    ]);
    assert_eq!(
        agent.call(&["storage", "find", "apps", "[\"sql\"]"]),
        "[[\"db\"]]\n"
    );
    // The logging service writes into the agent's own log.
    assert_eq!(
        agent.call(&["logging", "emit", "2", "app/test", "hello from a test app"]),
        ""
    );
    let line = agent.wait_line("hello from a test app");
    assert!(
        line.contains("WARN") && line.contains("[app/test]"),
        "{line}"
    );
    // Errors are reported with their [category, code].
    let out = Command::new(env!("CARGO_BIN_EXE_sosna"))
        .args([
            "call",
            "--locator",
            &agent.locator,
            "storage",
            "read",
            "apps",
            "missing",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[2, 1]") && err.contains("missing"), "{err}");
    agent.stop();

    let agent = Agent::start(&state);
    assert_eq!(
        agent.call(&["storage", "read", "apps", "db"]),
        "[\"plain text\"]\n"
    );
    assert_eq!(
        agent.call(&["storage", "find", "apps", "[\"prod\"]"]),
        "[[\"db\",\"web\"]]\n"
    );
    assert_eq!(
        agent.call(&["locator", "uuid"]),
        uuid,
        "the node keeps its uuid"
    );
    agent.stop();
}

#[test]
fn test_gateway_fails_over_when_a_node_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Agent::start(&dir.path().join("a"));
    let b = Agent::start(&dir.path().join("b"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = SlaveConfig {
            listen: "127.0.0.1".parse().unwrap(),
            locator_port: 0,
            gateway_peers: vec![a.locator.clone(), b.locator.clone()],
            health_interval_ms: 100,
            ..SlaveConfig::default()
        };
        let gw_dir = dir.path().join("gw");
        let gw = sosna_slave::start(&cfg, &gw_dir, Vec::new()).await.unwrap();
        let gateway = gw.locator.gateway().unwrap().clone();
        gateway.probe_all().await;
        assert_eq!(gateway.live().len(), 2, "both nodes up");
        let loc = LocatorClient::connect(&gw.locator_addr.to_string())
            .await
            .unwrap();
        let cluster = loc.cluster().await.unwrap();
        assert_eq!(cluster.len(), 3, "the gateway and both nodes: {cluster:?}");

        // Round-robin: consecutive resolves land on both nodes; tag each node's storage.
        let mut ports = std::collections::BTreeSet::new();
        for i in 0..4 {
            let r = loc.resolve("storage").await.unwrap();
            let (host, port) = r.endpoints[0].clone();
            ports.insert(port);
            let st = StorageClient {
                conn: Connection::connect(&endpoint_addr(&host, port))
                    .await
                    .unwrap(),
            };
            st.write("gw", &format!("k{i}"), port.to_string().into(), &[])
                .await
                .unwrap();
        }
        assert_eq!(ports.len(), 2, "round-robin reached both nodes");

        // The random policy reaches both nodes too (all 30 on one: p = 2^-29).
        let random_cfg = SlaveConfig {
            policy: sosna_slave::gateway::Policy::Random,
            ..cfg.clone()
        };
        let random = sosna_slave::start(&random_cfg, &dir.path().join("gw2"), Vec::new())
            .await
            .unwrap();
        let rloc = LocatorClient::connect(&random.locator_addr.to_string())
            .await
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..30 {
            seen.insert(rloc.resolve("storage").await.unwrap().endpoints[0].1);
        }
        assert_eq!(seen, ports, "random policy");
        random.stop().await;
        let a_storage = LocatorClient::connect(&a.locator)
            .await
            .unwrap()
            .resolve("storage")
            .await
            .unwrap()
            .endpoints[0]
            .1;
        let b_storage = LocatorClient::connect(&b.locator)
            .await
            .unwrap()
            .resolve("storage")
            .await
            .unwrap()
            .endpoints[0]
            .1;

        // Node A dies hard. Every resolve from now on gives B, at once.
        a.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = a.daemon.stop();
        for i in 0..6 {
            let r = tokio::time::timeout(DEADLINE, loc.resolve("storage"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.endpoints[0].1, b_storage, "resolve {i} after A died");
            let st = StorageClient {
                conn: Connection::connect(&endpoint_addr(&r.endpoints[0].0, r.endpoints[0].1))
                    .await
                    .unwrap(),
            };
            let keys = st.find("gw", &[]).await.unwrap();
            assert_eq!(
                keys.len(),
                2,
                "B holds the two writes round-robin sent it: {keys:?}"
            );
            for k in &keys {
                let v = st.read("gw", k).await.unwrap();
                assert_eq!(v, rmpv::Value::from(b_storage.to_string()));
            }
        }
        assert_ne!(a_storage, b_storage);
        assert_eq!(gateway.live(), vec![b.locator.clone()], "A is marked dead");
        // The cluster view drops A.
        let cluster = loc.cluster().await.unwrap();
        assert_eq!(cluster.len(), 2, "{cluster:?}");
        gw.stop().await;
    });
    b.stop();
}
