//! The platform calls the pool needs, in one place: pidfds, prlimit, process-group signals.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::config::WorkerLimits;

/// A pidfd for a child we have not reaped yet (so the PID cannot have been reused).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Signal the process a pidfd refers to; fails with ESRCH once it has exited.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: valid fd, plain signal number, no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Signal a whole process group. Callers guarantee the leader is not yet reaped, so the group id
/// still belongs to our worker.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: killpg with a positive group id and a signal number.
    let rc = unsafe { libc::killpg(pgid as libc::pid_t, signal) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Apply the worker's resource limits from outside with prlimit(2). This lets the spawn itself
/// use posix_spawn (vfork+exec, no page-table copy of the supervisor); the worker reads no job
/// until after the handshake, and the handshake is only answered once these are in force.
pub fn apply_limits(pid: u32, limits: &WorkerLimits, address_space: u64) -> io::Result<()> {
    let set = |resource, value: u64| -> io::Result<()> {
        let lim = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: prlimit on our own unreaped child with a valid rlimit struct.
        let rc = unsafe { libc::prlimit(pid as libc::pid_t, resource, &lim, std::ptr::null_mut()) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    set(libc::RLIMIT_CORE, 0)?;
    set(libc::RLIMIT_AS, address_space)?;
    set(libc::RLIMIT_CPU, limits.cpu_seconds)?;
    set(libc::RLIMIT_NOFILE, limits.open_files)?;
    Ok(())
}

/// Make this process the reaper of every orphan among its descendants: a worker's child that
/// detached itself (setsid, setpgid, a double fork) is re-parented here instead of to PID 1,
/// where [`adopted_children`] can find it and end it.
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and changes only this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Children of this process that `is_ours` does not claim: with the child-subreaper flag set,
/// these are orphans adopted from workers' descendants. Read from every thread's `children`
/// list (a re-parented orphan is attached to one of this process's threads).
pub fn adopted_children(is_ours: impl Fn(u32) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return found;
    };
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in list
            .split_ascii_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            if !is_ours(pid) && !found.contains(&pid) {
                found.push(pid);
            }
        }
    }
    found
}

/// SIGKILL a child of this process by PID. Only for unreaped children: until this process
/// reaps it, the PID cannot be given to anyone else.
pub fn kill_child(pid: u32) {
    // SAFETY: kill with a positive PID of our own unreaped child and a signal number.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Whether our unreaped child has exited, without reaping it.
pub fn has_exited(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on one PID with WNOWAIT leaves the child unreaped; `info` is valid.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is the field waitid fills; zero means no child has changed state.
    rc == 0 && unsafe { info.si_pid() } != 0
}

/// Reap a child of this process if it has exited; `true` once it is gone.
pub fn try_reap(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one PID with a valid status pointer and WNOHANG.
    let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    // ECHILD: not (or no longer) our child, nothing to reap.
    rc == pid as libc::pid_t || rc < 0
}

/// `SIGKILL` for 9, and so on; the number for unknown signals.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// Parse `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(text: &str) -> Option<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    (1..32).find(|&n| signal_name(n) == format!("SIG{bare}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("sigkill"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("19"), Some(19));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("0"), None);
    }
}
