//! A throwaway OCI registry on loopback (Debian's `docker-registry`), for the demo fleet,
//! tests and benchmarks: started on a free port over a given storage directory, stopped
//! when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = "/usr/bin/docker-registry";

pub struct LocalRegistry {
    child: Child,
    addr: SocketAddr,
}

impl LocalRegistry {
    /// Starts a registry storing under `storage` and waits until it answers `/v2/`.
    pub fn start(storage: &Path) -> std::io::Result<LocalRegistry> {
        // A port the kernel just handed out and we released: free unless raced.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        std::fs::create_dir_all(storage)?;
        let config = storage.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                storage.join("data").display()
            ),
        )?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{BINARY}: {e}")))?;
        let mut reg = LocalRegistry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !reg.answers() {
            if let Some(status) = reg.child.try_wait()? {
                return Err(std::io::Error::other(format!("registry exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("registry did not answer within 15 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(reg)
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        let mut head = [0u8; 12];
        s.write_all(req.as_bytes()).is_ok()
            && s.read_exact(&mut head).is_ok()
            && head.ends_with(b" 200")
    }

    /// Stops the registry now (a test of "registry down").
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
