//! A small harness for booting sosna images under QEMU: start a VM with given kernel
//! arguments, network devices and initramfs overlays; match its serial console against
//! deadlines; drive it over QMP; and always clean the qemu process up.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sosna_image::cpio::CpioWriter;

pub mod disk;
pub mod fleet;
pub mod ota;
pub mod time;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("qemu exited ({status}) while waiting for {what}")]
    Exited { what: String, status: ExitStatus },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("image not built: {0} is missing (run ./image/build.sh)")]
    NoImage(PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A guest architecture. Everything that differs between them (qemu binary, machine,
/// console, kernel format, busybox) is decided here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// `$SOSNA_ARCH` (`x86_64` or `aarch64`), else x86_64.
    pub fn from_env() -> Arch {
        match std::env::var("SOSNA_ARCH").as_deref() {
            Ok("aarch64") => Arch::Aarch64,
            _ => Arch::X86_64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The OCI platform architecture.
    pub fn oci(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// `pc` for the i8042 (Ctrl-Alt-Del) and ACPI button; on ARM `virt` with a core that
    /// TCG emulates quickly (`max` is several times slower).
    fn machine(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["-M", "pc"],
            Arch::Aarch64 => &["-M", "virt", "-cpu", "cortex-a72"],
        }
    }

    fn kernel_file(self) -> &'static str {
        match self {
            Arch::X86_64 => "vmlinux",
            Arch::Aarch64 => "Image",
        }
    }

    /// Kernel arguments for a quiet, fast boot on this machine's serial console. CPU
    /// mitigations stay on here too: turning them off saved nothing measurable under TCG
    /// (`./dev bench boot` prints `mitigations_off_ms` beside `ready_ms`).
    pub fn boot_args(self) -> &'static str {
        match self {
            Arch::X86_64 => {
                "console=ttyS0 quiet nokaslr cryptomgr.notests \
                 tsc=reliable no_timer_check i8042.noaux panic=-1"
            }
            Arch::Aarch64 => "console=ttyAMA0 quiet nokaslr cryptomgr.notests panic=-1",
        }
    }

    /// Whether this host could run the guest under KVM at all.
    fn native(self) -> bool {
        self.name() == std::env::consts::ARCH
    }

    /// Debian's static busybox for this architecture: the host's own, or the arm64 one
    /// `./dev deps` extracts into the cache.
    pub fn busybox(self) -> Result<Vec<u8>, HarnessError> {
        let path = if self.native() {
            PathBuf::from("/bin/busybox")
        } else {
            cache_dir().join(format!("busybox-{}/bin/busybox", self.oci()))
        };
        std::fs::read(&path).map_err(io(format!(
            "read {} (./dev deps installs busybox-static)",
            path.display()
        )))
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("SOSNA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/sosna")
        })
}

/// The built artifacts of `image/build.sh`.
#[derive(Debug, Clone)]
pub struct Image {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Image {
    /// The image for [`Arch::from_env`]: `$SOSNA_IMAGE_DIR`, else `target/image/ARCH`.
    pub fn built() -> Result<Image, HarnessError> {
        let arch = Arch::from_env();
        let dir = std::env::var_os("SOSNA_IMAGE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/image")
                    .join(arch.name())
            });
        let image = Image {
            arch,
            kernel: dir.join(arch.kernel_file()),
            initramfs: dir.join("initramfs.cpio"),
        };
        for p in [&image.kernel, &image.initramfs] {
            if !p.exists() {
                return Err(HarnessError::NoImage(p.clone()));
            }
        }
        Ok(image)
    }
}

/// Files added to the initramfs for one boot (a test config, a workload), as a second
/// cpio archive the kernel unpacks over the first.
#[derive(Default)]
pub struct Overlay {
    files: Vec<(String, u32, Vec<u8>)>,
}

impl Overlay {
    pub fn file(mut self, path: &str, perm: u32, data: impl Into<Vec<u8>>) -> Overlay {
        self.files.push((path.to_owned(), perm, data.into()));
        self
    }

    /// Debian's static busybox for `arch` at /bin/busybox, for shell workloads.
    pub fn busybox(self, arch: Arch) -> Result<Overlay, HarnessError> {
        Ok(self.file("/bin/busybox", 0o755, arch.busybox()?))
    }

