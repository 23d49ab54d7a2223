//! The sosna initramfs: the static agent as `/init`, the kernel modules it loads at boot
//! (with a trimmed `modules.dep`), and the empty mount points PID 1 fills.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sosna_init::kmod::{self, DepGraph};

use crate::cpio::CpioWriter;

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Modules(#[from] kmod::KmodError),
    #[error("write archive: {0}")]
    Write(std::io::Error),
    #[error("write {0}: {1}")]
    Materialize(PathBuf, std::io::Error),
}

pub struct Inputs<'a> {
    /// Root of the extracted kernel package (holds `lib/modules/<release>` with modules.dep).
    pub kernel_root: &'a Path,
    pub release: &'a str,
    /// The static `sosna` binary.
    pub agent: &'a Path,
    /// Modules PID 1 loads before READY (dependencies are added).
    pub modules: &'a [String],
    /// Modules PID 1 loads right after READY.
    pub deferred: &'a [String],
    /// Modules the early-boot stage of the disk image loads to reach its root (empty for
    /// images without a disk).
    pub early: &'a [String],
    /// CA certificates for HTTPS registries (Debian's bundle).
    pub ca_bundle: Option<&'a Path>,
    /// Timestamp for every entry (SOURCE_DATE_EPOCH).
    pub mtime: u32,
}

enum Node {
    Dir,
    File { perm: u32, data: Vec<u8> },
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// What went into the archive, for the build report.
pub struct Contents {
    pub archive: Vec<u8>,
    pub modules: Vec<String>,
    pub agent_bytes: usize,
    pub module_bytes: usize,
}

fn read(path: &Path) -> Result<Vec<u8>, InitramfsError> {
    std::fs::read(path).map_err(|source| InitramfsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The file tree: paths relative to `/`, parents before children.
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    modules: Vec<String>,
    agent_bytes: usize,
    module_bytes: usize,
}

pub fn build(inputs: &Inputs) -> Result<Contents, InitramfsError> {
    let tree = tree(inputs)?;
    let mut w = CpioWriter::new(Vec::new(), inputs.mtime);
    for (path, node) in &tree.nodes {
        match node {
            Node::Dir => w.dir(path, 0o755),
            Node::File { perm, data } => w.file(path, *perm, data),
            Node::Symlink(target) => w.symlink(path, target),
            Node::CharDev { major, minor } => w.char_dev(path, 0o600, *major, *minor),
        }
        .map_err(InitramfsError::Write)?;
    }
    Ok(Contents {
        archive: w.finish().map_err(InitramfsError::Write)?,
        modules: tree.modules,
        agent_bytes: tree.agent_bytes,
        module_bytes: tree.module_bytes,
    })
}

/// Writes the same tree into `dir` (which must not exist), for a root filesystem image.
/// Owners and timestamps are left to the filesystem builder (it is told to fix them).
pub fn materialize(inputs: &Inputs, dir: &Path) -> Result<(), InitramfsError> {
    use std::os::unix::fs::PermissionsExt;
    let w = |path: PathBuf| move |e: std::io::Error| InitramfsError::Materialize(path, e);
    let tree = tree(inputs)?;
    std::fs::create_dir(dir).map_err(w(dir.to_owned()))?;
    for (rel, node) in &tree.nodes {
        let path = dir.join(rel);
        match node {
            Node::Dir => std::fs::create_dir(&path).map_err(w(path.clone()))?,
            Node::File { perm, data } => {
                std::fs::write(&path, data).map_err(w(path.clone()))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*perm))
                    .map_err(w(path.clone()))?;
            }
            Node::Symlink(target) => {
                std::os::unix::fs::symlink(target, &path).map_err(w(path.clone()))?
            }
            Node::CharDev { major, minor } => nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(u64::from(*major), u64::from(*minor)),
            )
            .map_err(|e| InitramfsError::Materialize(path.clone(), e.into()))?,
        }
    }
    Ok(())
}

