//! The container runtime end to end with real parts: Debian's docker-registry on
//! loopback, images built by our own code from busybox-static and pushed to it, the real
//! `sosna daemon` running containers through libcontainer, driven over its control socket
//! and by the CLI. Needs root (namespaces, cgroups, overlayfs); skipped, loudly, without.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sosna_proto::task::NetworkMode;
use sosna_runtime::api::{Client, Request};
use sosna_runtime::build::{self, busybox_layer, Image, LayerBuilder};
use sosna_runtime::network;
use sosna_runtime::store::{Digest, Store};
use sosna_runtime::{pull, ContainerInfo, Outcome, TaskSpec};
use sosna_testkit::daemon::Daemon;
use sosna_testkit::registry::LocalRegistry;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "ps", "hostname", "sleep", "head", "tr", "wc", "yes", "seq",
    "unshare", "true", "false", "grep", "pwd", "env", "id", "uname", "dd", "touch", "nc", "ip",
];

fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox").expect("busybox-static is installed (./dev deps)")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    locator: std::net::SocketAddr,
    registry: LocalRegistry,
    daemon: Daemon,
    socket: PathBuf,
    image: String,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(extra_runtime_config: &str) -> Fixture {
        Fixture::configured("listen = \"127.0.0.1\"", extra_runtime_config, "")
    }

    /// With `slave` lines for the `[slave]` section and `tail` sections after the rest.
    fn configured(slave: &str, extra_runtime_config: &str, tail: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::start(&dir.path().join("registry")).unwrap();
        let image = format!("{}/busybox:1", registry.host());
        let rt = rt();
        let client = pull::client(&[registry.host()]).unwrap();
        let (layer, diff) = busybox_layer(busybox(), APPLETS).finish();
        rt.block_on(build::push(
            &client,
            &image,
            &[Image {
                arch: pull::host_arch().into(),
                layers: vec![(layer, diff)],
                cmd: vec!["/bin/sh".into()],
                env: vec!["FROM_IMAGE=yes".into()],
            }],
        ))
        .unwrap();
        let socket = dir.path().join("agent.sock");
        let config = dir.path().join("config.toml");
        // Each daemon's locator on its own loopback port: tests run side by side.
        let locator = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\n[log]\nlevel = \"info\"\n\
                 [slave]\n{slave}\nlocator_port = {}\n\
                 [runtime]\nsocket = \"{}\"\n\
                 insecure_registries = [\"{}\"]\n{extra_runtime_config}\n{tail}\n",
                dir.path().join("state").display(),
                locator.port(),
                socket.display(),
                registry.host()
            ),
        )
        .unwrap();
        let daemon = Daemon::start(env!("CARGO_BIN_EXE_sosna"), &config);
        let f = Fixture {
            dir,
            locator,
            registry,
            daemon,
            socket,
            image,
            rt,
        };
        f.until("control socket answers", || {
            f.rt.block_on(Client::connect(&f.socket)).is_ok()
        });
        f
    }

    fn until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.daemon.output().join("\n")
    }

    fn call(&self, req: Request) -> Result<Value, String> {
        self.rt.block_on(async {
            let mut c = Client::connect(&self.socket)
                .await
                .map_err(|e| e.to_string())?;
            c.call(&req, &mut |_| {}).await.map_err(|e| e.to_string())
        })
    }

    fn task(&self, args: &[&str]) -> TaskSpec {
        TaskSpec {
            image: self.image.clone(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn start(&self, task: TaskSpec) -> String {
        let v = self.call(Request::Run { task }).expect("run");
        v.as_str().unwrap().to_string()
    }

    /// Runs to completion: (outcome, stdout, stderr).
    fn run(&self, task: TaskSpec) -> (Outcome, String, String) {
        let id = self.start(task);
        let o = self.call(Request::Wait { id: id.clone() }).expect("wait");
        let logs = self.call(Request::Logs { id: id.clone() }).expect("logs");
        let outcome: Outcome = serde_json::from_value(o).unwrap();
        self.assert_cleaned_up(&id);
        (
            outcome,
            logs["stdout"].as_str().unwrap().into(),
            logs["stderr"].as_str().unwrap().into(),
        )
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state/runtime")
    }

    /// No mount, cgroup or libcontainer state outlives a finished container.
    fn assert_cleaned_up(&self, id: &str) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(id), "mount left for {id}");
        for ctl in ["memory", "pids", "cpu", "unified", ""] {
            let p = Path::new("/sys/fs/cgroup").join(ctl).join("sosna").join(id);
            assert!(!p.exists(), "cgroup left: {}", p.display());
        }
        assert!(!Path::new("/run/sosna/containers").join(id).exists());
        let cdir = self.state().join("containers").join(id);
        for d in ["rootfs", "upper", "work"] {
            assert!(!cdir.join(d).exists(), "{d} left for {id}");
        }
        // A NAT container's veth (its kernel-side teardown may trail the shim a little).
        let veth = format!("{}{}", network::HOST_IF_PREFIX, &id[..8]);
        self.until("the container's veth to go", || {
            !network::host_links().unwrap().contains(&veth)
        });
    }

    fn ps(&self) -> Vec<ContainerInfo> {
        serde_json::from_value(self.call(Request::Ps {}).unwrap()).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Before the fields go: the daemon must not outlive its state directory.
        self.daemon.stop();
    }
}