    fn archive(&self) -> Result<Vec<u8>, HarnessError> {
        let mut w = CpioWriter::new(Vec::new(), 0);
        let mut dirs: Vec<String> = self
            .files
            .iter()
            .flat_map(|(p, _, _)| {
                let p = p.trim_start_matches('/');
                p.match_indices('/')
                    .map(|(i, _)| p[..i].to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            w.dir(d, 0o755).map_err(io("overlay dir"))?;
        }
        for (path, perm, data) in &self.files {
            w.file(path, *perm, data).map_err(io("overlay file"))?;
        }
        w.finish().map_err(io("overlay trailer"))
    }
}

/// How to boot one VM.
pub struct VmConfig {
    pub image: Image,
    /// Appended to [`Arch::boot_args`].
    pub append: String,
    pub overlay: Option<Overlay>,
    /// `-netdev` specs; each gets a virtio-net device with a distinct MAC.
    pub netdevs: Vec<String>,

    pub memory_mb: u32,
    /// `-rtc base=` for the emulated clock; the host's UTC time if unset.
    pub rtc_base: Option<String>,
}

impl VmConfig {
    pub fn new(image: Image) -> VmConfig {
        VmConfig {
            image,
            append: String::new(),
            overlay: None,
            netdevs: vec!["user".into()],
            memory_mb: 256,
            rtc_base: None,
        }
    }

    /// Starts the guest's real-time clock at `base` (`1970-01-01T00:00:00`, say).
    pub fn rtc(mut self, base: &str) -> VmConfig {
        self.rtc_base = Some(base.to_owned());
        self
    }

    pub fn append(mut self, args: &str) -> VmConfig {
        self.append = args.to_owned();
        self
    }

    pub fn overlay(mut self, overlay: Overlay) -> VmConfig {
        self.overlay = Some(overlay);
        self
    }

    /// Adds a NIC (the guest's next ethN) on the shared L2 segment `lan`, beside the
    /// user-network uplink that reaches the host as 10.0.2.2.
    pub fn on_lan(mut self, lan: &Lan) -> VmConfig {
        self.netdevs.push(format!(
            "socket,mcast=230.0.0.1:{},localaddr=127.0.0.1",
            lan.port
        ));
        self
    }
}

/// A shared L2 segment: QEMU's socket netdev over one loopback multicast group per test.
pub struct Lan {
    pub port: u16,
}

impl Lan {
    /// A segment on its own multicast port, so concurrent tests do not share frames.
    pub fn new() -> std::io::Result<Lan> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        Ok(Lan {
            port: socket.local_addr()?.port(),
        })
    }
}

/// `tcg` unless `$SOSNA_QEMU_ACCEL` says otherwise or a probe boot shows KVM really runs a
/// guest (on some hosts /dev/kvm exists but KVM_RUN fails).
pub fn accel(image: &Image) -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var("SOSNA_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok(_) => "tcg",
        Err(_) if image.arch.native() && Path::new("/dev/kvm").exists() && kvm_probe(image) => {
            "kvm"
        }
        Err(_) => "tcg",
    })
}

/// Boots the kernel with no root under KVM: a working KVM reaches "Kernel panic" (no root
/// filesystem) and exits because of -no-reboot; a broken one errors or never prints.
fn kvm_probe(image: &Image) -> bool {
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-M",
            "pc",
            "-m",
            "128",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(&image.kernel)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let mut out = String::new();
            let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
            return out.contains("Kernel panic");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

pub(crate) type Console = Arc<(Mutex<String>, Condvar)>;

/// A running VM, booted directly ([`Vm::boot`]: kernel + initramfs) or from the disk image
/// ([`Vm::boot_disk`](crate::disk)). Dropping it kills qemu; a test that panicked gets the
/// console dumped.
pub struct Vm {
    child: Child,
    console: Console,
    qmp: Option<Qmp>,
    /// Output pump threads (stdout, stderr) that have reached EOF.
    pumps_done: Arc<AtomicUsize>,
    _dir: Option<tempfile::TempDir>,
    started: Instant,
}

static NEXT_MAC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0x10);

