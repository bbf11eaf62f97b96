//! The fallback: a cgroup v1 `pids` cgroup per worker, where the kernel offers one this process
//! may write to and no delegated cgroup v2 subtree is there. It bounds how many processes a
//! worker and its descendants may have at once (`pids.max`), and it lists every one of them
//! however it detached itself (setsid, setpgid, a double fork), so the end of a request can end
//! them all. Memory and CPU stay bounded by the worker's rlimits.

use std::io;
use std::path::{Path, PathBuf};

use crate::worker_pool::os;

/// Where per-worker cgroups are made: one directory of this process under the `pids` hierarchy.
#[derive(Debug)]
pub struct PidsCgroups {
    /// `<mount><own cgroup>/caxton-<pid>`.
    base: PathBuf,
    /// The same path relative to the hierarchy's root, as `/proc/PID/cgroup` shows it.
    relative: String,
}

impl PidsCgroups {
    /// Find the `pids` hierarchy and make this process's directory in it, or say why not.
    pub fn detect() -> Result<Self, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mount = pids_mount(&mountinfo).ok_or("no cgroup v1 pids controller is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let own = own_pids_path(&own).ok_or("this process has no pids cgroup")?;
        let relative = format!(
            "{}/caxton-{}",
            own.trim_end_matches('/'),
            std::process::id()
        );
        let base = mount.join(relative.trim_start_matches('/'));
        remove_stale_siblings(&base);
        match std::fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
        }
        Ok(Self { base, relative })
    }

    /// The directory under which workers' cgroups are made, relative to the hierarchy's root.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// Move `pid` into a cgroup of its own holding at most `max` processes.
    pub fn enter(&self, pid: u32, max: u64) -> io::Result<PidsCgroup> {
        let name = format!("worker-{pid}");
        let dir = self.base.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // A directory left by an earlier worker of the same PID that could not be removed
            // yet: it is empty or about to be, and reusing it is harmless.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let cgroup = PidsCgroup {
            dir,
            relative: format!("{}/{name}", self.relative),
        };
        let entered = std::fs::write(cgroup.dir.join("pids.max"), max.to_string())
            .and_then(|()| std::fs::write(cgroup.dir.join("cgroup.procs"), pid.to_string()));
        if let Err(e) = entered {
            // The worker may be gone already (its request was dropped); leave nothing behind.
            let _ = cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }
}

impl Drop for PidsCgroups {
    fn drop(&mut self) {
        // Empty by now unless a worker survived SIGKILL; then the directory stays for the next
        // start to remove.
        let _ = std::fs::remove_dir(&self.base);
    }
}

/// One worker's cgroup.
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
    relative: String,
}

impl PidsCgroup {
    /// The processes in it now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILL every process in the cgroup, through a pidfd opened for it and only after
    /// checking that the process the pidfd names is still in this cgroup, so a PID reused in
    /// between is never hit. Returns how many were signalled.
    pub fn kill_all(&self) -> usize {
        let mut signalled = 0;
        // Forks racing with the kill can add members; a few rounds catch them, and pids.max
        // bounds how many there can be.
        for _ in 0..8 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let Ok(pidfd) = os::pidfd_open(pid) else {
                    continue;
                };
                if self.holds(pid) && os::pidfd_send_signal(&pidfd, libc::SIGKILL).is_ok() {
                    signalled += 1;
                }
            }
        }
        signalled
    }

    /// Remove the directory; fails while a member has not finished exiting.
    pub fn remove(&self) -> io::Result<()> {
        std::fs::remove_dir(&self.dir)
    }

    fn holds(&self, pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| own_pids_path(&text).map(|p| p == self.relative))
            .unwrap_or(false)
    }
}

/// The mount point of the cgroup v1 hierarchy that has the `pids` controller.
fn pids_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_ascii_whitespace();
        let fstype = right.next()?;
        let super_options = right.nth(1)?;
        let mount_point = left.split_ascii_whitespace().nth(4)?;
        (fstype == "cgroup" && super_options.split(',').any(|o| o == "pids"))
            .then(|| PathBuf::from(mount_point))
    })
}

/// The `pids` line of a `/proc/PID/cgroup` file: `N:pids:/path`.
fn own_pids_path(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == "pids")
            .then(|| path.to_owned())
    })
}

/// Directories of earlier daemons that died without removing theirs: only those whose daemon
/// is gone (several daemons may share one parent cgroup), and only what is empty.
fn remove_stale_siblings(base: &Path) {
    let Some(parent) = base.parent() else { return };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_stale = path != base
            && entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("caxton-"))
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if is_stale {
            if let Ok(children) = std::fs::read_dir(&path) {
                for child in children.flatten() {
                    if child.path().is_dir() {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pids_hierarchy_is_found_in_mountinfo() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:12 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            pids_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(
            pids_mount("32 25 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            None
        );
    }

    #[test]
    fn the_own_pids_path_is_read_from_proc_cgroup() {
        let text = "9:name=systemd:/\n8:pids:/system.slice/caxton.service\n0::/\n";
        assert_eq!(
            own_pids_path(text).as_deref(),
            Some("/system.slice/caxton.service")
        );
        assert_eq!(own_pids_path("0::/user.slice\n"), None);
    }
}
