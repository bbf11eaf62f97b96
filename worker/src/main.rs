//! `caxton-worker`: runs one agent request for the supervisor that spawned it, then exits.
//!
//! The worker's standard input is one end of a Unix socket pair; the supervisor holds the other.
//! That socket is the worker's only way to the world: it renders the prompt, asks the supervisor
//! for the completion, and returns the answer. It holds no credentials and opens nothing.

mod agent_loop;
mod channel;
mod prompt;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

/// Exit code when the worker gave up before or during the handshake.
const EXIT_SETUP: u8 = 3;
/// Exit code when the agent failed and said so to the supervisor.
const EXIT_AGENT_FAILED: u8 = 2;

fn main() -> ExitCode {
    let supervisor_pid = match parse_args() {
        Ok(pid) => pid,
        Err(message) => {
            eprintln!("caxton-worker: {message}");
            eprintln!(
                "caxton-worker is started by `caxton serve` for each agent request; it is not run by hand"
            );
            return ExitCode::from(EXIT_SETUP);
        }
    };
    if let Err(message) = bind_lifetime_to_supervisor(supervisor_pid) {
        eprintln!("caxton-worker: {message}");
        return ExitCode::from(EXIT_SETUP);
    }
    // SAFETY: the supervisor hands us a connected socket as fd 0 and nothing else owns fd 0.
    let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
    match agent_loop::run(socket) {
        Ok(agent_loop::Outcome::Answered) => ExitCode::SUCCESS,
        Ok(agent_loop::Outcome::AgentFailed) => ExitCode::from(EXIT_AGENT_FAILED),
        Err(e) => {
            eprintln!("caxton-worker: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// `caxton-worker --supervisor-pid PID`
fn parse_args() -> Result<libc::pid_t, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--supervisor-pid"), Some(pid), None) => pid
            .parse()
            .map_err(|_| format!("--supervisor-pid: not a process id: {pid:?}")),
        _ => Err("usage: caxton-worker --supervisor-pid PID".into()),
    }
}

/// Die with the supervisor. The supervisor may already be gone by the time we get here, so the
/// parent is checked after the death signal is armed: if it is not the supervisor we were started
/// by, the signal will never come and we leave at once.
fn bind_lifetime_to_supervisor(supervisor_pid: libc::pid_t) -> Result<(), String> {
    // SAFETY: plain prctl/getppid calls with constant arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot set parent-death signal: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    if parent != supervisor_pid {
        return Err(format!(
            "supervisor {supervisor_pid} is gone (parent is now {parent}); exiting"
        ));
    }
    Ok(())
}
