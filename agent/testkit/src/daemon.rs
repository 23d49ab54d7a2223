//! `sosna daemon` as a child process for tests: its stdout and stderr read line by line,
//! waits for a line with a deadline, and a stop that always ends it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running `sosna daemon --config FILE`. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Daemon {
    child: Child,
    lines: Mutex<mpsc::Receiver<String>>,
    seen: Mutex<Vec<String>>,
}

impl Daemon {
    /// Starts `sosna` (the binary's path) as a daemon on `config`.
    pub fn start(sosna: impl AsRef<Path>, config: &Path) -> Daemon {
        let mut child = Command::new(sosna.as_ref())
            .args(["daemon", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", sosna.as_ref().display()));
        let (tx, lines) = mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Daemon {
            child,
            lines: Mutex::new(lines),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The first line (printed so far or within `timeout`) that contains `needle`; fails
    /// the test with everything printed if none comes.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let lines = self.lines.lock().unwrap();
        let mut seen = self.seen.lock().unwrap();
        loop {
            if let Some(l) = seen.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {needle:?}; got:\n{}", seen.join("\n")),
            }
        }
    }

    /// Every line printed so far.
    pub fn output(&self) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(self.lines.lock().unwrap().try_iter());
        seen.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal the daemon");
    }

    /// SIGTERM; once it has exited, everything it printed is in [`Daemon::output`].
    pub fn stop(&mut self) -> ExitStatus {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        }
        let status = self.child.wait().expect("wait for the daemon");
        // The readers end at EOF; a grandchild holding the pipes open must not hang us.
        let lines = self.lines.lock().unwrap();
        let mut seen = self.seen.lock().unwrap();
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
            seen.push(line);
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
