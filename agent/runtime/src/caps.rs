//! The node's ceiling for every task, whoever sent it. A task's own limits may only be
//! lower: a field left at 0 ("unset") takes the cap, a field above the cap is refused.
//! Nothing a remote party writes turns a limit off.

use serde::{Deserialize, Serialize};

use super::task::TaskSpec;

/// Most extra tmpfs mounts a task may ask for (each is as large as `/tmp`).
pub const MAX_TMPFS_MOUNTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskCaps {
    /// Memory per task, in bytes (tmpfs writes, the writable root included: they are
    /// charged to the task's memory cgroup).
    pub memory_bytes: u64,
    /// Processes and threads per task.
    pub pids: i64,
    /// CPU time per task, in CPUs.
    pub cpus: f64,
    /// Wall-clock time per task, in seconds.
    pub wall_secs: u64,
    /// Size of a writable root's private layer, in bytes.
    pub scratch_bytes: u64,
}

impl Default for TaskCaps {
    fn default() -> Self {
        TaskCaps {
            memory_bytes: 2 << 30,
            pids: 1024,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            wall_secs: 24 * 3600,
            scratch_bytes: 1 << 30,
        }
    }
}

/// A task asked for more than the node allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("task asks for {field} {asked}, above this node's cap of {cap}")]
pub struct OverCap {
    pub field: &'static str,
    pub asked: String,
    pub cap: String,
}

/// A cap that is itself no limit (0), named for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("runtime cap {0} must be above 0")]
pub struct ZeroCap(pub &'static str);

impl TaskCaps {
    /// Refuses caps that would mean "unlimited".
    pub fn check(&self) -> Result<(), ZeroCap> {
        let zero = [
            ("max_memory_bytes", self.memory_bytes == 0),
            ("max_pids", self.pids <= 0),
            ("max_cpus", self.cpus.is_nan() || self.cpus <= 0.0),
            ("max_wall_secs", self.wall_secs == 0),
            ("max_scratch_bytes", self.scratch_bytes == 0),
        ];
        match zero.into_iter().find(|(_, z)| *z) {
            Some((name, _)) => Err(ZeroCap(name)),
            None => Ok(()),
        }
    }

    /// Fills `task`'s unset limits with the caps and refuses any above them.
    pub fn apply(&self, task: &mut TaskSpec) -> Result<(), OverCap> {
        fn fit<T: PartialOrd + Default + Copy + std::fmt::Display>(
            field: &'static str,
            asked: &mut T,
            cap: T,
        ) -> Result<(), OverCap> {
            if *asked == T::default() {
                *asked = cap;
            } else if *asked > cap {
                return Err(OverCap {
                    field,
                    asked: asked.to_string(),
                    cap: cap.to_string(),
                });
            }
            Ok(())
        }
        let r = &mut task.resources;
        fit("memory_bytes", &mut r.memory_bytes, self.memory_bytes)?;
        fit("pids", &mut r.pids, self.pids)?;
        fit("cpus", &mut r.cpus, self.cpus)?;
        fit("timeout_secs", &mut task.timeout_secs, self.wall_secs)?;
        if task.tmpfs.len() > MAX_TMPFS_MOUNTS {
            return Err(OverCap {
                field: "tmpfs mounts",
                asked: task.tmpfs.len().to_string(),
                cap: MAX_TMPFS_MOUNTS.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> TaskCaps {
        TaskCaps {
            memory_bytes: 512 << 20,
            pids: 100,
            cpus: 2.0,
            wall_secs: 60,
            scratch_bytes: 64 << 20,
        }
    }

    #[test]
    fn zero_takes_the_cap_and_more_is_refused() {
        let mut t = TaskSpec {
            image: "x".into(),
            ..Default::default()
        };
        t.resources.memory_bytes = 0;
        t.resources.pids = 0;
        caps().apply(&mut t).unwrap();
        assert_eq!(t.resources.memory_bytes, 512 << 20);
        assert_eq!(t.resources.pids, 100);
        assert_eq!(t.resources.cpus, 2.0);
        assert_eq!(t.timeout_secs, 60);

        let mut big = t.clone();
        big.resources.memory_bytes = 1 << 30;
        let e = caps().apply(&mut big).unwrap_err();
        assert_eq!(e.field, "memory_bytes");
        let mut long = t.clone();
        long.timeout_secs = 61;
        assert_eq!(caps().apply(&mut long).unwrap_err().field, "timeout_secs");
        let mut mounts = t;
        mounts.tmpfs = (0..9).map(|i| format!("/m{i}")).collect();
        assert_eq!(caps().apply(&mut mounts).unwrap_err().field, "tmpfs mounts");
    }

    #[test]
    fn a_zero_cap_is_refused() {
        TaskCaps::default().check().unwrap();
        let c = TaskCaps {
            wall_secs: 0,
            ..caps()
        };
        assert_eq!(c.check().unwrap_err(), ZeroCap("max_wall_secs"));
    }
}
