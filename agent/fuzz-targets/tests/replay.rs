//! Every committed fuzz input, run through its target on stable Rust: the seed corpora
//! (real samples) and the regressions (inputs that once crashed a target, kept so the bug
//! stays fixed). Also checks that the cargo-fuzz crate builds exactly these targets, each
//! with seeds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sosna_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The system allocator, noting the largest single request on each thread: an input that
/// makes a decoder reserve what its bytes merely declare is a remote out-of-memory, which
/// libFuzzer reports and a plain replay would not.
struct Largest;

thread_local! {
    static LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new)));
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// Far above what any target needs for its largest input, far below a small board's RAM.
const MAX_ALLOCATION: usize = 256 << 20;

fn replay(kind: &str) -> usize {
    let mut failed = Vec::new();
    let mut count = 0;
    for (name, target) in TARGETS {
        for file in inputs(kind, name) {
            let data = std::fs::read(&file).expect("read an input");
            count += 1;
            LARGEST.with(|l| l.set(0));
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failed.push(format!("{}: panicked", file.display()));
            }
            let largest = LARGEST.with(|l| l.get());
            if largest > MAX_ALLOCATION {
                failed.push(format!(
                    "{}: allocated {largest} bytes at once",
                    file.display()
                ));
            }
        }
    }
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
    count
}

#[test]
fn test_every_seed_runs_clean() {
    let n = replay("seeds");
    assert!(n >= TARGETS.len(), "only {n} seeds");
}

#[test]
fn test_every_past_crash_stays_fixed() {
    let n = replay("regressions");
    assert!(
        n > 0,
        "no regression inputs found under agent/fuzz/regressions"
    );
}

#[test]
fn test_every_target_has_seeds_and_a_cargo_fuzz_binary() {
    let manifest: toml::Table = std::fs::read_to_string(fuzz_dir().join("Cargo.toml"))
        .expect("agent/fuzz/Cargo.toml")
        .parse()
        .expect("agent/fuzz/Cargo.toml parses");
    let bins: BTreeSet<String> = manifest["bin"]
        .as_array()
        .expect("[[bin]] entries")
        .iter()
        .map(|b| b["name"].as_str().expect("a bin name").to_owned())
        .collect();
    let targets: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(bins, targets, "agent/fuzz's binaries and TARGETS differ");
    let bare: Vec<_> = TARGETS
        .iter()
        .filter(|(n, _)| inputs("seeds", n).is_empty())
        .map(|(n, _)| *n)
        .collect();
    assert!(bare.is_empty(), "targets without seeds: {bare:?}");
}

/// Versions by package name in a Cargo.lock.
fn locked(path: &Path) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let lock: toml::Table = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .parse()
        .expect("a lock file parses");
    let mut out = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for p in lock["package"].as_array().expect("[[package]] entries") {
        out.entry(p["name"].as_str().expect("a name").to_owned())
            .or_default()
            .insert(p["version"].as_str().expect("a version").to_owned());
    }
    out
}

#[test]
fn test_the_fuzzed_dependencies_are_the_shipped_ones() {
    let root = locked(&fuzz_dir().join("../../Cargo.lock"));
    let fuzz = locked(&fuzz_dir().join("Cargo.lock"));
    let differ: Vec<_> = fuzz
        .iter()
        .filter_map(|(name, versions)| {
            let shipped = root.get(name)?;
            (!versions.is_subset(shipped))
                .then(|| format!("{name}: fuzzed {versions:?}, shipped {shipped:?}"))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "agent/fuzz/Cargo.lock drifted from Cargo.lock (copy the root lock over it): {differ:#?}"
    );
}
