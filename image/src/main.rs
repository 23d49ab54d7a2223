//! `sosna-image`: assembles vmlinux + initramfs from an extracted kernel package and the
//! static agent, and writes a manifest with sizes and digests. `image/build.sh` drives it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use sha2::{Digest, Sha256};
use sosna_image::{initramfs, vmlinux};

#[derive(Parser)]
#[command(about = "Assemble sosna's vmlinux and initramfs")]
struct Args {
    /// Target architecture: x86_64 (PVH vmlinux) or aarch64 (arm64 Image).
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: Arch,
    /// Root of the extracted kernel package (after depmod).
    #[arg(long)]
    kernel_root: PathBuf,
    /// Kernel release, e.g. 6.1.0-56-amd64.
    #[arg(long)]
    release: String,
    /// The static sosna agent binary.
    #[arg(long)]
    agent: PathBuf,
    /// File listing the modules to load before READY, one per line.
    #[arg(long)]
    modules: PathBuf,
    /// File listing the modules to load right after READY.
    #[arg(long)]
    deferred_modules: PathBuf,
    /// File listing the modules the disk image's early-boot stage loads (x86_64 disk).
    #[arg(long)]
    early_modules: Option<PathBuf>,
    /// With --early-modules: also write the disk's tree as a directory here (the source of
    /// its root filesystem).
    #[arg(long)]
    rootfs_dir: Option<PathBuf>,
    /// CA bundle to carry for HTTPS registries.
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "aarch64")]
    Aarch64,
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    // Write-then-rename: an interrupted build never leaves a half file under the real name.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().context("SOURCE_DATE_EPOCH is not a number")?,
        Err(_) => 0,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;

    let vmlinuz = args
        .kernel_root
        .join(format!("boot/vmlinuz-{}", args.release));
    let packaged =
        std::fs::read(&vmlinuz).with_context(|| format!("read {}", vmlinuz.display()))?;
    // x86 boots fastest as an uncompressed ELF via PVH; Debian's arm64 kernel already is an
    // uncompressed Image that QEMU and boards load directly.
    let (kernel_name, kernel) = match args.arch {
        Arch::X86_64 => {
            eprintln!("image: extracting vmlinux from {}", vmlinuz.display());
            let elf = vmlinux::extract(&packaged)
                .with_context(|| format!("extract {}", vmlinuz.display()))?;
            ("vmlinux", elf)
        }
        Arch::Aarch64 => {
            anyhow::ensure!(
                packaged.get(56..60) == Some(b"ARMd"),
                "{} is not an uncompressed arm64 Image",
                vmlinuz.display()
            );
            ("Image", packaged)
        }
    };
    write(&args.out.join(kernel_name), &kernel)?;

    eprintln!("image: assembling initramfs");
    let read_list = |path: &Path| -> anyhow::Result<Vec<String>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Ok(sosna_init::kmod::parse_list(&text))
    };
    let modules = read_list(&args.modules)?;
    let deferred = read_list(&args.deferred_modules)?;
    let early = match &args.early_modules {
        Some(path) => read_list(path)?,
        None => Vec::new(),
    };
    // The fast path's initramfs carries no early-boot modules (disk drivers, dm-verity,
    // filesystems): it never needs them, and its size is its boot time.
    let inputs = initramfs::Inputs {
        kernel_root: &args.kernel_root,
        release: &args.release,
        agent: &args.agent,
        modules: &modules,
        deferred: &deferred,
        early: &[],
        ca_bundle: args.ca_bundle.as_deref(),
        mtime,
    };
    let c = initramfs::build(&inputs)?;
    if !early.is_empty() {
        // The disk image's UKIs get the same tree plus the early stage's modules.
        let disk = initramfs::Inputs {
            early: &early,
            ..inputs
        };
        let d = initramfs::build(&disk)?;
        write(&args.out.join("initramfs-disk.cpio"), &d.archive)?;
        if let Some(dir) = &args.rootfs_dir {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("remove {}", dir.display()))?;
            }
            initramfs::materialize(&disk, dir)
                .with_context(|| format!("root tree in {}", dir.display()))?;
        }
    }
    write(&args.out.join("initramfs.cpio"), &c.archive)?;

    let manifest = format!(
        "kernel_release={}\nkernel_file={kernel_name}\nkernel_bytes={}\nkernel_sha256={}\ninitramfs_bytes={}\ninitramfs_sha256={}\nagent_bytes={}\nmodules={}\nmodule_bytes={}\n",
        args.release,
        kernel.len(),
        sha256(&kernel),
        c.archive.len(),
        sha256(&c.archive),
        c.agent_bytes,
        c.modules.join(","),
        c.module_bytes,
    );
    write(&args.out.join("manifest.txt"), manifest.as_bytes())?;
    eprintln!(
        "image: done in {}\n  {kernel_name:<10} {:>10} bytes\n  initramfs  {:>10} bytes (agent {}, {} modules {})\n  initramfs sha256 {}",
        args.out.display(),
        kernel.len(),
        c.archive.len(),
        c.agent_bytes,
        c.modules.len(),
        c.module_bytes,
        sha256(&c.archive)
    );
    Ok(())
}
