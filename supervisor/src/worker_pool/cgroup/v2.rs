//! A delegated cgroup v2 subtree: a cgroup per worker with `memory.max`, `pids.max` and
//! `cpu.max`, ended by `cgroup.kill`, its OOM kills read from `memory.events`.
//!
//! The subtree is the daemon's own cgroup when it is delegated: under systemd, a unit with
//! `Delegate=yes` (systemd marks such a cgroup with the `trusted.delegate` or `user.delegate`
//! extended attribute); elsewhere (a container's cgroup namespace, a cgroup an operator made
//! for it), any cgroup but the root that this process may write to. cgroup v2 lets only leaves
//! hold processes once controllers are enabled for children, so the daemon first moves itself
//! into a leaf of its own and the workers get a sibling:
//!
//! ```text
//! <delegated>/            controllers enabled for children
//!   supervisor/           the daemon (systemd's DelegateSubgroup=supervisor puts it there too)
//!   workers/              controllers enabled for children
//!     worker-<pid>/       memory.max, memory.swap.max = 0, memory.oom.group, pids.max, cpu.max
//! ```
//!
//! One delegated subtree serves one daemon: at start, what an earlier daemon left in
//! `workers/` is killed and removed.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::CgroupLimits;
use crate::config::CPU_PERIOD_MICROS;

/// The controllers a worker's cgroup uses, in the order they are reported.
const WANTED: [&str; 3] = ["memory", "pids", "cpu"];

/// The leaf the daemon moves itself into.
const SUPERVISOR_LEAF: &str = "supervisor";

/// The delegated subtree and what it offers.
#[derive(Debug)]
pub struct Tree {
    /// `<mount>/<delegated>/workers`.
    workers: PathBuf,
    /// `<delegated>/workers` as `/proc/PID/cgroup` shows it.
    workers_relative: String,
    /// Which of [`WANTED`] are enabled for the workers' cgroups.
    enabled: Vec<&'static str>,
}

impl Tree {
    /// Find the daemon's delegated subtree, move the daemon into its leaf, enable the
    /// controllers it offers for the workers' cgroups; or say why there is none.
    pub fn detect() -> Result<Self, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mount = cgroup2_mount(&mountinfo).ok_or("no cgroup v2 hierarchy is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let own = own_v2_path(&own).ok_or("this process is in no cgroup v2 cgroup")?;
        let (delegated, in_leaf) = delegated_of(own);
        if delegated == "/" {
            return Err(
                "the daemon runs in the root cgroup, which is not delegated to it \
                 (run it under systemd with Delegate=yes)"
                    .to_owned(),
            );
        }
        let root = mount.join(delegated.trim_start_matches('/'));
        check_delegated(&root, delegated)?;
        if !root.join("cgroup.kill").exists() {
            return Err(format!(
                "{delegated} has no cgroup.kill (Linux 5.14 or later is needed)"
            ));
        }

        let leaf = root.join(SUPERVISOR_LEAF);
        if in_leaf {
            let others: Vec<u32> = read_procs(&leaf)
                .into_iter()
                .filter(|&p| p != std::process::id())
                .collect();
            if !others.is_empty() {
                return Err(format!(
                    "{delegated}/{SUPERVISOR_LEAF} holds other processes too ({others:?}): one \
                     delegated cgroup serves one daemon"
                ));
            }
        } else {
            make_dir(&leaf)?;
            write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
        }

        let offered = read(&root.join("cgroup.controllers"))?;
        let offered: Vec<&str> = offered.split_ascii_whitespace().collect();
        let mut enabled: Vec<&'static str> = WANTED
            .into_iter()
            .filter(|c| offered.contains(c))
            .filter(|c| enable(&root, c))
            .collect();

        let workers = root.join("workers");
        make_dir(&workers)?;
        end_stale_workers(&workers);
        enabled.retain(|c| enable(&workers, c));
        Ok(Self {
            workers,
            workers_relative: format!("{}/workers", delegated.trim_end_matches('/')),
            enabled,
        })
    }

    /// `<delegated>/workers`, as `/proc/PID/cgroup` shows it.
    pub fn workers_relative(&self) -> &str {
        &self.workers_relative
    }

