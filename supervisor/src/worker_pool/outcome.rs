//! How an execution ended: the [`Outcome`] a user and the history see, the conversation's
//! [`Verdict`] it is classified from, and the [`ExecutionReport`] that carries it.
//!
//! Invariant: how the worker's process ended is read first; a worker that died by a signal the
//! supervisor did not send is `Killed` (or `MemoryLimit`), whatever its socket said as it went,
//! so a worker's misbehaviour becomes its own execution's outcome and is never misnamed.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use caxton_ipc_protocol::CompletionResponse;
use serde::Serialize;

use super::os;
use crate::agent::AgentDefinition;
use crate::tools::ToolCallRecord;

/// Tokens and model of the completions an execution used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Provider name.
    pub provider: String,
    /// Model that answered.
    pub model: String,
    /// Prompt tokens, summed over completions; `None` when a provider did not report them
    /// (a partial sum would pass for the whole).
    pub prompt_tokens: Option<u32>,
    /// Completion tokens, summed over completions; `None` as for `prompt_tokens`.
    pub completion_tokens: Option<u32>,
}

impl Usage {
    /// Add one completion's counts; an unknown count makes the sum unknown.
    pub(super) fn add(&mut self, response: &CompletionResponse, provider: String) {
        let sum = |a: Option<u32>, b: Option<u32>| Some(a?.saturating_add(b?));
        self.provider = provider;
        self.model = response.model.clone();
        self.prompt_tokens = sum(self.prompt_tokens, response.prompt_tokens);
        self.completion_tokens = sum(self.completion_tokens, response.completion_tokens);
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The agent answered.
    Succeeded,
    /// The agent reported a failure (bad input, provider error).
    AgentFailed {
        /// The agent's message.
        message: String,
    },
    /// The deadline passed; the worker was terminated.
    DeadlineExceeded {
        /// The deadline in milliseconds.
        after_ms: u64,
        /// A signal an operator had sent, e.g. SIGSTOP.
        operator_signal: Option<i32>,
    },
    /// The worker died by a signal it did not get from us.
    Killed {
        /// The signal.
        signal: i32,
        /// Whether it came through `caxton worker kill`.
        by_operator: bool,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The worker could not get memory within its address-space limit and died of it.
    MemoryLimit {
        /// The limit in bytes.
        limit_bytes: u64,
        /// The signal it died by.
        signal: i32,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The worker exited without replying.
    WorkerExited {
        /// Its exit code.
        code: i32,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The worker sent something the protocol does not allow.
    ProtocolViolation {
        /// What it was.
        detail: String,
    },
    /// No worker could be started.
    SpawnFailed {
        /// Why.
        detail: String,
    },
    /// The supervisor was shutting down and stopped the worker.
    ShutDown,
    /// The caller went away before the answer (a client disconnected); the worker was stopped.
    Cancelled,
    /// The execution's record could not be written, so no worker was started.
    NotRecorded {
        /// Why.
        detail: String,
    },
}

impl Outcome {
    /// Short label for metrics and the database.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::AgentFailed { .. } => "agent_failed",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::Killed { .. } => "killed",
            Self::WorkerExited { .. } => "worker_exited",
            Self::ProtocolViolation { .. } => "protocol_violation",
            Self::SpawnFailed { .. } => "spawn_failed",
            Self::ShutDown => "shut_down",
            Self::Cancelled => "cancelled",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::NotRecorded { .. } => "not_recorded",
        }
    }

    /// The error a user sees, or `None` on success.
    pub fn error_message(&self, pid: Option<u32>) -> Option<String> {
        let worker = pid.map_or_else(|| "the worker".to_owned(), |p| format!("worker {p}"));
        Some(match self {
            Self::Succeeded => return None,
            Self::AgentFailed { message } => message.clone(),
            Self::DeadlineExceeded {
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
            Self::Killed {
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
            Self::MemoryLimit {
                limit_bytes,
                signal,
                stderr,
            } => format!(
                "{worker} ran out of memory: it reached its limit of {} ([limits] memory of the \
                 agent, or [worker] memory) and died by {}{}",
                human_bytes(*limit_bytes),
                os::signal_name(*signal),
                stderr_suffix(stderr)
            ),
            Self::WorkerExited { code, stderr } if stderr.is_empty() => {
                format!("{worker} exited with status {code} without replying")
            }
            Self::WorkerExited { code, stderr } => {
                format!(
                    "{worker} exited with status {code} without replying: {}",
                    stderr.trim()
                )
            }
            Self::ProtocolViolation { detail } => {
                format!("{worker} broke the worker protocol: {detail}")
            }
            Self::SpawnFailed { detail } => format!("cannot start a worker: {detail}"),
            Self::ShutDown => format!("the supervisor is shutting down; {worker} was stopped"),
            Self::Cancelled => {
                format!("the caller went away before the answer; {worker} was stopped")
            }
            Self::NotRecorded { detail } => {
                format!("the request was not run because its record could not be written: {detail}")
            }
        })
    }
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

/// Everything known about one finished execution.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionReport {
    /// Unique id.
    pub execution_id: String,
    /// Agent name.
    pub agent: String,
    /// Agent version the request ran with.
    pub agent_version: String,
    /// The worker's PID, if one was spawned.
    pub worker_pid: Option<u32>,
    /// Wall-clock start, seconds since the epoch.
    pub started_at: f64,
    /// Total time, milliseconds.
    pub duration_ms: f64,
    /// Spawn to completed handshake, milliseconds.
    pub startup_ms: Option<f64>,
    /// Time the worker waited for completions: from its request frame arriving to the answer
    /// frame being written, summed over calls, milliseconds.
    pub llm_ms: Option<f64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The user-facing error, if it failed.
    pub error: Option<String>,
    /// The answer, if it succeeded.
    pub answer: Option<String>,
    /// Model usage.
    pub usage: Option<Usage>,
    /// The tool calls the agent made, in order.
    pub tool_calls: Vec<ToolCallRecord>,
    /// The worker's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the worker, if any.
    pub exit_signal: Option<i32>,
    /// Why the end of this execution could not be recorded, when it could not: the caller must
    /// then be told, as the history will not show it.
    pub record_error: Option<String>,
}

impl ExecutionReport {
    /// A report of no more than who ran, when, for how long and how it ended: where every
    /// execution's report starts, and the whole report of one that ended before a worker took
    /// part (its record could not be written, or its caller went away).
    pub fn new(
        execution_id: String,
        agent: &AgentDefinition,
        started_at: f64,
        duration_ms: f64,
        outcome: Outcome,
    ) -> Self {
        Self {
            execution_id,
            agent: agent.name.to_string(),
            agent_version: agent.version.clone(),
            worker_pid: None,
            started_at,
            duration_ms,
            startup_ms: None,
            llm_ms: None,
            error: outcome.error_message(None),
            outcome,
            answer: None,
            usage: None,
            tool_calls: Vec::new(),
            exit_code: None,
            exit_signal: None,
            record_error: None,
        }
    }

    /// What the caller must be told when the execution's end could not be recorded.
    pub fn not_recorded_message(&self) -> Option<String> {
        self.record_error.as_ref().map(|reason| {
            format!(
                "the execution ran ({}) but its record could not be written, so the history \
                 will not show it: {reason}",
                self.outcome.label()
            )
        })
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
    /// Its address-space limit in bytes.
    pub address_space: u64,
}

impl ExecutionReport {
    /// Record how the worker's process ended (and the answer, if any) and classify the
    /// execution: how the process ended comes first, then what the conversation said.
    pub(super) fn classify(&mut self, verdict: Verdict, end: ProcessEnd) -> Outcome {
        self.exit_code = end.status.and_then(|s| s.code());
        self.exit_signal = end.status.and_then(|s| s.signal());
        // A worker that died by a signal nobody in the supervisor sent did not break the
        // protocol, whatever its socket said as it went.
        let died_of = self.exit_signal.filter(|_| !end.signalled_by_us);
        let killed = died_of.map(|signal| {
            if signal != libc::SIGKILL && OUT_OF_MEMORY_MARKS.iter().any(|m| end.stderr.contains(m))
            {
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
                self.answer = Some(answer);
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
                code: self.exit_code.unwrap_or(-1),
                stderr: end.stderr,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(prompt: Option<u32>, completion: Option<u32>) -> CompletionResponse {
        CompletionResponse {
            content: String::new(),
            model: "m".into(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            tool_calls: Vec::new(),
        }
    }

    #[test]
    fn one_completion_without_counts_makes_the_execution_s_counts_unknown() {
        let mut usage = Usage {
            prompt_tokens: Some(0),
            completion_tokens: Some(0),
            ..Usage::default()
        };
        usage.add(&completion(Some(5), Some(2)), "p".into());
        usage.add(&completion(Some(7), Some(3)), "p".into());
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(12), Some(5))
        );
        usage.add(&completion(Some(1), None), "p".into());
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(13), None)
        );
        usage.add(&completion(Some(1), Some(1)), "p".into());
        assert_eq!(
            usage.completion_tokens, None,
            "a later count does not make the sum known"
        );
    }

    fn report() -> ExecutionReport {
        let agent = crate::agent::parse_agent(
            std::path::Path::new("agents/classify.toml"),
            "name = \"classify\"\nversion = \"1\"\nuser_prompt_template = \"x\"\n",
        );
        ExecutionReport::new("e-1".into(), &agent.unwrap(), 1.5, 0.0, Outcome::Succeeded)
    }

    fn end(status: ExitStatus, signalled_by_us: bool, stderr: &str) -> ProcessEnd {
        ProcessEnd {
            status: Some(status),
            signalled_by_us,
            operator_signal: None,
            stderr: stderr.into(),
            timeout: Duration::from_secs(2),
            address_space: 256 << 20,
        }
    }

    #[test]
    fn a_worker_killed_by_a_signal_nobody_here_sent_is_killed_not_a_protocol_violation() {
        let mut report = report();
        let outcome = report.classify(
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
        let outcome = report.classify(
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
    fn a_deadline_stays_a_deadline_though_our_signal_ended_the_worker() {
        let mut report = report();
        let outcome = report.classify(
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
        let outcome = report.classify(
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
