//! The OCI runtime spec for a task: the task's command and limits over the image's
//! defaults, inside secure defaults a task cannot turn off — fresh namespaces, the default
//! seccomp profile, no new privileges, a short capability list, masked /proc paths and a
//! read-only root.

use serde_json::{json, Value};

use super::idmap;
use super::seccomp;
use super::task::{parse_user, BadUser, TaskSpec};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("image config: {0}")]
    ImageConfig(String),
    #[error("nothing to run: the task has no args and the image no entrypoint or cmd")]
    NoCommand,
    #[error("task: user {0}")]
    User(#[from] BadUser),
    #[error("generated spec rejected by oci-spec: {0}")]
    Invalid(serde_json::Error),
}

/// The parts of an image's config that matter for running it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
}

impl ImageDefaults {
    pub fn from_config(bytes: &[u8]) -> Result<ImageDefaults, SpecError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| SpecError::ImageConfig(e.to_string()))?;
        let c = &v["config"];
        let strings = |key: &str| -> Result<Vec<String>, SpecError> {
            match &c[key] {
                Value::Null => Ok(Vec::new()),
                Value::Array(a) => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| SpecError::ImageConfig(format!("{key}: not strings")))
                    })
                    .collect(),
                _ => Err(SpecError::ImageConfig(format!("{key}: not an array"))),
            }
        };
        Ok(ImageDefaults {
            entrypoint: strings("Entrypoint")?,
            cmd: strings("Cmd")?,
            env: strings("Env")?,
            workdir: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
            user: c["User"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// Capabilities a task keeps: enough to run ordinary programs as root in its own world.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
];

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const TMPFS: &[&str] = &["nosuid", "nodev", "mode=1777", "size=65536k"];

/// The container's kernel filesystems: destination, type, source, options.
#[rustfmt::skip]
const MOUNTS: &[(&str, &str, &str, &[&str])] = &[
    ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
    ("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
    ("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
    ("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
    ("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
    ("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ("/tmp", "tmpfs", "tmpfs", TMPFS),
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The spec for container `id` with its root at `rootfs` (relative to the bundle).
pub fn build(
    id: &str,
    task: &TaskSpec,
    image: &ImageDefaults,
    cgroup_path: &str,
) -> Result<oci_spec::runtime::Spec, SpecError> {
    let args = if task.args.is_empty() {
        [image.entrypoint.clone(), image.cmd.clone()].concat()
    } else if !image.entrypoint.is_empty() && task.args.first().is_some_and(|a| !a.starts_with('/'))
    {
        // Like `docker run IMAGE ARGS`: task args go to the entrypoint, unless they name
        // a program by absolute path.
        [image.entrypoint.clone(), task.args.clone()].concat()
    } else {
        task.args.clone()
    };
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let user = if task.user.is_empty() {
        &image.user
    } else {
        &task.user
    };
    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        parse_user(user)?
    };
    if idmap::host_id(uid).is_none() || idmap::host_id(gid).is_none() {
        return Err(SpecError::User(BadUser(format!(
            "{user}: ids must be below {}",
            idmap::RANGE
        ))));
    }
    let mut env = vec![DEFAULT_PATH.to_string()];
    for e in image.env.iter().chain(&task.env) {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let cwd = [&task.workdir, &image.workdir]
        .into_iter()
        .find(|w| !w.is_empty())
        .map_or("/".to_string(), |w| w.to_string());

    let mount = |dest: &str, typ: &str, source: &str, options: &[&str]| json!({"destination": dest, "type": typ, "source": source, "options": options});
    let mut mounts: Vec<Value> = MOUNTS
        .iter()
        .map(|(dest, typ, source, options)| mount(dest, typ, source, options))
        .collect();
    for t in &task.tmpfs {
        mounts.push(mount(t, "tmpfs", "tmpfs", TMPFS));
    }

    let r = &task.resources;
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": {"shares": r.cpu_shares},
    });
    if r.memory_bytes > 0 {
        resources["memory"] = json!({"limit": r.memory_bytes, "swap": r.memory_bytes});
    }
    if r.pids > 0 {
        resources["pids"] = json!({"limit": r.pids});
    }
    if r.cpus > 0.0 {
        let period = 100_000u64;
        resources["cpu"]["period"] = json!(period);
        resources["cpu"]["quota"] = json!((r.cpus * period as f64).round() as i64);
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": !task.writable_rootfs},
        "hostname": format!("task-{}", &id[..id.len().min(12)]),
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": CAPS, "effective": CAPS, "permitted": CAPS,
                "inheritable": [], "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
        },
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroup_path,
            "namespaces": [
                {"type": "user"}, {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "network"}, {"type": "cgroup"},
            ],
            // One mapping each: libcontainer writes it directly (more need newuidmap).
            "uidMappings": [{"containerID": 0, "hostID": idmap::BASE, "size": idmap::RANGE}],
            "gidMappings": [{"containerID": 0, "hostID": idmap::BASE, "size": idmap::RANGE}],
            "resources": resources,
            "seccomp": seccomp::default_profile(),
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    });
    serde_json::from_value(spec).map_err(SpecError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceType as Ns;

    fn image() -> ImageDefaults {
        ImageDefaults::from_config(
            br#"{"config":{"Entrypoint":null,"Cmd":["/bin/sh"],"Env":["PATH=/bin","A=image"],
                "WorkingDir":"/srv","User":"1000:1000"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn task_overrides_image_defaults() {
        let task = TaskSpec {
            image: "x".into(),
            args: vec!["/bin/echo".into(), "hi".into()],
            env: vec!["A=task".into()],
            ..Default::default()
        };
        let s = build("abcdef0123456789", &task, &image(), "/sosna/abc").unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/echo", "hi"]);
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"A=task".to_string()) && !env.contains(&"A=image".to_string()));
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert_eq!(p.cwd().to_str(), Some("/srv"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(s.hostname().as_deref(), Some("task-abcdef012345"));
    }

    #[test]
    fn secure_defaults_are_always_there() {
        let task = TaskSpec {
            image: "x".into(),
            ..Default::default()
        };
        let s = build("id", &task, &image(), "/sosna/id").unwrap();
        assert!(s.root().as_ref().unwrap().readonly().unwrap());
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(true));
        let caps = p.capabilities().as_ref().unwrap();
        let bounding = caps.bounding().as_ref().unwrap();
        assert!(!bounding.contains(&oci_spec::runtime::Capability::SysAdmin));
        assert!(!bounding.contains(&oci_spec::runtime::Capability::NetRaw));
        let linux = s.linux().as_ref().unwrap();
        let ns: Vec<Ns> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        for want in [
            Ns::User,
            Ns::Pid,
            Ns::Mount,
            Ns::Ipc,
            Ns::Uts,
            Ns::Network,
            Ns::Cgroup,
        ] {
            assert!(ns.contains(&want), "{want:?} missing");
        }
        assert!(linux.seccomp().is_some());
        let uids = linux.uid_mappings().as_ref().unwrap();
        assert_eq!(
            (uids[0].container_id(), uids[0].host_id()),
            (0, idmap::BASE)
        );
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.pids().as_ref().unwrap().limit(), 256);
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(256 << 20));
        assert_eq!(
            linux.cgroups_path().as_ref().unwrap().to_str(),
            Some("/sosna/id")
        );
    }

    #[test]
    fn cpu_quota_and_missing_command() {
        let mut task = TaskSpec {
            image: "x".into(),
            ..Default::default()
        };
        task.resources.cpus = 0.5;
        let s = build("id", &task, &image(), "/c").unwrap();
        let cpu = s
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .cpu()
            .clone();
        assert_eq!(cpu.unwrap().quota(), Some(50_000));
        let empty = ImageDefaults::default();
        assert!(matches!(
            build("id", &task, &empty, "/c"),
            Err(SpecError::NoCommand)
        ));
        assert!(ImageDefaults::from_config(b"{\"config\":{\"Cmd\":\"sh\"}}").is_err());
        assert!(ImageDefaults::from_config(b"garbage").is_err());
    }
}
