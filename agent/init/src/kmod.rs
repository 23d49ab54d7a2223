//! Loads the kernel modules the image lists, dependencies first, with `finit_module`
//! (the image carries no kmod binary).
//!
//! The image build runs depmod and writes `/etc/sosna/modules`, one module name a line.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::kmod::{finit_module, ModuleInitFlags};

/// Modules loaded before READY: what the network and the power button need.
pub const MODULE_LIST: &str = "/etc/sosna/modules";
/// Modules loaded right after READY, off the boot path (disks, entropy, overlayfs).
pub const DEFERRED_LIST: &str = "/etc/sosna/modules.deferred";

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("modules.dep line {line}: {reason}")]
    Syntax { line: usize, reason: &'static str },
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("load module {name} from {path}: {source}")]
    Load {
        name: String,
        path: PathBuf,
        source: nix::Error,
    },
}

/// Module names treat `-` and `_` alike; the kernel reports them with `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

/// `modules.dep`: for each module, its file (relative to the modules directory) and the
/// modules it needs.
#[derive(Debug, Default)]
pub struct DepGraph {
    files: HashMap<String, String>,
    deps: HashMap<String, Vec<String>>,
}

impl DepGraph {
    pub fn parse(text: &str) -> Result<DepGraph, KmodError> {
        let mut graph = DepGraph::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, needs) = line.split_once(':').ok_or(KmodError::Syntax {
                line: i + 1,
                reason: "missing ':'",
            })?;
            let module = module.trim();
            if module.is_empty() {
                return Err(KmodError::Syntax {
                    line: i + 1,
                    reason: "empty module path",
                });
            }
            let name = name_of(module);
            graph.files.insert(name.clone(), module.to_owned());
            graph
                .deps
                .insert(name, needs.split_whitespace().map(name_of).collect());
        }
        Ok(graph)
    }

    /// The modules to load for `wanted`, each after everything it depends on, once each.
    pub fn load_order(&self, wanted: &[String]) -> Result<Vec<(String, String)>, KmodError> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for name in wanted {
            self.visit(&normalize(name), &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut HashSet<String>,
        order: &mut Vec<(String, String)>,
    ) -> Result<(), KmodError> {
        // Marking before recursing makes a (malformed) cycle terminate.
        if !done.insert(name.to_owned()) {
            return Ok(());
        }
        let file = self
            .files
            .get(name)
            .ok_or_else(|| KmodError::Unknown(name.to_owned()))?;
        for dep in self.deps.get(name).into_iter().flatten() {
            self.visit(dep, done, order)?;
        }
        order.push((name.to_owned(), file.clone()));
        Ok(())
    }
}

/// Parses the image's module list: names, `#` comments, blank lines.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(normalize)
        .collect()
}

/// What [`load_listed`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    pub already: Vec<String>,
    pub failed: Vec<KmodError>,
}

/// Loads every module in `list` (one of [`MODULE_LIST`], [`DEFERRED_LIST`]) for the
/// running kernel. A missing list means no modules. One failing does not stop the others.
pub fn load_listed(list: &str) -> Result<LoadReport, KmodError> {
    let path = list;
    let list = match std::fs::read_to_string(path) {
        Ok(text) => parse_list(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoadReport::default()),
        Err(source) => {
            return Err(KmodError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release);
    load_from(&dir, &list)
}

/// Loads `wanted` (and dependencies) from a modules directory holding `modules.dep`.
pub fn load_from(dir: &Path, wanted: &[String]) -> Result<LoadReport, KmodError> {
    let dep_path = dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(|source| KmodError::Read {
        path: dep_path,
        source,
    })?;
    let order = DepGraph::parse(&text)?.load_order(wanted)?;
    let mut report = LoadReport::default();
    for (name, file) in order {
        if Path::new("/sys/module").join(&name).exists() {
            report.already.push(name);
            continue;
        }
        let path = dir.join(&file);
        match load_one(&path) {
            Ok(()) => report.loaded.push(name),
            Err(nix::Error::EEXIST) => report.already.push(name),
            Err(source) => report.failed.push(KmodError::Load { name, path, source }),
        }
    }
    Ok(report)
}

fn load_one(path: &Path) -> nix::Result<()> {
    let file = File::open(path)
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    // Compressed modules are decompressed by the kernel itself (CONFIG_MODULE_DECOMPRESS).
    let name = path.to_string_lossy();
    let flags = if name.ends_with(".xz") || name.ends_with(".zst") || name.ends_with(".gz") {
        ModuleInitFlags::from_bits_retain(4) // MODULE_INIT_COMPRESSED_FILE
    } else {
        ModuleInitFlags::empty()
    };
    finit_module(&file, &CString::default(), flags)
}

/// Loads one of the image's module lists and logs the outcome.
pub fn load_and_log(list: &str) {
    match load_listed(list) {
        Ok(r) => {
            if !r.loaded.is_empty() {
                tracing::info!("modules loaded from {list}: {}", r.loaded.join(" "));
            }
            for e in r.failed {
                tracing::error!("{e}");
            }
        }
        Err(e) => tracing::error!("modules: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci-modern_dev.ko
kernel/drivers/virtio/virtio_pci-modern_dev.ko:
";

    #[test]
    fn dependencies_come_first_once_each() {
        let g = DepGraph::parse(DEP).unwrap();
        let order: Vec<String> = g
            .load_order(&["virtio-pci".into(), "virtio_net".into(), "failover".into()])
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            order,
            [
                "virtio_pci_modern_dev",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
    }

    #[test]
    fn unknown_module_is_named() {
        let g = DepGraph::parse(DEP).unwrap();
        let err = g.load_order(&["e1000".into()]).unwrap_err();
        assert_eq!(err.to_string(), "module e1000 is not in modules.dep");
    }

    #[test]
    fn garbage_line_is_rejected_with_its_number() {
        let err = DepGraph::parse("a.ko:\nno colon here\n").unwrap_err();
        assert_eq!(err.to_string(), "modules.dep line 2: missing ':'");
    }

    #[test]
    fn cycles_terminate() {
        let g = DepGraph::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert_eq!(g.load_order(&["a".into()]).unwrap().len(), 2);
    }

    #[test]
    fn list_skips_comments_and_normalizes() {
        assert_eq!(
            parse_list("# net\nvirtio-net  # uplink\n\n erofs\n"),
            ["virtio_net", "erofs"]
        );
    }

    #[test]
    fn names_strip_compression_suffixes() {
        assert_eq!(name_of("kernel/fs/erofs/erofs.ko.xz"), "erofs");
        assert_eq!(name_of("x/dm-verity.ko"), "dm_verity");
    }
}
