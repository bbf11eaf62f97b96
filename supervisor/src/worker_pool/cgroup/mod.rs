//! A cgroup per worker: where each worker's processes are counted, bounded and ended together.
//! On a hybrid host whose v2 subtree has no pids controller, a worker is also put in a cgroup v1
//! pids cgroup, so `pids.max` bounds it still.
//!
//! The daemon prefers a delegated cgroup v2 subtree ([`v2`]: `Delegate=yes` in its unit), where
//! a worker's cgroup bounds the memory, processes and CPU of the worker and everything it
//! starts, is ended in one write to `cgroup.kill`, and reports the kernel's OOM kills. Without
//! one it falls back to a cgroup v1 `pids` cgroup ([`v1`]: processes only), and without that to
//! the process group and the child-subreaper sweep alone; memory and CPU are then bounded per
//! process by the worker's rlimits. Which one is in use, and why not a better one, is logged
//! once at start and shown by `caxton status`.

pub mod v1;
pub mod v2;

use std::io;

/// The limits of one worker's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct CgroupLimits {
    /// `memory.max`: the worker's memory limit, for it and its descendants together.
    pub memory: u64,
    /// `pids.max`.
    pub processes: u64,
    /// `cpu.max` quota per 100 ms.
    pub cpu_quota_micros: u64,
}

/// Where workers' cgroups are made.
#[derive(Debug)]
pub enum Cgroups {
    /// A delegated cgroup v2 subtree, with the cgroup v1 pids hierarchy beside it where the
    /// subtree has no pids controller (a hybrid host binds it to v1).
    V2 {
        /// The subtree.
        tree: v2::Tree,
        /// The pids hierarchy, bounding processes in the subtree's stead.
        pids: Option<v1::PidsCgroups>,
    },
    /// The cgroup v1 `pids` hierarchy.
    V1(v1::PidsCgroups),
}

/// What [`Cgroups::detect`] found: the cgroups to use, if any, and the line that says so.
pub struct Detected {
    /// Where workers' cgroups are made; `None` when nowhere.
    pub cgroups: Option<Cgroups>,
    /// One line for `caxton status`: the kind, where, what it bounds, and why no better one.
    pub summary: String,
}

impl Cgroups {
    /// Find the best place for workers' cgroups and log what was found, once.
    pub fn detect() -> Detected {
        let no_v2 = match v2::Tree::detect() {
            Ok(tree) => {
                let mut missing = tree.missing_controllers();
                let pids = if missing.contains(&"pids") {
                    v1::PidsCgroups::detect().ok()
                } else {
                    None
                };
                if pids.is_some() {
                    missing.retain(|c| *c != "pids");
                }
                let summary = tree.summary(pids.as_ref().map(v1::PidsCgroups::relative));
                if missing.is_empty() {
                    tracing::info!(cgroup = %tree.workers_relative(), "each worker gets a cgroup v2 of its own");
                } else {
                    tracing::warn!(
                        cgroup = %tree.workers_relative(),
                        missing = %missing.join(", "),
                        "each worker gets a cgroup v2 of its own, but the delegated subtree lacks \
                         controllers: what they would bound is bounded per process by rlimits only"
                    );
                }
                return Detected {
                    cgroups: Some(Self::V2 { tree, pids }),
                    summary,
                };
            }
            Err(reason) => reason,
        };
        match v1::PidsCgroups::detect() {
            Ok(pids) => {
                tracing::warn!(
                    cgroup_v2 = %no_v2,
                    cgroup = %pids.relative(),
                    "workers get no cgroup v2 of their own: a cgroup v1 pids cgroup bounds their \
                     processes, and rlimits (RLIMIT_AS, RLIMIT_CPU) bound each process's memory \
                     and CPU"
                );
                let summary = format!(
                    "v1 pids {} (pids.max; no cgroup v2: {no_v2})",
                    pids.relative()
                );
                Detected {
                    cgroups: Some(Self::V1(pids)),
                    summary,
                }
            }
            Err(no_v1) => {
                tracing::warn!(
                    cgroup_v2 = %no_v2,
                    cgroup_v1 = %no_v1,
                    "workers get no cgroup: their processes are not counted, descendants that \
                     leave the worker's process group are found only as adopted orphans, and \
                     rlimits (RLIMIT_AS, RLIMIT_CPU) bound each process's memory and CPU"
                );
                Detected {
                    cgroups: None,
                    summary: format!("none (no cgroup v2: {no_v2}; no cgroup v1 pids: {no_v1})"),
                }
            }
        }
    }

    /// Move `pid` into a cgroup of its own under `limits`.
    pub fn enter(&self, pid: u32, limits: &CgroupLimits) -> io::Result<WorkerCgroup> {
        match self {
            Self::V2 { tree, pids } => {
                let cgroup = tree.enter(pid, limits)?;
                let pids = match pids {
                    Some(hierarchy) => match hierarchy.enter(pid, limits.processes) {
                        Ok(pids) => Some(pids),
                        Err(e) => {
                            // Its v2 cgroup holds it all the same; only the count is unbounded.
                            tracing::warn!(pid, error = %e, "worker's processes are not counted");
                            None
                        }
                    },
                    None => None,
                };
                Ok(WorkerCgroup::V2 { cgroup, pids })
            }
            Self::V1(pids) => pids.enter(pid, limits.processes).map(WorkerCgroup::V1),
        }
    }
}

/// One worker's cgroup.
#[derive(Debug)]
pub enum WorkerCgroup {
    /// In the delegated cgroup v2 subtree (and the v1 pids hierarchy, where that bounds its
    /// processes).
    V2 {
        /// Its v2 cgroup.
        cgroup: v2::WorkerCgroup,
        /// Its v1 pids cgroup.
        pids: Option<v1::PidsCgroup>,
    },
    /// In the cgroup v1 `pids` hierarchy.
    V1(v1::PidsCgroup),
}

impl WorkerCgroup {
    /// SIGKILL every process in it, however it detached itself.
    pub fn kill_all(&self) {
        match self {
            Self::V2 { cgroup, pids } => {
                cgroup.kill_all();
                if let Some(pids) = pids {
                    pids.kill_all();
                }
            }
            Self::V1(c) => {
                c.kill_all();
            }
        }
    }

    /// How many processes the kernel's OOM killer ended in it (always 0 without a memory
    /// controller).
    pub fn oom_kills(&self) -> u64 {
        match self {
            Self::V2 { cgroup, .. } => cgroup.oom_kills(),
            Self::V1(_) => 0,
        }
    }

    /// Remove the directory; fails while a member has not finished exiting.
    pub fn remove(&self) -> io::Result<()> {
        match self {
            Self::V2 { cgroup, pids } => {
                // Retried until both are gone, so one already removed is no failure.
                let gone = |r: io::Result<()>| match r {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    other => other,
                };
                let pids = pids.as_ref().map_or(Ok(()), |p| gone(p.remove()));
                gone(cgroup.remove()).and(pids)
            }
            Self::V1(c) => c.remove(),
        }
    }
}