fn tree(inputs: &Inputs) -> Result<Tree, InitramfsError> {
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for dir in [
        "boot",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "var/lib/sosna",
        "etc/sosna",
    ] {
        tree.insert(dir.into(), Node::Dir);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    tree.insert("dev/console".into(), Node::CharDev { major: 5, minor: 1 });
    let agent = read(inputs.agent)?;
    let agent_bytes = agent.len();
    tree.insert(
        "sbin/sosna".into(),
        Node::File {
            perm: 0o755,
            data: agent,
        },
    );
    tree.insert("init".into(), Node::Symlink("sbin/sosna".into()));
    if let Some(bundle) = inputs.ca_bundle {
        tree.insert(
            "etc/ssl/certs/ca-certificates.crt".into(),
            Node::File {
                perm: 0o644,
                data: read(bundle)?,
            },
        );
    }
    // DNS settings live on /run so the root can be read-only.
    tree.insert(
        "etc/resolv.conf".into(),
        Node::Symlink("../run/sosna/resolv.conf".into()),
    );

    let mod_dir = format!("lib/modules/{}", inputs.release);
    let dep_path = inputs.kernel_root.join(&mod_dir).join("modules.dep");
    let dep_text = String::from_utf8_lossy(&read(&dep_path)?).into_owned();
    let all: Vec<String> = inputs
        .early
        .iter()
        .chain(inputs.modules)
        .chain(inputs.deferred)
        .cloned()
        .collect();
    let order = DepGraph::parse(&dep_text)?.load_order(&all)?;
    let mut module_bytes = 0;
    let mut kept_lines = String::new();
    for (_, file) in &order {
        let data = read(&inputs.kernel_root.join(&mod_dir).join(file))?;
        module_bytes += data.len();
        tree.insert(
            format!("{mod_dir}/{file}"),
            Node::File { perm: 0o644, data },
        );
        if let Some(line) = dep_text
            .lines()
            .find(|l| l.split(':').next() == Some(file.as_str()))
        {
            kept_lines.push_str(line);
            kept_lines.push('\n');
        }
    }
    tree.insert(
        format!("{mod_dir}/modules.dep"),
        Node::File {
            perm: 0o644,
            data: kept_lines.into_bytes(),
        },
    );
    for (path, names) in [
        ("etc/sosna/modules", inputs.modules),
        ("etc/sosna/modules.deferred", inputs.deferred),
        ("etc/sosna/modules.early", inputs.early),
    ] {
        if names.is_empty() && path.ends_with("early") {
            continue;
        }
        let list: String = names.iter().map(|m| format!("{m}\n")).collect();
        let data = list.into_bytes();
        tree.insert(path.into(), Node::File { perm: 0o644, data });
    }

    add_parents(&mut tree);
    Ok(Tree {
        nodes: tree,
        modules: order.into_iter().map(|(n, _)| n).collect(),
        agent_bytes,
        module_bytes,
    })
}

/// Adds a directory entry for every missing parent; sorted order then puts parents first.
fn add_parents(tree: &mut BTreeMap<String, Node>) {
    let parents: Vec<String> = tree
        .keys()
        .flat_map(|p| {
            p.match_indices('/')
                .map(|(i, _)| p[..i].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    for p in parents {
        tree.entry(p).or_insert(Node::Dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_and_sorted_first() {
        let mut t = BTreeMap::new();
        t.insert("lib/modules/6.1/kernel/a.ko".to_string(), Node::Dir);
        t.insert("dev-x".to_string(), Node::Dir);
        t.insert("dev/console".to_string(), Node::Dir);
        add_parents(&mut t);
        let keys: Vec<&String> = t.keys().collect();
        for (i, k) in keys.iter().enumerate() {
            if let Some((parent, _)) = k.rsplit_once('/') {
                let pos = keys
                    .iter()
                    .position(|p| *p == parent)
                    .expect("parent present");
                assert!(pos < i, "{parent} before {k}");
            }
        }
    }

    #[test]
    fn builds_from_a_fake_kernel_tree() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("lib/modules/9.9-test");
        std::fs::create_dir_all(md.join("kernel")).unwrap();
        std::fs::write(
            md.join("modules.dep"),
            "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\nkernel/c.ko:\n",
        )
        .unwrap();
        for m in ["a", "b", "c"] {
            std::fs::write(md.join(format!("kernel/{m}.ko")), m).unwrap();
        }
        let agent = dir.path().join("sosna");
        std::fs::write(&agent, b"\x7fELF agent").unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, b"-----BEGIN CERTIFICATE-----").unwrap();
        let inputs = Inputs {
            kernel_root: dir.path(),
            release: "9.9-test",
            agent: &agent,
            modules: &["a".to_string()],
            deferred: &["c".to_string()],
            early: &[],
            ca_bundle: Some(&ca),
            mtime: 0,
        };
        let c = build(&inputs).unwrap();
        assert_eq!(c.modules, ["b", "a", "c"]);
        assert_eq!(c.agent_bytes, 10);
        let text = String::from_utf8_lossy(&c.archive);
        assert!(
            text.contains("kernel/b.ko:\nkernel/a.ko: kernel/b.ko\n"),
            "trimmed modules.dep"
        );
        assert!(
            text.contains("etc/sosna/modules.deferred\0"),
            "deferred list written"
        );
        assert!(
            text.contains("etc/ssl/certs/ca-certificates.crt\0"),
            "CA bundle"
        );
        assert_eq!(build(&inputs).unwrap().archive, c.archive, "reproducible");

        // The same tree as a directory, for the disk image's root filesystem.
        let root = dir.path().join("root");
        let early = ["b".to_string()];
        let disk_inputs = Inputs {
            early: &early,
            ..inputs
        };
        materialize(&disk_inputs, &root).unwrap();
        assert_eq!(
            std::fs::read(root.join("sbin/sosna")).unwrap(),
            b"\x7fELF agent"
        );
        assert_eq!(
            std::fs::read_link(root.join("init")).unwrap(),
            Path::new("sbin/sosna")
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/sosna/modules.early")).unwrap(),
            "b\n"
        );
        assert!(root.join("boot").is_dir(), "ESP mount point");
        assert!(
            root.join("lib/modules/9.9-test/kernel/c.ko").is_file(),
            "modules"
        );
        let err = materialize(&disk_inputs, &root).unwrap_err();
        assert!(err.to_string().contains("root"), "{err}");
    }
}
