//! Container benchmark: start→exit latency of `/bin/true` through the agent's runtime
//! (control path, shim, libcontainer) against `crun run` and `runc run` on the same rootfs
//! and spec, interleaved, median of 21 each; plus pull+unpack throughput of a 50 MB image
//! from a loopback registry. Needs root, crun, runc, docker-registry and a release `sosna`
//! beside this binary. Last line:
//! `BENCH container agent_ms=<a> crun_ms=<c> runc_ms=<r> ratio_crun=<a/c> ratio_runc=<a/r>`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sosna_init::reaper::Reaper;
use sosna_runtime::build::{self, busybox_layer, Image, LayerBuilder};
use sosna_runtime::{pull, spec, Runtime, RuntimeConfig, TaskSpec};
use sosna_testkit::registry::LocalRegistry;

/// Median of this many (`SOSNA_BENCH_RUNS` overrides, for profiling).
fn runs() -> usize {
    std::env::var("SOSNA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21)
}
const BIG_MB: usize = 50;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// crun refuses a hybrid cgroup host; with the v2 mount hidden in a private mount
/// namespace all three runtimes see plain v1 (or, on a v2-only host, nothing changes).
fn private_mounts() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount ns (root?)");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make mounts private");
    if Path::new("/sys/fs/cgroup/unified").exists() {
        umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH).expect("hide cgroup2");
    }
}

/// Incompressible bytes without an RNG dependency (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

async fn run_peer(reaper: &Reaper, program: &str, root: &Path, bundle: &Path, id: &str) -> f64 {
    let mut cmd = Command::new(program);
    cmd.arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let t = Instant::now();
    let (_, exit) = reaper
        .spawn(&mut cmd)
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let exit = exit.await.expect("exit");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(exit.success(), "{program} run: {exit}");
    ms
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "bench-container needs root"
    );
    private_mounts();
    let shim = std::env::current_exe().unwrap().with_file_name("sosna");
    assert!(
        shim.exists(),
        "{} missing: cargo build --release -p sosna",
        shim.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(dir.path(), shim));
}

async fn bench(dir: &Path, shim: PathBuf) {
    let registry = LocalRegistry::start(&dir.join("registry")).unwrap();
    let client = pull::client(&[registry.host()]).unwrap();
    let small = format!("{}/busybox:1", registry.host());
    let big = format!("{}/big:1", registry.host());
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let (layer, diff) = busybox_layer(busybox, &["true", "sh"]).finish();
    let img = |layers| Image {
        arch: pull::host_arch().into(),
        layers,
        cmd: vec![],
        env: vec![],
    };
    build::push(&client, &small, &[img(vec![(layer, diff)])])
        .await
        .unwrap();
    let (big_layer, big_diff) = LayerBuilder::default()
        .file("data", noise(BIG_MB << 20), 0o644)
        .finish();
    let big_bytes = big_layer.len();
    build::push(&client, &big, &[img(vec![(big_layer, big_diff)])])
        .await
        .unwrap();

    let reaper = Reaper::new();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(reaper.clone().run(stop_rx));
    let runtime = Runtime::open(
        RuntimeConfig {
            root: dir.join("state"),
            run_dir: dir.join("run"),
            shim_exe: shim,
            insecure_registries: vec![registry.host()],
            log_cap_bytes: 1 << 20,
            arch: pull::host_arch().into(),
            caps: sosna_runtime::caps::TaskCaps::default(),
        },
        reaper.clone(),
    )
    .unwrap();

    let t = Instant::now();
    runtime.pull(&big, &|_| {}).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "pull+unpack: {:.1} MB in {:.2} s = {:.1} MB/s",
        big_bytes as f64 / 1e6,
        secs,
        big_bytes as f64 / 1e6 / secs
    );
    let rec = runtime.pull(&small, &|_| {}).await.unwrap();

    // The peers' bundle: the same layer and the same generated spec, on a plain overlay.
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["rootfs", "upper", "work"] {
        std::fs::create_dir_all(bundle.join(d)).unwrap();
    }
    let lower = runtime.store().layer_dir(&rec.layers[0]);
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(
            format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                bundle.join("upper").display(),
                bundle.join("work").display()
            )
            .as_str(),
        ),
    )
    .unwrap();
    let task = TaskSpec {
        image: small.clone(),
        args: vec!["/bin/true".into()],
        ..Default::default()
    };
    let config = std::fs::read(runtime.store().blob_path(&rec.config)).unwrap();
    let defaults = spec::ImageDefaults::from_config(&config).unwrap();
    let s = spec::build("bench", &task, &defaults, "/sosna-bench/peer").unwrap();
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&s).unwrap()).unwrap();
    let peer_root = dir.join("peer-state");

    let (mut agent, mut crun, mut runc) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs() + 1 {
        let t = Instant::now();
        let id = runtime.run(task.clone()).await.unwrap();
        let outcome = runtime.wait(&id).await.unwrap();
        let a = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(outcome.exit_code, Some(0), "{outcome:?}");
        runtime.remove(&id, false).await.unwrap();
        let c = run_peer(&reaper, "crun", &peer_root, &bundle, &format!("c{i}")).await;
        let r = run_peer(&reaper, "runc", &peer_root, &bundle, &format!("r{i}")).await;
        if i > 0 {
            // The first round warms caches for everyone.
            agent.push(a);
            crun.push(c);
            runc.push(r);
            println!("run {i}: agent {a:.1} ms, crun {c:.1} ms, runc {r:.1} ms");
        }
    }
    let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    let (a, c, r) = (median(agent), median(crun), median(runc));
    println!(
        "BENCH container agent_ms={a:.1} crun_ms={c:.1} runc_ms={r:.1} ratio_crun={:.2} ratio_runc={:.2}",
        a / c,
        a / r
    );
    bench_shift(dir);
}

/// What moving a layer's owners into the tasks' id range costs, against unpacking it:
/// a layer of many small files (the worst case for a per-file chown).
fn bench_shift(dir: &Path) {
    use sosna_runtime::{idmap, unpack};
    const FILES: usize = 5000;
    let mut layer = LayerBuilder::default();
    for i in 0..FILES {
        layer = layer.file(&format!("d{}/f{i}", i % 50), vec![b'x'; 512], 0o644);
    }
    let (blob, _) = layer.finish();
    let blob_path = dir.join("many.tar");
    std::fs::write(&blob_path, blob).unwrap();
    let (mut unpack_ms, mut shift_ms) = (Vec::new(), Vec::new());
    for i in 0..7 {
        let dest = dir.join(format!("many-{i}"));
        let t = Instant::now();
        unpack::unpack_layer(&blob_path, &dest).unwrap(); // unpacks, then shifts
        let both = t.elapsed().as_secs_f64() * 1e3;
        // Back to the layer's own owners, then the shift alone.
        unshift(&dest);
        let t = Instant::now();
        idmap::shift_tree(&dest).unwrap();
        let shift = t.elapsed().as_secs_f64() * 1e3;
        unpack_ms.push(both - shift);
        shift_ms.push(shift);
        std::fs::remove_dir_all(&dest).unwrap();
    }
    let (u, sh) = (median(unpack_ms), median(shift_ms));
    println!(
        "BENCH layer_shift files={FILES} unpack_ms={u:.1} shift_ms={sh:.1} ratio_unpack={:.2}",
        sh / u
    );
}

fn unshift(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let base = sosna_runtime::idmap::BASE;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        std::os::unix::fs::lchown(&p, Some(m.uid() - base), Some(m.gid() - base)).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}
