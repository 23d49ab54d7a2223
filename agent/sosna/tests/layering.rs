//! The crate map holds: every crate depends only on the crates below it (README,
//! "Architecture"), test support is never a normal dependency, and the wire types pull
//! in no async runtime and no libp2p.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each workspace crate and the sosna crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("sosna-contracts", &[]),
    ("sosna-durable", &[]),
    ("sosna-proto", &["sosna-contracts"]),
    ("sosna-init", &["sosna-durable"]),
    (
        "sosna-runtime",
        &["sosna-durable", "sosna-proto", "sosna-init"],
    ),
    (
        "sosna-slave",
        &["sosna-durable", "sosna-proto", "sosna-runtime"],
    ),
    ("sosna-bus", &["sosna-durable", "sosna-proto"]),
    ("sosna-chain", &["sosna-durable", "sosna-contracts"]),
    (
        "sosna-market",
        &[
            "sosna-durable",
            "sosna-proto",
            "sosna-contracts",
            "sosna-bus",
            "sosna-chain",
            "sosna-runtime",
        ],
    ),
    (
        "sosna-ota",
        &[
            "sosna-durable",
            "sosna-proto",
            "sosna-init",
            "sosna-bus",
            "sosna-chain",
            "sosna-runtime",
        ],
    ),
    (
        "sosna",
        &[
            "sosna-durable",
            "sosna-proto",
            "sosna-contracts",
            "sosna-init",
            "sosna-runtime",
            "sosna-slave",
            "sosna-bus",
            "sosna-chain",
            "sosna-market",
            "sosna-ota",
        ],
    ),
    (
        "sosna-testkit",
        &[
            "sosna-contracts",
            "sosna-init",
            "sosna-runtime",
            "sosna-bus",
            "sosna-chain",
        ],
    ),
    ("sosna-image", &["sosna-init"]),
    // The fuzz targets call into every crate that decodes what a stranger sends.
    (
        "sosna-fuzz-targets",
        &[
            "sosna",
            "sosna-init",
            "sosna-proto",
            "sosna-runtime",
            "sosna-slave",
            "sosna-bus",
            "sosna-market",
            "sosna-ota",
        ],
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn toml_at(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Workspace member name → (its manifest, its normal sosna dependencies).
fn members() -> BTreeMap<String, (PathBuf, BTreeSet<String>)> {
    let ws = toml_at(&root().join("Cargo.toml"));
    let mut out = BTreeMap::new();
    for m in ws["workspace"]["members"].as_array().expect("members") {
        let manifest = root().join(m.as_str().unwrap()).join("Cargo.toml");
        let t = toml_at(&manifest);
        let name = t["package"]["name"].as_str().unwrap().to_owned();
        let deps = t
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("sosna"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name, (manifest, deps));
    }
    out
}

#[test]
fn test_every_crate_depends_only_on_crates_below_it() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(c, d)| (*c, d.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    for (name, (manifest, deps)) in members() {
        if name == "sosna-qemu-tests" {
            continue; // boots images: it may use anything
        }
        let Some(ok) = allowed.get(name.as_str()) else {
            wrong.push(format!(
                "{name} ({}) is not on the crate map",
                manifest.display()
            ));
            continue;
        };
        for d in deps {
            if !ok.contains(d.as_str()) {
                wrong.push(format!("{name} depends on {d}, which is not below it"));
            }
        }
    }
    assert!(wrong.is_empty(), "crate map broken:\n{}", wrong.join("\n"));
}

#[test]
fn test_test_support_is_only_a_dev_dependency() {
    for (name, (_, deps)) in members() {
        if name == "sosna-qemu-tests" {
            continue; // a test harness itself
        }
        assert!(
            !deps.contains("sosna-testkit"),
            "{name} links sosna-testkit outside its tests"
        );
    }
}

/// Every package `package` links with its default features, by `cargo tree`.
fn closure(package: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(root())
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn test_wire_types_pull_in_no_async_runtime_and_no_libp2p() {
    let all = closure("sosna-proto");
    assert!(all.contains("rmp-serde"), "the closure is read: {all:?}");
    for banned in ["tokio", "libp2p", "libp2p-identity", "reqwest", "zbus"] {
        assert!(!all.contains(banned), "sosna-proto pulls in {banned}");
    }
}
