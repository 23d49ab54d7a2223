//! The default seccomp profile: everything is allowed except what a compute task never
//! needs and what lets a process reach past its namespaces (mounts, new namespaces, kernel
//! keyrings, BPF, module loading, tracing other processes, changing the clock, rebooting).
//! Denied calls fail with EPERM, so programs see an ordinary permission error.

use serde_json::{json, Value};

const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "userfaultfd",
    "vhangup",
];

/// Port I/O and the like exist only on x86.
#[cfg(target_arch = "x86_64")]
const DENIED_ARCH: &[&str] = &["ioperm", "iopl", "modify_ldt", "uselib"];
#[cfg(not(target_arch = "x86_64"))]
const DENIED_ARCH: &[&str] = &[];

#[cfg(target_arch = "x86_64")]
const ARCHES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
#[cfg(target_arch = "aarch64")]
const ARCHES: &[&str] = &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHES: &[&str] = &[];

/// `clone` flags that create namespaces (CLONE_NEWNS … CLONE_NEWNET, CLONE_NEWCGROUP).
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // NEWNS
    0x0200_0000, // NEWCGROUP
    0x0400_0000, // NEWUTS
    0x0800_0000, // NEWIPC
    0x1000_0000, // NEWUSER
    0x2000_0000, // NEWPID
    0x4000_0000, // NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The profile as the `linux.seccomp` object of an OCI runtime spec.
pub fn default_profile() -> Value {
    let mut names: Vec<&str> = DENIED.iter().chain(DENIED_ARCH).copied().collect();
    names.sort_unstable();
    let mut rules = vec![json!({
        "names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
    })];
    // clone's flags are a register we can inspect; one rule per flag, any match denies.
    for flag in NAMESPACE_FLAGS {
        rules.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    // clone3 passes flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
    rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_is_a_valid_oci_seccomp_object_denying_escapes() {
        let p: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(default_profile()).unwrap();
        let denied: Vec<String> = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|s| s.names().clone())
            .collect();
        for must in [
            "mount",
            "unshare",
            "keyctl",
            "bpf",
            "init_module",
            "ptrace",
            "clone3",
        ] {
            assert!(denied.iter().any(|n| n == must), "{must} not denied");
        }
    }
}