impl Vm {
    pub fn boot(cfg: VmConfig) -> Result<Vm, HarnessError> {
        let dir = tempfile::tempdir().map_err(io("tempdir"))?;
        let initrd = match &cfg.overlay {
            None => cfg.image.initramfs.clone(),
            Some(overlay) => {
                let path = dir.path().join("initrd.cpio");
                let mut data = std::fs::read(&cfg.image.initramfs).map_err(io("read initramfs"))?;
                data.extend_from_slice(&overlay.archive()?);
                std::fs::write(&path, data).map_err(io("write initrd"))?;
                path
            }
        };
        let qmp_path = dir.path().join("qmp.sock");
        let arch = cfg.image.arch;
        let mut cmd = Command::new(arch.qemu());
        cmd.args(["-accel", accel(&cfg.image)])
            .args(arch.machine())
            .arg("-m")
            .arg(cfg.memory_mb.to_string())
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot"])
            // Entropy for the guest: without it the kernel's CRNG seeds slowly under TCG.
            .args(["-device", "virtio-rng-pci"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .arg("-kernel")
            .arg(&cfg.image.kernel)
            .arg("-initrd")
            .arg(&initrd)
            .arg("-append")
            .arg(format!("{} {}", arch.boot_args(), cfg.append));
        if let Some(base) = &cfg.rtc_base {
            cmd.arg("-rtc").arg(format!("base={base}"));
        }
        for (i, spec) in cfg.netdevs.iter().enumerate() {
            let mac = NEXT_MAC.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            cmd.arg("-netdev").arg(format!("{spec},id=n{i}"));
            cmd.arg("-device").arg(format!(
                "virtio-net-pci,netdev=n{i},romfile=,mac=52:54:00:12:{i:02x}:{mac:02x}"
            ));
        }
        let mut vm = Vm::spawn(cmd, arch.qemu(), Some(dir))?;
        vm.qmp = Some(Qmp::connect(&qmp_path, &mut vm.child)?);
        Ok(vm)
    }

    /// Starts `cmd` (a qemu command line with the serial console on stdio) in its own
    /// process group, so Drop can kill qemu and anything it forked, and collects its output.
    pub(crate) fn spawn(
        mut cmd: Command,
        program: &str,
        dir: Option<tempfile::TempDir>,
    ) -> Result<Vm, HarnessError> {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(io(format!("spawn {program} (./dev deps)")))?;
        let console: Console = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let pumps_done = Arc::new(AtomicUsize::new(0));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for stream in streams.into_iter().flatten() {
            let (console, done) = (console.clone(), pumps_done.clone());
            std::thread::spawn(move || pump(stream, console, done));
        }
        Ok(Vm {
            child,
            console,
            qmp: None,
            pumps_done,
            _dir: dir,
            started: Instant::now(),
        })
    }

    /// Everything the console printed so far.
    pub fn console(&self) -> String {
        self.console.0.lock().unwrap().clone()
    }

    /// Time since qemu was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `done(console)` holds; fails on timeout or if qemu exits first.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, HarnessError> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.console;
        let mut text = lock.lock().unwrap();
        loop {
            if done(&text) {
                return Ok(text.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HarnessError::Timeout {
                    what: what.to_owned(),
                    after: timeout,
                });
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Judge only after both pump threads have read qemu's output to EOF.
                let drained = Instant::now() + Duration::from_secs(2);
                while self.pumps_done.load(Ordering::Acquire) < 2 && Instant::now() < drained {
                    text = cvar
                        .wait_timeout(text, Duration::from_millis(100))
                        .unwrap()
                        .0;
                }
                if done(&text) {
                    return Ok(text.clone());
                }
                return Err(HarnessError::Exited {
                    what: what.to_owned(),
                    status,
                });
            }
            // Wake on new output, or every 100 ms to notice qemu exiting.
            let wait = (deadline - now).min(Duration::from_millis(100));
            text = cvar.wait_timeout(text, wait).unwrap().0;
        }
    }

    /// Waits for a complete console line containing `needle`; returns that line.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, HarnessError> {
        let what = format!("{needle:?} on the console");
        let text = self.wait_until(&what, timeout, |t| complete_line(t, needle).is_some())?;
        Ok(complete_line(&text, needle).unwrap_or_default().to_owned())
    }

    /// Waits until `n` complete console lines contain `needle` (counting every boot so
    /// far, for a guest that reboots); returns the last of them.
    pub fn wait_for_nth(
        &mut self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let what = format!("{needle:?} {n} times on the console");
        let text = self.wait_until(&what, timeout, |t| nth_line(t, needle, n).is_some())?;
        Ok(nth_line(&text, needle, n).unwrap_or_default().to_owned())
    }

    /// Sends one QMP command and returns its `return` value.
    pub fn qmp(&mut self, command: &str, args: Value) -> Result<Value, HarnessError> {
        self.qmp
            .as_mut()
            .ok_or_else(|| HarnessError::Qmp("not connected".into()))?
            .execute(command, args)
    }

    /// Presses Ctrl-Alt-Del on the guest's keyboard.
    pub fn ctrl_alt_del(&mut self) -> Result<(), HarnessError> {
        let keys: Vec<Value> = ["ctrl", "alt", "delete"]
            .iter()
            .map(|k| json!({"type": "qcode", "data": k}))
            .collect();
        self.qmp("send-key", json!({ "keys": keys })).map(drop)
    }

    /// Presses the ACPI power button (what a VM host's "shut down" does).
    pub fn powerdown(&mut self) -> Result<(), HarnessError> {
        self.qmp("system_powerdown", json!({})).map(drop)
    }

    /// Waits for qemu to exit by itself (the guest powered off or rebooted).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(io("wait for qemu"))? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: "qemu to exit".into(),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `n`th (from 1) newline-terminated line of `text` that contains `needle`.
fn nth_line<'t>(text: &'t str, needle: &str, n: usize) -> Option<&'t str> {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .filter(|l| l.contains(needle))
        .nth(n.checked_sub(1)?)
}

