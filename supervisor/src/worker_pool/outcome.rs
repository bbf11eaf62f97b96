//! How an execution ended: the [`Outcome`] a user and the history see, the conversation's
//! [`Verdict`] it is classified from, and the [`ExecutionReport`] that carries it.
//!
//! Invariant: how the worker's process ended is read first; a worker that died by a signal the
//! supervisor did not send is `Killed` (or `MemoryLimit`), whatever its socket said as it went,
//! so a worker's misbehaviour becomes its own execution's outcome and is never misnamed.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

pub use caxton_api_contract::{ExecutionReport, Outcome, Placement, Usage};

use super::os;
use crate::agent::AgentDefinition;

/// The error a user sees for `outcome`, or `None` on success; `pid` names the worker.
pub fn error_message(outcome: &Outcome, pid: Option<u32>) -> Option<String> {
    let worker = pid.map_or_else(|| "the worker".to_owned(), |p| format!("worker {p}"));
    Some(match outcome {
        Outcome::Succeeded => return None,
        Outcome::AgentFailed { message } => message.clone(),
        Outcome::DeadlineExceeded {
            after_ms,
            operator_signal,
        } => {
            let mut m = format!(
                "deadline exceeded: no answer within {}; {worker} was terminated",
                human_ms(*after_ms)
            );
            if let Some(sig) = operator_signal {
                m.push_str(&format!(
                    " (an operator had sent it {})",
                    os::signal_name(*sig)
                ));
            }
            m
        }
        Outcome::Killed {
            signal,
            by_operator,
            stderr,
        } => format!(
            "{worker} was killed by signal {signal} ({}){}{}",
            os::signal_name(*signal),
            if *by_operator {
                " sent by an operator"
            } else {
                ""
            },
            stderr_suffix(stderr)
        ),
        Outcome::MemoryLimit {
            limit_bytes,
            signal,
            stderr,
        } => format!(
            "{worker} ran out of memory: it reached its limit of {} ([limits] memory of the \
             agent, or [worker] memory) and died by {}{}{}",
            human_bytes(*limit_bytes),
            os::signal_name(*signal),
            if *signal == libc::SIGKILL {
                " from the kernel's OOM killer in its cgroup"
            } else {
                ""
            },
            stderr_suffix(stderr)
        ),
        Outcome::WorkerExited { code, stderr } if stderr.is_empty() => {
            format!("{worker} exited with status {code} without replying")
        }
        Outcome::WorkerExited { code, stderr } => {
            format!(
                "{worker} exited with status {code} without replying: {}",
                stderr.trim()
            )
        }
        Outcome::ProtocolViolation { detail } => {
            format!("{worker} broke the worker protocol: {detail}")
        }
        Outcome::SpawnFailed { detail } => format!("cannot start a worker: {detail}"),
        Outcome::ShutDown => format!("the supervisor is shutting down; {worker} was stopped"),
        Outcome::Cancelled => {
            format!("the caller went away before the answer; {worker} was stopped")
        }
        Outcome::NotRecorded { detail } => {
            format!("the request was not run because its record could not be written: {detail}")
        }
    })
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(1024 * MIB) {
        format!("{} GiB", bytes / (1024 * MIB))
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// What a process that could not allocate prints before it aborts (Rust's allocation-failure
/// handler, glibc's malloc checks, C++'s bad_alloc).
const OUT_OF_MEMORY_MARKS: [&str; 4] = [
    "memory allocation of",
    "Cannot allocate memory",
    "std::bad_alloc",
    "out of memory",
];

fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A report of no more than who ran, when, for how long and how it ended: where every
/// execution's report starts, and the whole report of one that ended before a worker took part
/// (its record could not be written, or its caller went away).
pub fn new_report(
    execution_id: String,
    agent: &AgentDefinition,
    started_at: f64,
    duration_ms: f64,
    outcome: Outcome,
) -> ExecutionReport {
    ExecutionReport {
        execution_id,
        agent: agent.name.to_string(),
        agent_version: agent.version.clone(),
        worker_pid: None,
        started_at,
        duration_ms,
        startup_ms: None,
        llm_ms: None,
        error: error_message(&outcome, None),
        outcome,
        answer: None,
        usage: None,
        tool_calls: Vec::new(),
        exit_code: None,
        exit_signal: None,
        record_error: None,
        placement: Placement::default(),
        trace_id: None,
    }
}

/// How the conversation ended, before the worker's exit status is known.
pub(super) enum Verdict {
    /// The worker sent its answer.
    Answered(String),
    /// The worker reported the agent's failure.
    AgentFailed(String),
    /// The worker broke the protocol; what it did.
    Protocol(String),
    /// The deadline passed first.
    Deadline,
    /// The supervisor was shutting down.
    ShutDown,
    /// The socket closed or the process exited without a reply.
    Gone,
}

impl Verdict {
    /// Whether the worker is done and may exit by itself; any other is stopped.
    pub(super) fn lets_the_worker_exit(&self) -> bool {
        matches!(self, Self::Answered(_) | Self::AgentFailed(_) | Self::Gone)
    }
}

/// How the worker's process ended, and the limits it ran under, as the classification needs.
pub(super) struct ProcessEnd {
    /// Its exit status, once reaped.
    pub status: Option<ExitStatus>,
    /// Whether the supervisor signalled it before it exited (deadline, shutdown, protocol).
    pub signalled_by_us: bool,
    /// The last signal an operator sent it, if any.
    pub operator_signal: Option<i32>,
    /// The end of what it wrote to stderr.
    pub stderr: String,
    /// Its deadline.
    pub timeout: Duration,
    /// Its address-space limit in bytes (also its cgroup's `memory.max`).
    pub address_space: u64,
    /// Whether the kernel's OOM killer ended a process in its cgroup.
    pub oom_killed: bool,
}

/// Record in `report` how the worker's process ended (and the answer, if any) and classify the
/// execution: how the process ended comes first, then what the conversation said.
pub(super) fn classify(report: &mut ExecutionReport, verdict: Verdict, end: ProcessEnd) -> Outcome {
    {
        let this = report;
        this.exit_code = end.status.and_then(|s| s.code());
        this.exit_signal = end.status.and_then(|s| s.signal());
        // A worker that died by a signal nobody in the supervisor sent did not break the
        // protocol, whatever its socket said as it went.
        let died_of = this.exit_signal.filter(|_| !end.signalled_by_us);
        let killed = died_of.map(|signal| {
            // Out of memory: its cgroup's OOM killer sent the SIGKILL, or an allocation failed
            // against RLIMIT_AS and the process aborted.
            let oom = if signal == libc::SIGKILL {
                end.oom_killed
            } else {
                OUT_OF_MEMORY_MARKS.iter().any(|m| end.stderr.contains(m))
            };
            if oom {
                Outcome::MemoryLimit {
                    limit_bytes: end.address_space,
                    signal,
                    stderr: end.stderr.clone(),
                }
            } else {
                Outcome::Killed {
                    signal,
                    by_operator: end.operator_signal == Some(signal),
                    stderr: end.stderr.clone(),
                }
            }
        });
        match verdict {
            Verdict::Answered(answer) => {
                this.answer = Some(answer);
                Outcome::Succeeded
            }
            Verdict::AgentFailed(message) => Outcome::AgentFailed { message },
            Verdict::Deadline => Outcome::DeadlineExceeded {
                after_ms: u64::try_from(end.timeout.as_millis()).unwrap_or(u64::MAX),
                operator_signal: end.operator_signal,
            },
            Verdict::ShutDown => Outcome::ShutDown,
            Verdict::Protocol(detail) => killed.unwrap_or(Outcome::ProtocolViolation { detail }),
            Verdict::Gone => killed.unwrap_or(Outcome::WorkerExited {
                code: this.exit_code.unwrap_or(-1),
                stderr: end.stderr,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ExecutionReport {
        let agent = crate::agent::parse_agent(
            std::path::Path::new("agents/classify.toml"),
            "name = \"classify\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n",
        );
        new_report("e-1".into(), &agent.unwrap(), 1.5, 0.0, Outcome::Succeeded)
    }

    fn end(status: ExitStatus, signalled_by_us: bool, stderr: &str) -> ProcessEnd {
        ProcessEnd {
            status: Some(status),
            signalled_by_us,
            operator_signal: None,
            stderr: stderr.into(),
            timeout: Duration::from_secs(2),
            address_space: 256 << 20,
            oom_killed: false,
        }
    }

    #[test]
    fn a_worker_killed_by_a_signal_nobody_here_sent_is_killed_not_a_protocol_violation() {
        let mut report = report();
        let outcome = classify(
            &mut report,
            Verdict::Protocol("malformed frame".into()),
            end(ExitStatus::from_raw(libc::SIGKILL), false, ""),
        );
        assert_eq!(outcome.label(), "killed");
        assert_eq!(
            (report.exit_code, report.exit_signal),
            (None, Some(libc::SIGKILL))
        );
    }

    #[test]
    fn an_abort_after_a_failed_allocation_is_the_memory_limit() {
        let mut report = report();
        let outcome = classify(
            &mut report,
            Verdict::Gone,
            end(
                ExitStatus::from_raw(libc::SIGABRT),
                false,
                "memory allocation of 1048576 bytes failed\n",
            ),
        );
        assert!(
            matches!(outcome, Outcome::MemoryLimit { limit_bytes, signal, .. } if limit_bytes == 256 << 20 && signal == libc::SIGABRT),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_sigkill_from_the_cgroups_oom_killer_is_the_memory_limit() {
        let mut report = report();
        let outcome = classify(
            &mut report,
            Verdict::Gone,
            ProcessEnd {
                oom_killed: true,
                ..end(ExitStatus::from_raw(libc::SIGKILL), false, "")
            },
        );
        assert!(
            matches!(outcome, Outcome::MemoryLimit { signal, .. } if signal == libc::SIGKILL),
            "{outcome:?}"
        );
        // The same SIGKILL without an OOM kill in the cgroup is someone else's.
        let outcome = classify(
            &mut report,
            Verdict::Gone,
            end(ExitStatus::from_raw(libc::SIGKILL), false, ""),
        );
        assert_eq!(outcome.label(), "killed");
    }

    #[test]
    fn a_deadline_stays_a_deadline_though_our_signal_ended_the_worker() {
        let mut report = report();
        let outcome = classify(
            &mut report,
            Verdict::Deadline,
            end(ExitStatus::from_raw(libc::SIGTERM), true, ""),
        );
        assert_eq!(
            outcome,
            Outcome::DeadlineExceeded {
                after_ms: 2000,
                operator_signal: None
            }
        );
    }

    #[test]
    fn a_worker_that_left_without_a_reply_is_named_with_its_exit_status() {
        let mut report = report();
        let outcome = classify(
            &mut report,
            Verdict::Gone,
            end(ExitStatus::from_raw(7 << 8), false, "fixture: leaving\n"),
        );
        assert_eq!(
            outcome,
            Outcome::WorkerExited {
                code: 7,
                stderr: "fixture: leaving\n".into()
            }
        );
        assert_eq!(report.exit_code, Some(7));
    }
}
