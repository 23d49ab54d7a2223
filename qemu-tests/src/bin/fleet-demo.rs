//! `./dev demo` and `./dev bench e2e`: a local devnet fleet (anvil, a registry, a hub,
//! three miner VMs) running a buyer's replicated task, told as a story. Ctrl-C at any point
//! stops every VM and process it started and removes its work directory.
//!
//!   fleet-demo            the story: one miner forges its result and is slashed
//!   fleet-demo --keep     then keep the fleet up until Ctrl-C
//!   fleet-demo --bench N  N honest tasks; phase timings, gas, and the BENCH e2e line

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sosna_qemu_tests::fleet::{snm, stop_children, Fleet, FleetOptions};
use sosna_qemu_tests::Image;

/// The task: a checksum every honest machine computes alike.
const SCRIPT: &str = "seq 1 100000 | sha256sum";

fn work_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("demo")
}

/// Set once a signal started stopping the fleet: whatever fails after that is a
/// consequence, and the stopping thread ends the process.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Stops everything on Ctrl-C or SIGTERM, from a thread of its own.
fn stop_on_signal(dir: PathBuf) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        STOPPING.store(true, Ordering::SeqCst);
        eprintln!("\n*** stopping the fleet: miner VMs, the hub, anvil, the registry");
        stop_children();
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("*** stopped; nothing left running");
        std::process::exit(130);
    });
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let result = run();
    if STOPPING.load(Ordering::SeqCst) {
        loop {
            std::thread::park(); // the stopping thread exits the process
        }
    }
    result
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep = args.iter().any(|a| a == "--keep");
    let bench_runs: Option<usize> = args
        .iter()
        .position(|a| a == "--bench")
        .map(|i| args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(3));

    // Every scratch file (anvil, registry, VM overlays) goes under one directory, so an
    // interrupted demo leaves nothing behind.
    let dir = work_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Safe: no other thread exists yet.
    std::env::set_var("TMPDIR", &dir);
    stop_on_signal(dir.clone());

    let started = Instant::now();
    let say: sosna_qemu_tests::fleet::Say =
        Arc::new(move |line: &str| println!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64()));
    let image = Image::built()?;
    let opts = FleetOptions {
        miners: 3,
        cheaters: if bench_runs.is_some() {
            vec![]
        } else {
            vec![1]
        },
    };
    say("=== bringing up a local sosna fleet: devnet chain, registry, hub, 3 miner VMs");
    let fleet = Fleet::start(&image, &opts, say.clone())?;

    if let Some(runs) = bench_runs {
        bench(&fleet, &say, runs)?;
    } else {
        story(&fleet, &say)?;
    }
    if keep {
        say("=== the fleet stays up; press Ctrl-C to stop it");
        loop {
            std::thread::park();
        }
    }
    say("=== stopping the fleet");
    drop(fleet);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn story(
    fleet: &Fleet,
    say: &sosna_qemu_tests::fleet::Say,
) -> Result<(), Box<dyn std::error::Error>> {
    let before = fleet.ledger()?;
    fleet.tell_ledger("=== balances before", &before);
    say(&format!(
        "=== the buyer runs `{SCRIPT}` on 3 miners for at most 10 SNM"
    ));
    let bought = fleet.buy(3, 10, SCRIPT)?;
    if bought.exit_code != 0 {
        return Err(format!("the task exited {}", bought.exit_code).into());
    }
    say("=== the verified result:");
    for line in String::from_utf8_lossy(&bought.stdout).lines() {
        say(&format!("  | {line}"));
    }
    say("=== the miners pull their pay from the hub's wallet");
    fleet.wait_withdrawn(Duration::from_secs(120))?;
    let after = fleet.ledger()?;
    fleet.tell_ledger("=== balances after", &after);
    for (m, (b, a)) in fleet
        .miners
        .iter()
        .zip(before.miners.iter().zip(&after.miners))
    {
        let what = if a.balance > b.balance {
            format!("earned {}", snm(a.balance - b.balance))
        } else if a.stake < b.stake {
            format!("was outvoted and lost {} of stake", snm(b.stake - a.stake))
        } else {
            "earned nothing".to_string()
        };
        say(&format!("  {} {what}", m.name));
    }
    say(&format!(
        "=== done in {:.1} s from `sosna buy` to confirmation",
        bought.elapsed.as_secs_f64()
    ));
    Ok(())
}

fn bench(
    fleet: &Fleet,
    say: &sosna_qemu_tests::fleet::Say,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut totals = Vec::new();
    for run in 1..=runs {
        let bought = fleet.buy(3, 10, SCRIPT)?;
        let r = &bought.report;
        let t = &r["status"]["timings"];
        let ms = |k: &str| t[k].as_u64().unwrap_or(0);
        let total = r["total_ms"].as_u64().unwrap_or(0);
        let gas = r["buyer_gas"].as_u64().unwrap_or(0) + r["hub_gas"].as_u64().unwrap_or(0);
        say(&format!(
            "run {run}: dispatch {} ms, pull {} ms, run {} ms, verify {} ms, settle {} ms; total {total} ms; gas {gas} (hub {}, buyer {})",
            ms("dispatch_ms"),
            ms("pull_ms"),
            ms("run_ms"),
            ms("verify_ms"),
            ms("settle_ms"),
            r["hub_gas"],
            r["buyer_gas"],
        ));
        totals.push((total, ms("settle_ms"), gas, ms("run_ms")));
    }
    totals.sort();
    let (total, settle, gas, run) = totals[totals.len() / 2];
    println!(
        "median of {runs}: the task itself ran {run} ms, end to end took {:.1}x that",
        total as f64 / run.max(1) as f64
    );
    println!("BENCH e2e total_ms={total} settle_ms={settle} gas_per_task={gas}");
    Ok(())
}
