//! The worker's confinement, applied by the worker itself before it says hello and reads its
//! job, in this order:
//!
//! 1. `fds`: every inherited file descriptor closed but 0 (its channel to the supervisor) and
//!    1 and 2 (stdout and the stderr the supervisor keeps the end of);
//! 2. `no_new_privs`: `PR_SET_NO_NEW_PRIVS`, so nothing it could execute gains privileges (and
//!    so an unprivileged process may install the next two);
//! 3. `landlock`: a Landlock domain that handles every file-system right and, where the kernel
//!    has them (ABI 4 and later), TCP bind and connect, and grants none: the worker needs no file
//!    and no network, it only talks over fd 0;
//! 4. `seccomp`: a filter that allows the system calls a single-threaded worker talking over an
//!    open socket makes (reads and writes, memory, signals, time, randomness) and answers every
//!    other with `EPERM`: no `open`, no `socket`, no `execve`, no `clone`/`fork`, no `ptrace`,
//!    `bpf`, `mount`, `unshare`, `setns`, `keyctl` or `io_uring_*`.
//!
//! `strict` refuses to run when the kernel lacks a layer; `best-effort` runs and reports which
//! one is missing; `off` applies none. The report goes to the supervisor in the `Hello`.
//!
//! Invariant: nothing here depends on what the job says; a worker is confined before it reads a
//! byte of it.

mod filter;

use caxton_ipc_protocol::{SandboxLayer, SandboxReport};

/// How strictly a worker confines itself (`[worker] sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every layer, or no worker.
    Strict,
    /// Every layer the kernel has; the report says which are missing.
    BestEffort,
    /// None.
    Off,
}

impl Mode {
    /// The word the config and the worker's command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::BestEffort => "best-effort",
            Self::Off => "off",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(Self::Strict),
            "best-effort" => Ok(Self::BestEffort),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "{other:?} is not a sandbox mode: \"strict\", \"best-effort\" or \"off\""
            )),
        }
    }
}

/// One layer, by the name the report gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Close every inherited fd but 0, 1 and 2.
    Fds,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// No file system, no TCP.
    Landlock,
    /// The system-call allowlist.
    Seccomp,
}

impl Layer {
    /// Every layer, in the order they are applied.
    pub const ALL: [Layer; 4] = [
        Layer::Fds,
        Layer::NoNewPrivs,
        Layer::Landlock,
        Layer::Seccomp,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Fds => "fds",
            Self::NoNewPrivs => "no_new_privs",
            Self::Landlock => "landlock",
            Self::Seccomp => "seccomp",
        }
    }
}

/// Confine this process as `mode` says; `Err` (naming the missing layers and why) when `strict`
/// cannot be met, in which case the worker must not go on.
pub fn confine(mode: Mode) -> Result<SandboxReport, String> {
    let mut report = SandboxReport {
        mode: mode.as_str().to_owned(),
        layers: Vec::new(),
    };
    if mode == Mode::Off {
        return Ok(report);
    }
    for layer in Layer::ALL {
        report.layers.push(apply(layer));
    }
    judge(mode, report)
}

/// Whether `report` may go on as `mode` asks: `strict` refuses any missing layer.
fn judge(mode: Mode, report: SandboxReport) -> Result<SandboxReport, String> {
    let missing: Vec<String> = report
        .layers
        .iter()
        .filter(|l| !l.applied)
        .map(|l| format!("{} ({})", l.name, l.detail))
        .collect();
    if mode == Mode::Strict && !missing.is_empty() {
        return Err(format!(
            "sandbox = \"strict\", but this kernel cannot apply: {}",
            missing.join("; ")
        ));
    }
    Ok(report)
}

/// Apply one layer to this process; what it did, or why it could not.
pub fn apply(layer: Layer) -> SandboxLayer {
    let result = match layer {
        Layer::Fds => close_inherited(),
        Layer::NoNewPrivs => no_new_privs(),
        Layer::Landlock => landlock(),
        Layer::Seccomp => seccomp(),
    };
    let (applied, detail) = match result {
        Ok(detail) => (true, detail),
        Err(why) => (false, why),
    };
    SandboxLayer {
        name: layer.name().to_owned(),
        applied,
        detail,
    }
}

