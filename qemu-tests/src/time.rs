//! A real SNTP server on the host for guests to set their clocks from: Debian's chronyd
//! serving its local clock on a private port, never touching the host's (`-x`). Guests
//! reach it at 10.0.2.2 through QEMU's user network.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{io, HarnessError};

pub struct TimeServer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TimeServer {
    pub fn start() -> Result<TimeServer, HarnessError> {
        let dir = tempfile::tempdir().map_err(io("tempdir"))?;
        // chronyd drops to its own user after start: the directory must let it in.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(io("chmod"))?;
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(io("pick a port"))?
            .port();
        let conf = dir.path().join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\nbindcmdaddress /\n\
                 pidfile {}\n",
                dir.path().join("chronyd.pid").display()
            ),
        )
        .map_err(io("write chrony.conf"))?;
        let child = Command::new("chronyd")
            .args(["-x", "-d", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("start chronyd (./dev deps installs chrony)"))?;
        let server = TimeServer {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.answers() {
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    what: "chronyd to answer".into(),
                    after: Duration::from_secs(20),
                });
            }
        }
        Ok(server)
    }

    /// One SNTP request (version 4, client mode) answered in server mode.
    fn answers(&self) -> bool {
        let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
        let mut req = [0u8; 48];
        req[0] = 0x23;
        if sock.send_to(&req, ("127.0.0.1", self.port)).is_err() {
            return false;
        }
        let mut reply = [0u8; 48];
        matches!(sock.recv(&mut reply), Ok(48) if reply[0] & 0x07 == 4)
    }
}

impl Drop for TimeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
