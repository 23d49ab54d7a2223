//! Prerequisites of tests. A test that cannot run here fails and says what it needs; it
//! never returns early as a pass. `./dev test` provides every prerequisite.

use std::path::Path;

/// Fails the calling test unless it runs as root (containers, mounts, network namespaces).
pub fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (containers, mounts and namespaces); run it as root, as ./dev test does"
    );
}

/// The value of `var`, or a failure naming who sets it.
pub fn env(var: &str, set_by: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("this test needs {var}, which {set_by} sets"))
}

/// Fails the calling test unless `path` exists.
pub fn file(path: &Path, made_by: &str) {
    assert!(
        path.exists(),
        "this test needs {}, which {made_by} makes",
        path.display()
    );
}