    /// The wanted controllers the subtree does not offer (or would not enable).
    pub fn missing_controllers(&self) -> Vec<&'static str> {
        WANTED
            .into_iter()
            .filter(|c| !self.enabled.contains(c))
            .collect()
    }

    /// One line for `caxton status`: where, and the limits in force; `v1_pids` is the cgroup v1
    /// pids hierarchy's directory when it bounds processes in the v2 subtree's stead.
    pub fn summary(&self, v1_pids: Option<&str>) -> String {
        let mut bounds: Vec<&str> = self
            .enabled
            .iter()
            .map(|c| match *c {
                "memory" => "memory.max",
                "pids" => "pids.max",
                _ => "cpu.max",
            })
            .collect();
        bounds.push("cgroup.kill");
        let missing = self.missing_controllers();
        let mut line = format!("v2 {} ({}", self.workers_relative, bounds.join(", "));
        if !missing.is_empty() {
            let instead: Vec<&str> = missing
                .iter()
                .map(|c| match *c {
                    "memory" => "memory by RLIMIT_AS per process",
                    "pids" => match v1_pids {
                        Some(_) => "pids.max from the cgroup v1 pids hierarchy",
                        None => "no pids bound",
                    },
                    _ => "CPU time by RLIMIT_CPU per process",
                })
                .collect();
            line.push_str(&format!(
                "; no {} controller delegated: {}",
                missing.join(", "),
                instead.join(", ")
            ));
        }
        line.push(')');
        line
    }

    /// Make `pid`'s cgroup with `limits` and move it there.
    pub fn enter(&self, pid: u32, limits: &CgroupLimits) -> io::Result<WorkerCgroup> {
        let dir = self.workers.join(format!("worker-{pid}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // Left by an earlier worker of the same PID whose last member was still exiting.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let cgroup = WorkerCgroup { dir };
        if let Err(e) = self
            .limit(&cgroup.dir, limits)
            .and_then(|()| std::fs::write(cgroup.dir.join("cgroup.procs"), pid.to_string()))
        {
            // The worker may be gone already (its request was dropped); leave nothing behind.
            let _ = cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    fn limit(&self, dir: &Path, limits: &CgroupLimits) -> io::Result<()> {
        if self.enabled.contains(&"memory") {
            std::fs::write(dir.join("memory.max"), limits.memory.to_string())?;
            // Swap would let the worker hold more than its limit; without swap accounting the
            // file is absent and there is nothing to close.
            match std::fs::write(dir.join("memory.swap.max"), "0") {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // An OOM kill ends the whole worker, not one of its processes.
            std::fs::write(dir.join("memory.oom.group"), "1")?;
        }
        if self.enabled.contains(&"pids") {
            std::fs::write(dir.join("pids.max"), limits.processes.to_string())?;
        }
        if self.enabled.contains(&"cpu") {
            std::fs::write(
                dir.join("cpu.max"),
                format!("{} {CPU_PERIOD_MICROS}", limits.cpu_quota_micros),
            )?;
        }
        Ok(())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Empty by now unless a worker survived SIGKILL; then the next start removes it.
        let _ = std::fs::remove_dir(&self.workers);
    }
}

/// One worker's cgroup in the delegated subtree.
#[derive(Debug)]
pub struct WorkerCgroup {
    dir: PathBuf,
}

impl WorkerCgroup {
    /// SIGKILL every process in it at once: the kernel walks the cgroup and stops forks
    /// racing with the walk, and no PID is named, so none that was reused can be hit.
    pub fn kill_all(&self) {
        if let Err(e) = std::fs::write(self.dir.join("cgroup.kill"), "1") {
            tracing::error!(cgroup = %self.dir.display(), error = %e, "cgroup.kill failed");
        }
    }

    /// How many processes the kernel's OOM killer ended in it.
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .and_then(|text| oom_kill_count(&text))
            .unwrap_or(0)
    }

    /// Remove the directory; fails while a member has not finished exiting.
    pub fn remove(&self) -> io::Result<()> {
        std::fs::remove_dir(&self.dir)
    }
}

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid host).
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_ascii_whitespace().next()?;
        let mount_point = left.split_ascii_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// The `0::/path` line of a `/proc/PID/cgroup` file.
fn own_v2_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|line| line.strip_prefix("0::"))
}

