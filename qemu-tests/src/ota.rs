//! What the OTA tests need on the host: the test bundles `./dev` builds next to the disk
//! image, and a small HTTP file server the guest reaches at 10.0.2.2 (QEMU user network).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::disk::Disk;
use crate::HarnessError;

/// A bundle `./dev` built beside the disk image: `target/image/x86_64-FLAVOR/` with
/// `SOSNA_IMAGE_VERSION=<version>-FLAVOR` (see `ota_bundles` in `dev`).
#[derive(Debug, Clone)]
pub struct Bundle {
    pub path: PathBuf,
    pub version: String,
}

impl Bundle {
    /// `flavor`: `ota2` (a good update), `otabad` (fails its health check), `otahang`
    /// (hangs at start, with a 20 s watchdog); `untrusted`
    /// picks ota2's contents signed by a CA the image does not trust.
    pub fn built(disk: &Disk, flavor: &str) -> Result<Bundle, HarnessError> {
        let dir = disk.path.parent().unwrap_or(Path::new("."));
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("x86_64");
        let (dir_flavor, suffix) = match flavor {
            "untrusted" => ("ota2", "-untrusted"),
            f => (f, ""),
        };
        let odir = dir.with_file_name(format!("{name}-{dir_flavor}"));
        let manifest = std::fs::read_to_string(odir.join("manifest.txt"))
            .map_err(|_| HarnessError::NoImage(odir.join("manifest.txt")))?;
        let get = |k: &str| {
            manifest
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| HarnessError::NoImage(odir.join(format!("manifest.txt: {k}"))))
        };
        let version = get("bundle_version")?;
        let file = get("bundle_file")?;
        let path = odir.join(file.replace(".raucb", &format!("{suffix}.raucb")));
        if !path.exists() {
            return Err(HarnessError::NoImage(path));
        }
        Ok(Bundle { path, version })
    }

    pub fn sha256(&self) -> String {
        let out = std::process::Command::new("sha256sum")
            .arg(&self.path)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)[..64].to_owned()
    }
}

/// Serves the files of one directory over HTTP/1.1 (GET, with single `Range: bytes=N-`
/// requests for resumed downloads) on 127.0.0.1, until dropped.
pub struct FileServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    pub fn serve(dir: &Path) -> std::io::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, flag) = (dir.to_owned(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let dir = dir.clone();
                        std::thread::spawn(move || {
                            if let Err(e) = answer(s, &dir) {
                                eprintln!("file server: {e}");
                            }
                        });
                    }
                    // Polled so that drop can end the thread; accept is otherwise idle.
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            }
        });
        Ok(FileServer { port, stop })
    }

    /// The URL the guest uses for `file` (QEMU's user network maps 10.0.2.2 to the host).
    pub fn guest_url(&self, file: &str) -> String {
        format!("http://10.0.2.2:{}/{file}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut from = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some(r) = line.trim().strip_prefix("Range: bytes=") {
            from = r.trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let mut out = stream;
    let name = path.trim_start_matches('/');
    let file = (!name.contains("..") && !name.contains('/'))
        .then(|| std::fs::File::open(dir.join(name)).ok())
        .flatten();
    let Some(mut file) = file else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    };
    let len = file.metadata()?.len();
    let status = if from > 0 {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    file.seek(SeekFrom::Start(from.min(len)))?;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        len - from.min(len)
    )?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}