#[test]
fn runs_with_exit_code_env_args_workdir_and_user() {
    sosna_testkit::require::root();
    let f = Fixture::new("");
    let mut t = f.task(&["sh", "-c", "echo $FOO $FROM_IMAGE; pwd; id -u; exit 7"]);
    t.env = vec!["FOO=bar".into()];
    t.workdir = "/tmp".into();
    t.user = "1000:1000".into();
    let (o, out, _) = f.run(t);
    assert_eq!(o.exit_code, Some(7), "{o:?}");
    assert_eq!(out, "bar yes\n/tmp\n1000\n");
    assert!(o.error.is_none() && !o.oom_killed && !o.timed_out);
    assert!(
        o.cpu_usec > 0 && o.memory_peak_bytes > 0,
        "usage for billing: {o:?}"
    );
    assert!(o.wall_ms > 0);

    // The image's command runs when the task names none.
    let mut t = f.task(&[]);
    t.args = vec![];
    let (o, _, _) = f.run(t);
    assert_eq!(o.exit_code, Some(0), "{o:?}");
}

#[test]
fn memory_limit_ends_in_a_reported_oom_kill() {
    sosna_testkit::require::root();
    let f = Fixture::new("");
    let mut t = f.task(&[
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
    ]);
    t.resources.memory_bytes = 16 << 20;
    t.timeout_secs = 60;
    let (o, out, _) = f.run(t);
    assert!(o.oom_killed, "{o:?} {out}");
    assert!(o.memory_peak_bytes > 8 << 20, "{o:?}");
    assert!(!out.contains("200000000"));
}

#[test]
fn a_task_without_limits_gets_the_nodes_caps_and_more_is_refused() {
    sosna_testkit::require::root();
    let f = Fixture::new("max_memory_bytes = 100663296\nmax_pids = 77\nmax_wall_secs = 120");
    // 0 is "unset": the node's cap, never "unlimited".
    let mut t = f.task(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
         cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
    ]);
    t.resources.memory_bytes = 0;
    t.resources.pids = 0;
    t.timeout_secs = 0;
    let (o, out, err) = f.run(t.clone());
    assert_eq!(o.exit_code, Some(0), "{o:?} {err}");
    assert_eq!(out, "100663296\n77\n");
    let mut big = t;
    big.resources.memory_bytes = 200 << 20;
    let refused = f.call(Request::Run { task: big }).unwrap_err();
    assert!(refused.contains("above this node's cap"), "{refused}");
    // Only the first task was ever created.
    let created = f.call(Request::Ps {}).unwrap();
    assert_eq!(created.as_array().map(Vec::len), Some(1), "{created}");
}

