//! `caxton-worker`: runs one agent request for the supervisor that spawned it, then exits.
//!
//! The worker's standard input is one end of a Unix socket pair; the supervisor holds the other.
//! That socket is the worker's only way to the world: it renders the prompt, asks the supervisor
//! for the completion, and returns the answer. It holds no credentials and opens nothing.

mod agent_loop;
mod channel;
mod prompt;

use caxton_worker::sandbox;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

/// Exit code when the worker gave up before or during the handshake.
const EXIT_SETUP: u8 = 3;
/// Exit code when the agent failed and said so to the supervisor.
const EXIT_AGENT_FAILED: u8 = 2;

fn main() -> ExitCode {
    let (supervisor_pid, mode) = match parse_args() {
        Ok(args) => args,
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
    // Confined before a byte of the job is read; strict refuses to go on without every layer.
    let sandbox = match sandbox::confine(mode) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("caxton-worker: {message}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    // SAFETY: the supervisor hands us a connected socket as fd 0 and nothing else owns fd 0.
    let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
    match agent_loop::run(socket, sandbox) {
        Ok(agent_loop::Outcome::Answered) => ExitCode::SUCCESS,
        Ok(agent_loop::Outcome::AgentFailed) => ExitCode::from(EXIT_AGENT_FAILED),
        Err(e) => {
            eprintln!("caxton-worker: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// `caxton-worker --supervisor-pid PID [--sandbox strict|best-effort|off]` (no `--sandbox`:
/// strict).
fn parse_args() -> Result<(libc::pid_t, sandbox::Mode), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || "usage: caxton-worker --supervisor-pid PID [--sandbox MODE]".to_owned();
    let (pid, mode) = match args.as_slice() {
        [flag, pid] if flag == "--supervisor-pid" => (pid, None),
        [flag, pid, sandbox, mode] if flag == "--supervisor-pid" && sandbox == "--sandbox" => {
            (pid, Some(mode))
        }
        _ => return Err(usage()),
    };
    let pid = pid
        .parse()
        .map_err(|_| format!("--supervisor-pid: not a process id: {pid:?}"))?;
    let mode = match mode {
        None => sandbox::Mode::Strict,
        Some(m) => m.parse().map_err(|e| format!("--sandbox: {e}"))?,
    };
    Ok((pid, mode))
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