/// The first newline-terminated line of `text` that contains `needle`.
pub(crate) fn complete_line<'t>(text: &'t str, needle: &str) -> Option<&'t str> {
    text.split_inclusive('\n')
        .find(|l| l.ends_with('\n') && l.contains(needle))
        .map(str::trim_end)
}

pub(crate) fn pump(mut stream: Box<dyn Read + Send>, console: Console, done: Arc<AtomicUsize>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        let (lock, cvar) = &*console;
        lock.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&buf[..n]));
        cvar.notify_all();
    }
    // Count EOF under the lock so a waiter can't miss the wake-up.
    let (lock, cvar) = &*console;
    let _guard = lock.lock().unwrap();
    done.fetch_add(1, Ordering::Release);
    cvar.notify_all();
}

impl Vm {
    /// Stops qemu (SIGTERM, then SIGKILL) and waits for it, so its disk is quiet.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let group = -(self.child.id() as i32);
            // SAFETY: signalling our own child's process group; no memory involved.
            unsafe { libc::kill(group, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: as above.
            unsafe { libc::kill(group, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "----- guest console ({:.1} s) -----\n{}\n----- end of console -----",
                self.started.elapsed().as_secs_f64(),
                self.console()
            );
        }
    }
}

/// A QMP connection, negotiated.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path, child: &mut Child) -> Result<Qmp, HarnessError> {
        // qemu creates the socket during start-up; wait for it with a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(io("connect QMP")(e)),
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(HarnessError::Exited {
                            what: "QMP socket".into(),
                            status,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io("QMP timeout"))?;
        let writer = stream.try_clone().map_err(io("QMP clone"))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(HarnessError::Qmp(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value, HarnessError> {
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(io("QMP read"))?;
        serde_json::from_str(&line)
            .map_err(|e| HarnessError::Qmp(format!("bad reply {line:?}: {e}")))
    }

    fn execute(&mut self, command: &str, args: Value) -> Result<Value, HarnessError> {
        let msg = json!({"execute": command, "arguments": args});
        writeln!(self.writer, "{msg}").map_err(io("QMP write"))?;
        loop {
            let reply = self.read()?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(HarnessError::Qmp(format!("{command}: {err}")));
            }
            // Asynchronous events (SHUTDOWN, …) interleave; skip them.
        }
    }
}

/// The fields of a `SOSNA READY` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    pub version: String,
    pub boot_ms: u64,
    pub rss_kb: u64,
}

impl Ready {
    pub fn parse(line: &str) -> Option<Ready> {
        let rest = line.trim().strip_prefix("SOSNA READY ")?;
        let mut version = None;
        let mut boot_ms = None;
        let mut rss_kb = None;
        for kv in rest.split(' ') {
            match kv.split_once('=')? {
                ("version", v) => version = Some(v.to_owned()),
                ("boot_ms", v) => boot_ms = v.parse().ok(),
                ("rss_kb", v) => rss_kb = v.parse().ok(),
                _ => return None,
            }
        }
        Some(Ready {
            version: version?,
            boot_ms: boot_ms?,
            rss_kb: rss_kb?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_parse_strictly() {
        assert_eq!(
            Ready::parse("SOSNA READY version=0.1.0 boot_ms=2085 rss_kb=1796\r"),
            Some(Ready {
                version: "0.1.0".into(),
                boot_ms: 2085,
                rss_kb: 1796
            })
        );
        assert_eq!(
            Ready::parse("SOSNA READY version=0.1.0 boot_ms=x rss_kb=1"),
            None
        );
        assert_eq!(Ready::parse("SOSNA READY version=0.1.0 boot_ms=1"), None);
        assert_eq!(Ready::parse("READY version=0.1.0 boot_ms=1 rss_kb=1"), None);
    }

    #[test]
    fn only_finished_lines_match() {
        assert_eq!(complete_line("a\nSOSNA READY vers", "SOSNA READY"), None);
        assert_eq!(
            complete_line("a\nSOSNA READY x=1\r\nb", "SOSNA READY"),
            Some("SOSNA READY x=1")
        );
    }

    #[test]
    fn overlay_lists_parents_before_files() {
        let a = Overlay::default()
            .file("/etc/sosna/config.toml", 0o644, "x")
            .archive()
            .unwrap();
        let text = String::from_utf8_lossy(&a);
        let etc = text.find("etc\0").unwrap();
        let sosna = text.find("etc/sosna\0").unwrap();
        let file = text.find("etc/sosna/config.toml\0").unwrap();
        assert!(etc < sosna && sosna < file);
    }
}
