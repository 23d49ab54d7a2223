//! What a buyer or operator asks to run: the task description that arrives over the API,
//! checked before anything is created for it.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("task: {field}: {reason}")]
pub struct TaskError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> TaskError {
    TaskError {
        field,
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSpec {
    /// Image reference: `registry/repo:tag` or `registry/repo@sha256:…`.
    pub image: String,
    /// Program and arguments; empty runs the image's entrypoint and command.
    pub args: Vec<String>,
    /// Extra `KEY=value` environment, over the image's.
    pub env: Vec<String>,
    /// Working directory; empty takes the image's (or `/`).
    pub workdir: String,
    /// `uid[:gid]`; empty takes the image's user (or root, 0:0).
    pub user: String,
    pub resources: Resources,
    pub network: NetworkMode,
    /// Wall-clock limit in seconds; 0 = none. The container is killed when it passes.
    pub timeout_secs: u64,
    /// Give the container a writable root (its changes die with it). Off by default.
    pub writable_rootfs: bool,
    /// Extra writable tmpfs mounts (absolute paths inside the container).
    pub tmpfs: Vec<String>,
    pub restart: Restart,
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            image: String::new(),
            args: Vec::new(),
            env: Vec::new(),
            workdir: String::new(),
            user: String::new(),
            resources: Resources::default(),
            network: NetworkMode::None,
            timeout_secs: 0,
            writable_rootfs: false,
            tmpfs: Vec::new(),
            restart: Restart::Never,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// Memory limit in bytes (swap is not granted on top).
    pub memory_bytes: u64,
    /// Most processes/threads at once.
    pub pids: i64,
    /// CPU time as a number of CPUs (e.g. 0.5); 0 = no quota.
    pub cpus: f64,
    /// Relative CPU weight against other containers (cgroup v1 shares, 2..262144).
    pub cpu_shares: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            memory_bytes: 256 << 20,
            pids: 256,
            cpus: 0.0,
            cpu_shares: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A private network namespace with only loopback.
    None,
    /// A private network namespace with a veth to the host, NATed out of its uplink; the
    /// host itself and private networks stay out of reach.
    Nat,
}

/// A network mode that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network mode (none, nat)")]
pub struct UnknownNetworkMode(pub String);

impl std::str::FromStr for NetworkMode {
    type Err = UnknownNetworkMode;
    fn from_str(s: &str) -> Result<Self, UnknownNetworkMode> {
        match s {
            "none" => Ok(NetworkMode::None),
            "nat" => Ok(NetworkMode::Nat),
            _ => Err(UnknownNetworkMode(s.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    Never,
    OnFailure,
    Always,
}

impl TaskSpec {
    /// The manifest digest the image is pinned to (`name@sha256:<64 hex>`), if it is.
    pub fn pinned_digest(&self) -> Option<&str> {
        let (_, digest) = self.image.rsplit_once('@')?;
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then_some(digest)
    }

    pub fn validate(&self) -> Result<(), TaskError> {
        if self.image.is_empty() {
            return Err(bad("image", "missing"));
        }
        for e in &self.env {
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() && !k.contains('\0') => {}
                _ => return Err(bad("env", format!("{e:?} is not KEY=value"))),
            }
        }
        if !self.workdir.is_empty() && !self.workdir.starts_with('/') {
            return Err(bad(
                "workdir",
                format!("{:?} is not absolute", self.workdir),
            ));
        }
        if !self.user.is_empty() {
            parse_user(&self.user).map_err(|r| bad("user", r.to_string()))?;
        }
        for t in &self.tmpfs {
            if !t.starts_with('/') || t.split('/').any(|c| c == "..") {
                return Err(bad("tmpfs", format!("{t:?} is not a clean absolute path")));
            }
        }
        let r = &self.resources;
        if r.memory_bytes != 0 && r.memory_bytes < 4 << 20 {
            return Err(bad("resources.memory_bytes", "below the 4 MiB minimum"));
        }
        if r.pids < 0 {
            return Err(bad("resources.pids", "negative"));
        }
        if !(r.cpus >= 0.0 && r.cpus <= 1024.0) {
            return Err(bad(
                "resources.cpus",
                format!("{} is out of 0..=1024", r.cpus),
            ));
        }
        if !(2..=262_144).contains(&r.cpu_shares) {
            return Err(bad("resources.cpu_shares", "out of 2..=262144"));
        }
        if self.args.iter().chain(&self.env).any(|s| s.contains('\0')) {
            return Err(bad("args", "contains a NUL byte"));
        }
        Ok(())
    }
}

/// A user that is not numeric `uid[:gid]` or `root`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: only numeric uid[:gid] or root is supported")]
pub struct BadUser(pub String);

/// `uid[:gid]`, numeric (names would need the image's passwd file), or `root`.
pub fn parse_user(s: &str) -> Result<(u32, u32), BadUser> {
    if s == "root" {
        return Ok((0, 0));
    }
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let num = |x: &str| x.parse::<u32>().map_err(|_| BadUser(s.to_owned()));
    Ok((num(u)?, num(g)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_digests_are_recognised() {
        let hex = "ab".repeat(32);
        let pinned = TaskSpec {
            image: format!("reg:5000/x@sha256:{hex}"),
            ..Default::default()
        };
        assert_eq!(
            pinned.pinned_digest(),
            Some(format!("sha256:{hex}").as_str())
        );
        for image in [
            "reg/x:1",
            "reg/x@sha256:abc",
            "reg/x@sha512:00",
            &format!("x@sha256:{}", "AB".repeat(32)),
        ] {
            let t = TaskSpec {
                image: image.into(),
                ..Default::default()
            };
            assert_eq!(t.pinned_digest(), None, "{image}");
        }
    }

    #[test]
    fn defaults_are_valid_and_tight() {
        let t = TaskSpec {
            image: "r/x:1".into(),
            ..Default::default()
        };
        t.validate().unwrap();
        assert_eq!(t.network, NetworkMode::None);
        assert!(!t.writable_rootfs);
        assert!(t.resources.memory_bytes > 0 && t.resources.pids > 0);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: &[(&str, &str)] = &[
            (r#"{"image":""}"#, "image"),
            (r#"{"image":"x","env":["NOEQ"]}"#, "env"),
            (r#"{"image":"x","workdir":"rel"}"#, "workdir"),
            (r#"{"image":"x","user":"bob"}"#, "user"),
            (r#"{"image":"x","tmpfs":["/a/../b"]}"#, "tmpfs"),
            (
                r#"{"image":"x","resources":{"memory_bytes":1}}"#,
                "memory_bytes",
            ),
            (r#"{"image":"x","resources":{"cpus":-1}}"#, "cpus"),
        ];
        for (json, field) in cases {
            let t: TaskSpec = serde_json::from_str(json).unwrap();
            let e = t.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
        let e = serde_json::from_str::<TaskSpec>(r#"{"image":"x","privileged":true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("privileged"), "{e}");
        let e = serde_json::from_str::<TaskSpec>(r#"{"image":"x","network":"host"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("host"), "{e}");
    }

    #[test]
    fn network_modes_parse() {
        let t: TaskSpec = serde_json::from_str(r#"{"image":"x","network":"nat"}"#).unwrap();
        assert_eq!(t.network, NetworkMode::Nat);
        assert_eq!("none".parse::<NetworkMode>(), Ok(NetworkMode::None));
        assert!("host"
            .parse::<NetworkMode>()
            .unwrap_err()
            .to_string()
            .contains("none, nat"));
    }

    #[test]
    fn users_parse() {
        assert_eq!(parse_user("root").unwrap(), (0, 0));
        assert_eq!(parse_user("1000").unwrap(), (1000, 1000));
        assert_eq!(parse_user("1000:50").unwrap(), (1000, 50));
        assert!(parse_user("1000:x").is_err());
    }
}