/// The delegated cgroup for a process in `own`, and whether the process is in its leaf
/// already (moved there by an earlier start, or by systemd's `DelegateSubgroup=`).
fn delegated_of(own: &str) -> (&str, bool) {
    match own.rsplit_once('/') {
        Some((parent, SUPERVISOR_LEAF)) => (if parent.is_empty() { "/" } else { parent }, true),
        _ => (own, false),
    }
}

/// Refuse a cgroup systemd manages but did not delegate (writing there would be undone, or
/// would confuse systemd), and one this process cannot write to.
fn check_delegated(root: &Path, relative: &str) -> Result<(), String> {
    let systemd_unit = relative
        .split('/')
        .any(|c| c.ends_with(".service") || c.ends_with(".scope"));
    let marked = ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| xattr(root, name).as_deref() == Some(b"1".as_slice()));
    // An unprivileged daemon cannot read trusted.*, and older systemd sets no user.delegate;
    // what systemd does for such a unit is hand it the cgroup: the directory is its own.
    let euid = nix::unistd::geteuid();
    let handed_over = !euid.is_root()
        && std::fs::metadata(root)
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == euid.as_raw());
    let marked = marked || handed_over;
    if systemd_unit && !marked {
        return Err(format!(
            "{relative} is a systemd unit's cgroup that is not delegated to the daemon (set \
             Delegate=yes in the unit)"
        ));
    }
    for file in ["cgroup.procs", "cgroup.subtree_control"] {
        let path = root.join(file);
        if let Err(e) = nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK) {
            return Err(format!("cannot write {}: {e}", path.display()));
        }
    }
    Ok(())
}

/// The value of an extended attribute, if it is set and readable.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = CString::new(name).ok()?;
    let mut value = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and live through the call; the buffer's length is
    // passed with it.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let len = usize::try_from(len).ok()?;
    value.get(..len).map(<[u8]>::to_vec)
}

/// Enable `controller` for `dir`'s children; whether it is.
fn enable(dir: &Path, controller: &str) -> bool {
    let path = dir.join("cgroup.subtree_control");
    match std::fs::write(&path, format!("+{controller}")) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(cgroup = %dir.display(), controller, error = %e, "cannot enable a cgroup controller");
            false
        }
    }
}

/// Kill and remove what an earlier daemon left in `workers/`.
fn end_stale_workers(workers: &Path) {
    let Ok(entries) = std::fs::read_dir(workers) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let stale = WorkerCgroup { dir: path };
            if stale.remove().is_ok() {
                continue;
            }
            tracing::warn!(cgroup = %stale.dir.display(), "ending what an earlier daemon's worker left");
            stale.kill_all();
            // The killed need a moment to exit before their cgroup can go.
            for _ in 0..100 {
                if stale.remove().is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn read_procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `oom_kill N` of a `memory.events` file.
fn oom_kill_count(events: &str) -> Option<u64> {
    events.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn make_dir(path: &Path) -> Result<(), String> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_hierarchy_is_found_on_unified_and_hybrid_hosts() {
        let hybrid = "\
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:12 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup2_mount("31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"),
            None
        );
    }

    #[test]
    fn the_daemon_finds_its_delegated_cgroup_from_inside_its_leaf_or_not() {
        let text = "8:pids:/\n0::/system.slice/caxton.service\n";
        let own = own_v2_path(text).unwrap_or_default();
        assert_eq!(own, "/system.slice/caxton.service");
        assert_eq!(delegated_of(own), ("/system.slice/caxton.service", false));
        assert_eq!(
            delegated_of("/system.slice/caxton.service/supervisor"),
            ("/system.slice/caxton.service", true)
        );
        assert_eq!(delegated_of("/supervisor"), ("/", true));
        assert_eq!(delegated_of("/"), ("/", false));
        assert_eq!(own_v2_path("8:pids:/\n"), None);
    }

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n";
        assert_eq!(oom_kill_count(events), Some(1));
        assert_eq!(oom_kill_count("low 0\n"), None);
    }

    #[test]
    fn a_systemd_units_cgroup_without_the_delegate_mark_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = check_delegated(dir.path(), "/system.slice/caxton.service")
            .err()
            .unwrap_or_default();
        assert!(err.contains("Delegate=yes"), "{err}");
        assert!(err.contains("/system.slice/caxton.service"), "{err}");
    }
}