fn close_inherited() -> Result<String, String> {
    // SAFETY: close_range(2) on descriptors this process owns; none above 2 is in use by Rust
    // code at this point (the channel is fd 0).
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if closed == 0 {
        return Ok("every inherited descriptor closed but 0 (the channel), 1 and 2".into());
    }
    Err(format!(
        "close_range failed: {}",
        std::io::Error::last_os_error()
    ))
}

fn no_new_privs() -> Result<String, String> {
    // SAFETY: prctl with integer arguments only.
    let set = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if set == 0 {
        Ok("nothing executed can gain privileges".into())
    } else {
        Err(format!(
            "PR_SET_NO_NEW_PRIVS failed: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn landlock() -> Result<String, String> {
    use landlock::{ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus};
    // The newest ABI this code knows; an older kernel enforces what it has (best effort is the
    // crate's default compatibility), and the status says how much that was.
    let abi = ABI::V5;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("Landlock: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok("no file system access, no TCP bind or connect".into()),
        RulesetStatus::PartiallyEnforced => Ok(
            "no file system access; this kernel's Landlock cannot refuse every right (TCP needs ABI 4)"
                .into(),
        ),
        RulesetStatus::NotEnforced => Err("not supported by this kernel".into()),
    }
}

/// The system calls a worker makes once it is running: I/O on its open descriptors, memory,
/// signals, time, randomness (hash seeds), and exit.
fn allowed_syscalls() -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_close,
        libc::SYS_fcntl,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_ppoll,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_getrandom,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_sched_yield,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_poll, libc::SYS_stat]);
    calls
}

fn seccomp() -> Result<String, String> {
    let arch = filter::ARCH.ok_or_else(|| {
        format!(
            "seccomp: no filter for {} (x86_64, aarch64 and riscv64 have one)",
            std::env::consts::ARCH
        )
    })?;
    let allowed: Vec<u32> = allowed_syscalls()
        .into_iter()
        .map(|call| u32::try_from(call).map_err(|_| format!("seccomp: call number {call}")))
        .collect::<Result<_, _>>()?;
    let program = filter::allowlist(arch, &allowed, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32)?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))?;
    Ok(format!(
        "{} system calls allowed, every other refused with EPERM",
        allowed_syscalls().len()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn modes_are_read_as_the_config_writes_them() {
        assert_eq!("strict".parse::<Mode>(), Ok(Mode::Strict));
        assert_eq!("best-effort".parse::<Mode>(), Ok(Mode::BestEffort));
        assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
        assert!("on".parse::<Mode>().unwrap_err().contains("\"on\""));
    }

    fn report_without(missing: &str) -> SandboxReport {
        SandboxReport {
            mode: String::new(),
            layers: Layer::ALL
                .iter()
                .map(|l| SandboxLayer {
                    name: l.name().into(),
                    applied: l.name() != missing,
                    detail: if l.name() == missing {
                        "not supported by this kernel".into()
                    } else {
                        "in force".into()
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn strict_refuses_a_kernel_without_a_layer_and_best_effort_says_which_is_missing() {
        let e = judge(Mode::Strict, report_without("landlock")).unwrap_err();
        assert!(
            e.contains("cannot apply: landlock (not supported by this kernel)"),
            "{e}"
        );
        let ran = judge(Mode::BestEffort, report_without("landlock")).unwrap();
        assert_eq!(ran.missing(), ["landlock"]);
        assert!(
            ran.summary()
                .ends_with("fds no_new_privs -landlock seccomp"),
            "{}",
            ran.summary()
        );
        assert!(judge(Mode::Strict, report_without("none")).is_ok());
    }

    #[test]
    fn off_applies_nothing() {
        let report = confine(Mode::Off).unwrap();
        assert_eq!(report.mode, "off");
        assert!(report.layers.is_empty());
    }
}