/// A task's root is an unprivileged host user: the task sees itself mapped from host uid
/// 100000, and on the host its processes belong to that uid.
#[test]
fn a_tasks_root_is_an_unprivileged_host_user() {
    sosna_testkit::require::root();
    let f = Fixture::new("");
    let (o, out, err) = f.run(f.task(&["cat", "/proc/self/uid_map", "/proc/self/gid_map"]));
    assert_eq!(o.exit_code, Some(0), "{o:?} {err}");
    let maps: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        maps,
        [["0", "100000", "65536"], ["0", "100000", "65536"]],
        "{out}"
    );
    let id = f.start(f.task(&["sleep", "30"]));
    f.until("the task to run", || {
        f.ps().iter().any(|c| c.id == id && c.pid.is_some())
    });
    let pid = f
        .ps()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap()
        .pid
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace().skip(1).all(|u| u == "100000"),
        "host view of the task's root: {uids}"
    );
    f.call(Request::Kill { id, signal: 9 }).unwrap();
}

#[test]
fn pids_limit_stops_fork_bombs_and_timeout_kills() {
    sosna_testkit::require::root();
    let f = Fixture::new("");
    let mut t = f.task(&["sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait"]);
    t.resources.pids = 10;
    t.timeout_secs = 30;
    let (o, _, err) = f.run(t);
    assert!(err.contains("fork"), "{o:?} stderr: {err}");

    let mut t = f.task(&["sleep", "60"]);
    t.timeout_secs = 1;
    let started = Instant::now();
    let (o, _, _) = f.run(t);
    assert!(o.timed_out, "{o:?}");
    assert_eq!(o.signal, Some(9));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn containers_are_isolated_and_confined() {
    sosna_testkit::require::root();
    // The kernel lets an unconfined process make a user namespace, so a failure inside is
    // the container's seccomp profile at work.
    let host = Command::new("/bin/busybox")
        .args(["unshare", "-U", "true"])
        .status()
        .unwrap();
    assert!(
        host.success(),
        "host cannot unshare -U; the seccomp check below would prove nothing"
    );
    let f = Fixture::new("");
    let script = "ps -o pid= | wc -l; hostname; ls /sys/class/net; \
                  grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; \
                  cat /proc/mounts | grep -c ' / ' ; \
                  unshare -U true; echo unshare=$?; \
                  touch /rootfs-write; echo write=$?; cat /proc/kcore | wc -c";
    let (o, out, err) = f.run(f.task(&["sh", "-c", script]));
    assert_eq!(o.exit_code, Some(0), "{o:?} {err}");
    let lines: Vec<&str> = out.lines().collect();
    let procs: usize = lines[0].trim().parse().unwrap();
    assert!(procs <= 4, "sees {procs} processes:\n{out}");
    assert!(lines[1].starts_with("task-"), "hostname {}", lines[1]);
    assert_eq!(lines[2], "lo", "network devices: {out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("unshare=1"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(out.contains("write=1"), "root must be read-only: {out}");
    assert!(
        out.trim_end().ends_with('0'),
        "/proc/kcore must be masked: {out}"
    );
    let cap_eff = out.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    let caps = u64::from_str_radix(cap_eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(caps & (1 << 21), 0, "CAP_SYS_ADMIN must be dropped");
}

#[test]
fn two_containers_at_once_then_kill_rm_restart_and_logs_cap() {
    sosna_testkit::require::root();
    let f = Fixture::new("log_cap_bytes = 1000");
    let a = f.start(f.task(&["sleep", "60"]));
    let b = f.start(f.task(&["sleep", "60"]));
    f.until("both running", || {
        let ps = f.ps();
        ps.len() == 2 && ps.iter().all(|c| c.running && c.pid.is_some())
    });
    let pids: Vec<i32> = f.ps().iter().map(|c| c.pid.unwrap()).collect();
    assert_ne!(pids[0], pids[1]);

    assert_eq!(
        f.call(Request::Kill {
            id: a.clone(),
            signal: 9
        })
        .unwrap(),
        json!(true)
    );
    let o: Outcome =
        serde_json::from_value(f.call(Request::Wait { id: a.clone() }).unwrap()).unwrap();
    assert_eq!(o.signal, Some(9));
    f.assert_cleaned_up(&a);
    let e = f
        .call(Request::Rm {
            id: b.clone(),
            force: false,
        })
        .unwrap_err();
    assert!(e.contains("still running"), "{e}");
    f.call(Request::Rm {
        id: b.clone(),
        force: true,
    })
    .unwrap();
    f.call(Request::Rm {
        id: a.clone(),
        force: false,
    })
    .unwrap();
    assert!(f.ps().is_empty());
    assert!(!f.state().join("containers").join(&a).exists());

    let (o, out, _) = f.run(f.task(&["sh", "-c", "yes | head -c 5000"]));
    assert_eq!(out.len(), 1000);
    assert_eq!(o.stdout_dropped, 4000);

    let mut t = f.task(&["sh", "-c", "echo run; exit 3"]);
    t.restart = sosna_proto::task::Restart::OnFailure;
    let id = f.start(t);
    f.until("two restarts", || {
        f.ps().iter().any(|c| c.id == id && c.restarts >= 2)
    });
    f.call(Request::Kill {
        id: id.clone(),
        signal: 9,
    })
    .unwrap();
    let o: Outcome =
        serde_json::from_value(f.call(Request::Wait { id: id.clone() }).unwrap()).unwrap();
    assert_eq!(o.exit_code, Some(3));
    let logs = f.call(Request::Logs { id: id.clone() }).unwrap();
    assert!(
        logs["stdout"].as_str().unwrap().matches("run").count() >= 2,
        "{logs}"
    );
}

#[test]
fn bad_references_and_registry_faults_are_clear_and_leave_nothing() {
    sosna_testkit::require::root();
    let mut f = Fixture::new("");
    let reg = f.registry.host();
    let expect_err = |f: &Fixture, image: String, needle: &str| {
        let mut t = f.task(&["true"]);
        t.image = image.clone();
        let e = f.call(Request::Run { task: t }).unwrap_err();
        assert!(e.contains(needle), "{image}: {e}");
        assert!(f.ps().is_empty(), "{image}: container left behind");
        let incoming = std::fs::read_dir(f.state().join("store/incoming"))
            .unwrap()
            .count();
        assert_eq!(incoming, 0, "{image}: partial download left");
        assert_eq!(
            std::fs::read_dir(f.state().join("containers"))
                .unwrap()
                .count(),
            0
        );
    };
    expect_err(&f, "Bad//Ref".into(), "bad image reference");
    expect_err(&f, format!("{reg}/busybox:missing"), "not found");
    expect_err(&f, format!("{reg}/nothing:1"), "not found");

    // A layer whose bytes the registry corrupted on disk.
    let (layer, diff) = LayerBuilder::default()
        .file("f", vec![1u8; 4096], 0o644)
        .finish();
    let d = Digest::of(&layer);
    let corrupt = format!("{reg}/corrupt:1");
    f.rt.block_on(build::push(
        &pull::client(std::slice::from_ref(&reg)).unwrap(),
        &corrupt,
        &[Image {
            arch: pull::host_arch().into(),
            layers: vec![(layer.clone(), diff)],
            cmd: vec!["/f".into()],
            env: vec![],
        }],
    ))
    .unwrap();
    let blob = f.dir.path().join(format!(
        "registry/data/docker/registry/v2/blobs/sha256/{}/{}/data",
        &d.hex()[..2],
        d.hex()
    ));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    expect_err(&f, corrupt, "digest mismatch");
    assert!(!Store::open(f.state().join("store")).unwrap().has_blob(&d));

    f.registry.stop();
    expect_err(&f, format!("{reg}/busybox:other"), "registry");
}

#[test]
fn pull_resumes_images_list_gc_and_cli() {
    sosna_testkit::require::root();
    let f = Fixture::new("");
    // Half of the layer is already on disk from an interrupted pull.
    let (layer, _) = busybox_layer(busybox(), APPLETS).finish();
    let d = Digest::of(&layer);
    let incoming = f.state().join("store/incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(
        incoming.join(format!("{}.partial", d.hex())),
        &layer[..layer.len() / 2],
    )
    .unwrap();
    let mut events = Vec::new();
    let v = f.rt.block_on(async {
        let mut c = Client::connect(&f.socket).await.unwrap();
        c.call(
            &Request::Pull {
                reference: f.image.clone(),
            },
            &mut |p| events.push(p.clone()),
        )
        .await
        .unwrap()
    });
    assert!(v["manifest"].as_str().unwrap().starts_with("sha256:"));
    assert!(events.iter().any(|e| e["event"] == "layer"), "{events:?}");
    let store = Store::open(f.state().join("store")).unwrap();
    assert_eq!(store.read_blob(&d).unwrap(), layer);

    let sosna = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sosna"))
            .args(args)
            .env("SOSNA_SOCKET", &f.socket)
            .output()
            .unwrap()
    };
    let out = sosna(&["run", &f.image, "--", "sh", "-c", "echo from-cli; exit 4"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-cli\n");
    assert_eq!(out.status.code(), Some(4));
    let out = sosna(&["images"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&f.image));
    let out = sosna(&["ps"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("exit code 4"));
    let out = sosna(&["logs", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no container"));

    // An image in use keeps its layers through gc; once forgotten and unused, they go.
    let before = f.call(Request::Gc {}).unwrap();
    assert_eq!(before["blobs"], 0, "{before}");
    for c in f.ps() {
        f.call(Request::Rm {
            id: c.id,
            force: true,
        })
        .unwrap();
    }
    assert_eq!(
        f.call(Request::Rmi {
            reference: f.image.clone()
        })
        .unwrap(),
        json!(true)
    );
    let after = f.call(Request::Gc {}).unwrap();
    assert_eq!(after["blobs"], 3, "{after}");
    assert!(!store.has_blob(&d));
    assert!(!store.layer_dir(&d).exists());
}

/// Platform selection from a multi-arch index, through the library (no root needed).
#[test]
fn multi_arch_index_resolves_to_the_requested_platform() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start(&dir.path().join("registry")).unwrap();
    let client = pull::client(&[registry.host()]).unwrap();
    let reference = format!("{}/multi:1", registry.host());
    let image = |arch: &str| {
        let (l, d) = LayerBuilder::default().file("arch", arch, 0o644).finish();
        Image {
            arch: arch.into(),
            layers: vec![(l, d)],
            cmd: vec![],
            env: vec![],
        }
    };
    let rt = rt();
    rt.block_on(build::push(
        &client,
        &reference,
        &[image("amd64"), image("arm64")],
    ))
    .unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    for arch in ["arm64", "amd64"] {
        let rec = rt
            .block_on(pull::pull(&client, &store, &reference, arch, &|_| {}))
            .unwrap();
        let (want, _) = LayerBuilder::default().file("arch", arch, 0o644).finish();
        assert_eq!(rec.layers, vec![Digest::of(&want)], "{arch}");
    }
    let e = rt
        .block_on(pull::pull(&client, &store, &reference, "riscv64", &|_| {}))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no riscv64 image") && e.contains("linux/arm64"),
        "{e}"
    );
}

/// The Slave protocol's `node` service drives the same runtime: apps are named containers.
#[test]
fn node_service_starts_lists_and_stops_apps() {
    sosna_testkit::require::root();
    let f = Fixture::new("");
    let call = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sosna"))
            .arg("call")
            .arg("--locator")
            .arg(f.locator.to_string())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text + &String::from_utf8_lossy(&out.stderr),
        )
    };
    f.until("locator answers", || call(&["node", "list"]).0);
    let profile = json!({"image": f.image, "args": ["sleep", "60"]}).to_string();
    let (ok, out) = call(&["node", "start_app", "worker", &profile]);
    assert!(ok, "{out}");
    let (_, out) = call(&["node", "start_app", "worker", &profile]);
    assert!(out.contains("already running"), "{out}");
    let (ok, out) = call(&["node", "list"]);
    assert!(ok && out.contains("worker"), "{out}");
    f.until("worker running", || f.ps().iter().any(|c| c.running));
    let (ok, out) = call(&["node", "info", "worker"]);
    assert!(ok && out.contains("\"running\":true"), "{out}");
    let (ok, out) = call(&["node", "start_app", "bad", r#"{"image": ""}"#]);
    assert!(!ok && out.contains("image"), "{out}");
    let (ok, out) = call(&["node", "pause_app", "worker"]);
    assert!(ok, "{out}");
    assert!(f.ps().is_empty(), "container left after pause_app");
    let (_, out) = call(&["node", "info", "worker"]);
    assert!(out.contains("no app"), "{out}");
}

/// The Slave services from elsewhere: a caller in another network namespace reaches the
/// locator's lookups and nothing else; this machine's Cocaine clients and the operator's
/// key over the bus reach everything; an unknown key over the bus reaches nothing.
#[test]
fn strangers_reach_only_lookups_and_trusted_peers_reach_every_service() {
    sosna_testkit::require::root();
    let keys = tempfile::tempdir().unwrap();
    let key_config = |name: &str| {
        let path = keys.path().join(format!("{name}.toml"));
        let state = keys.path().join(name);
        std::fs::write(&path, format!("state_dir = \"{}\"\n", state.display())).unwrap();
        let id = sosna_bus::Identity::load_or_create(&state.join("bus")).unwrap();
        (path, id.peer_id().to_string())
    };
    let (operator, operator_peer) = key_config("operator");
    let (stranger, _) = key_config("stranger");
    let bus_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::configured(
        &format!("listen = \"0.0.0.0\"\ntrusted_peers = [\"{operator_peer}\"]"),
        "",
        &format!(
            "[bus]\nenabled = true\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/{bus_port}\"]\n"
        ),
    );
    let started = f
        .daemon
        .wait_line("bus: started as", Duration::from_secs(30));
    let node_peer = started
        .split("peer ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .to_string();
    let node_addr = format!("/ip4/127.0.0.1/tcp/{bus_port}/p2p/{node_peer}");
    let sosna = |prefix: &[&str], args: &[&str]| {
        let mut cmd = Command::new(
            prefix
                .first()
                .copied()
                .unwrap_or(env!("CARGO_BIN_EXE_sosna")),
        );
        if !prefix.is_empty() {
            cmd.args(&prefix[1..]).arg(env!("CARGO_BIN_EXE_sosna"));
        }
        let out = cmd
            .args(["call", "--timeout", "20"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let port = f.locator.port().to_string();
    let local = format!("127.0.0.1:{port}");
    f.until("locator answers", || {
        sosna(&[], &["--locator", &local, "node", "list"]).0
    });

    // Another network namespace: lookups yes, work and state no.
    let outside = Outside::new();
    let netns = ["ip", "netns", "exec", outside.ns.as_str()];
    let remote = format!("198.51.100.1:{port}");
    let profile = json!({"image": f.image, "args": ["sleep", "60"]}).to_string();
    let (ok, out) = sosna(
        &netns,
        &["--locator", &remote, "locator", "resolve", "storage"],
    );
    assert!(ok, "{out}");
    for args in [
        vec!["node", "start_app", "intruder", profile.as_str()],
        vec!["storage", "write", "apps", "k", "\"from outside\""],
    ] {
        let (ok, out) = sosna(
            &netns,
            &[&["--locator", remote.as_str()][..], &args].concat(),
        );
        assert!(
            !ok && out.contains("trusted bus peers only"),
            "{args:?}: {out}"
        );
    }
    assert!(
        f.ps().is_empty(),
        "a stranger started a container: {:?}",
        f.ps()
    );

    // This machine's Cocaine clients keep working.
    let (ok, out) = sosna(
        &[],
        &[
            "--locator",
            &local,
            "storage",
            "write",
            "apps",
            "k",
            "\"local\"",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = sosna(&[], &["--locator", &local, "storage", "read", "apps", "k"]);
    assert!(ok && out.contains("local"), "{out}");

    // Over the bus: the operator's key reaches every service, another key none.
    let as_operator = [
        "--peer",
        node_addr.as_str(),
        "--config",
        operator.to_str().unwrap(),
    ];
    let (ok, out) = sosna(
        &[],
        &[&as_operator[..], &["storage", "read", "apps", "k"]].concat(),
    );
    assert!(ok && out.contains("local"), "{out}");
    let (ok, out) = sosna(&[], &[&as_operator[..], &["node", "list"]].concat());
    assert!(ok, "{out}");
    let as_stranger = [
        "--peer",
        node_addr.as_str(),
        "--config",
        stranger.to_str().unwrap(),
    ];
    let (ok, out) = sosna(
        &[],
        &[
            &as_stranger[..],
            &["node", "start_app", "intruder", profile.as_str()],
        ]
        .concat(),
    );
    assert!(!ok && out.contains("does not trust"), "{out}");
    assert!(
        f.ps().is_empty(),
        "a stranger started a container: {:?}",
        f.ps()
    );
    let (ok, out) = sosna(&[], &["--locator", &local, "storage", "read", "apps", "k"]);
    assert!(
        ok && out.contains("local"),
        "the stranger changed storage: {out}"
    );
}

/// Runs `ip ARGS` (iproute2, on the dev host only) and insists it works.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stands in for the internet and for the host's LAN: a network namespace behind a veth,
/// with 198.51.100.2 (public) and 192.168.251.2 (private) and a one-line TCP echo on
/// every address that names the peer it saw; the host side has 198.51.100.1 and 192.168.251.1.
struct Outside {
    ns: String,
    host_if: String,
}

const ECHO_PORT: u16 = 7007;

impl Outside {
    fn new() -> Outside {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = (std::process::id() % 10_000) * 10 + n % 10;
        let o = Outside {
            ns: format!("sosna-inet-{tag}"),
            host_if: format!("sosna-o{tag}"),
        };
        ip(&["netns", "add", &o.ns]);
        ip(&[
            "link", "add", &o.host_if, "type", "veth", "peer", "name", "eth0", "netns", &o.ns,
        ]);
        for a in ["198.51.100.1/24", "192.168.251.1/24"] {
            ip(&["addr", "add", a, "dev", &o.host_if]);
        }
        ip(&["link", "set", &o.host_if, "up"]);
        for a in ["198.51.100.2/24", "192.168.251.2/24"] {
            ip(&["-n", &o.ns, "addr", "add", a, "dev", "eth0"]);
        }
        ip(&["-n", &o.ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &o.ns, "link", "set", "lo", "up"]);
        // No route back to the containers' pool: only NAT (the host's address) gets answers.
        let ns_path = format!("/run/netns/{}", o.ns);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace fd; only this thread moves.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let l = std::net::TcpListener::bind(("0.0.0.0", ECHO_PORT)).unwrap();
            tx.send(()).unwrap();
            serve_echo(l);
        });
        rx.recv().unwrap();
        o
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // The echo thread keeps the namespace alive until the test process ends; the veth
        // goes now.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn serve_echo(l: std::net::TcpListener) {
    use std::io::{BufRead, Write};
    for conn in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = std::io::BufReader::new(&conn);
            let peer = conn
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            if r.read_line(&mut line).is_ok() {
                let _ = (&conn).write_all(format!("echo:{peer}:{line}").as_bytes());
            }
        });
    }
}

fn echo_from_host(addr: &str, port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect_timeout(
        &format!("{addr}:{port}").parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("host cannot reach {addr}:{port}: {e}"));
    c.write_all(b"host\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn nat_reaches_the_internet_but_not_the_host_or_private_networks() {
    sosna_testkit::require::root();
    let outside = Outside::new();
    // A service of the host's own, on all of its addresses.
    let host_port = 7008;
    let host_svc = std::net::TcpListener::bind(("0.0.0.0", host_port)).unwrap();
    std::thread::spawn(move || serve_echo(host_svc));
    // All three services are there for whoever may reach them.
    assert_eq!(
        echo_from_host("198.51.100.2", ECHO_PORT),
        "echo:198.51.100.1:host\n"
    );
    assert_eq!(
        echo_from_host("192.168.251.2", ECHO_PORT),
        "echo:192.168.251.1:host\n"
    );
    assert_eq!(
        echo_from_host("192.168.251.1", host_port),
        "echo:192.168.251.1:host\n"
    );
    assert_eq!(
        echo_from_host("198.51.100.1", host_port),
        "echo:198.51.100.1:host\n"
    );

    let f = Fixture::new("");
    let script = "try() { echo hi | nc -w 2 $1 $2; echo \"$3=$?\"; }; \
                  try 198.51.100.2 7007 inet; try 192.168.251.2 7007 lan; \
                  try 192.168.251.1 7008 host; try 198.51.100.1 7008 hostpub; \
                  set -- $(ip route show default); try $3 7008 gateway; \
                  echo ipv6off=$(cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6); \
                  ls /sys/class/net; ip -4 addr show eth0; cat /etc/resolv.conf";
    let mut t = f.task(&["sh", "-c", script]);
    t.network = NetworkMode::Nat;
    t.timeout_secs = 60;
    let id = f.start(t.clone());
    let o: Outcome =
        serde_json::from_value(f.call(Request::Wait { id: id.clone() }).unwrap()).unwrap();
    let logs = f.call(Request::Logs { id: id.clone() }).unwrap();
    let (out, err) = (
        logs["stdout"].as_str().unwrap(),
        logs["stderr"].as_str().unwrap(),
    );
    assert_eq!(o.exit_code, Some(0), "{o:?}\n{out}\n{err}\n{}", f.log());
    // Answered, and seen as coming from the host: masqueraded.
    assert!(out.contains("echo:198.51.100.1:hi\ninet=0"), "{out}\n{err}");
    for blocked in ["lan", "host", "hostpub", "gateway"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{blocked}=")) && l != format!("{blocked}=0")),
            "{blocked} must be unreachable:\n{out}\n{err}"
        );
    }
    assert_eq!(out.matches("echo:").count(), 1, "{out}");
    assert!(out.contains("eth0\nlo\n"), "{out}");
    assert!(out.contains("inet 10.89."), "{out}");
    assert!(out.contains("ipv6off=1"), "{out}");
    let dns = network::nameservers(&std::fs::read_to_string("/etc/resolv.conf").unwrap());
    assert!(out.contains(&format!("nameserver {}", dns[0])), "{out}");

    assert!(network::nat_installed().unwrap(), "the agent installs NAT");
    // Nothing of the container's network outlives it.
    f.assert_cleaned_up(&id);
    let addrs = f.rt.block_on(network::host_ipv4_addrs()).unwrap();
    assert!(
        !addrs.iter().any(|a| a.octets()[..2] == [10, 89]),
        "pool address left: {addrs:?}"
    );

    // The same without network: nothing but loopback.
    t.network = NetworkMode::None;
    let (o, out, _) = f.run(t);
    assert!(o.error.is_none(), "{o:?}");
    assert!(out.contains("inet=1"), "{out}");
    assert!(!out.contains("echo:"), "{out}");

    // The CLI asks for it the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_sosna"))
        .args([
            "run",
            "--network",
            "nat",
            &f.image,
            "--",
            "ls",
            "/sys/class/net",
        ])
        .env("SOSNA_SOCKET", &f.socket)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "eth0\nlo\n",
        "{out:?}"
    );
    drop(f);
    assert!(
        !network::nat_installed().unwrap(),
        "the agent removes NAT when it stops"
    );
    drop(outside);
}
