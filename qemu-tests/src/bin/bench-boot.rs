//! Boot benchmark: wall time from starting qemu to the agent's READY line, against the
//! floor — the same kernel and devices with a trivial init (busybox prints a line and
//! powers off). Median of N runs each, alternating. Last line:
//! `BENCH boot ready_ms=<x> floor_ms=<y> ratio=<x/y> rss_kb=<z> image_bytes=<n>`, or
//! `BENCH boot-aarch64 …` for the image of `$SOSNA_ARCH=aarch64`.

use std::time::Duration;

use sosna_image::cpio::CpioWriter;
use sosna_qemu_tests::{Arch, Image, Ready, Vm, VmConfig};

const RUNS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(120);

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn floor_initramfs(dir: &std::path::Path, arch: Arch) -> std::path::PathBuf {
    let busybox = arch.busybox().unwrap_or_else(|e| panic!("{e}"));
    let mut w = CpioWriter::new(Vec::new(), 0);
    w.dir("dev", 0o755).unwrap();
    w.char_dev("dev/console", 0o600, 5, 1).unwrap();
    w.dir("bin", 0o755).unwrap();
    w.file("bin/busybox", 0o755, &busybox).unwrap();
    w.file(
        "init",
        0o755,
        b"#!/bin/busybox sh\n/bin/busybox echo FLOOR READY\n/bin/busybox poweroff -f\n",
    )
    .unwrap();
    let path = dir.join("floor.cpio");
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    path
}

fn main() {
    let image = Image::built().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let floor = Image {
        arch: image.arch,
        kernel: image.kernel.clone(),
        initramfs: floor_initramfs(dir.path(), image.arch),
    };
    println!("accel: {}", sosna_qemu_tests::accel(&image));
    let (mut ready, mut floor_ms, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    // What `mitigations=off` would save: the same boot with them off.
    let mut unmitigated = Vec::new();
    for run in 1..=RUNS {
        let mut vm = Vm::boot(VmConfig::new(floor.clone())).unwrap();
        vm.wait_for("FLOOR READY", TIMEOUT).unwrap();
        floor_ms.push(vm.elapsed().as_millis() as u64);
        drop(vm);

        let mut vm = Vm::boot(VmConfig::new(image.clone())).unwrap();
        let line = vm.wait_for("SOSNA READY", TIMEOUT).unwrap();
        ready.push(vm.elapsed().as_millis() as u64);
        rss.push(Ready::parse(&line).expect("ready line").rss_kb);
        drop(vm);

        let mut vm = Vm::boot(VmConfig::new(image.clone()).append("mitigations=off")).unwrap();
        vm.wait_for("SOSNA READY", TIMEOUT).unwrap();
        unmitigated.push(vm.elapsed().as_millis() as u64);
        drop(vm);
        println!(
            "run {run}: floor {} ms, ready {} ms (mitigations off: {} ms), rss {} kB",
            floor_ms[run - 1],
            ready[run - 1],
            unmitigated[run - 1],
            rss[run - 1]
        );
    }
    let image_bytes = std::fs::metadata(&image.initramfs).unwrap().len();
    let (r, f) = (median(ready), median(floor_ms));
    let label = match image.arch {
        Arch::X86_64 => "boot",
        Arch::Aarch64 => "boot-aarch64",
    };
    let m = median(unmitigated);
    println!(
        "BENCH {label} ready_ms={r} floor_ms={f} ratio={:.2} rss_kb={} image_bytes={image_bytes} \
         mitigations_off_ms={m} ratio_mitigations_off={:.2}",
        r as f64 / f as f64,
        median(rss),
        m as f64 / r as f64
    );
}
