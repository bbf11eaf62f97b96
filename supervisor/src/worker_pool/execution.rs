//! One execution: spawn a worker, hold the conversation, enforce the deadline, reap, classify.

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use caxton_ipc_protocol::{
    CompletionFailure, CompletionRequest, CompletionResponse, Job, JobAgent, JobInput,
    MAX_FRAME_LEN, PROTOCOL_VERSION, SupervisorMessage, ToolCall, ToolResult, ToolSpec,
    WorkerMessage, decode_payload, encode_frame,
};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::Instrument;

use super::cgroup::WorkerCgroup;
use super::live::{Entry, WorkerState};
use super::{WorkerPool, os};
use crate::agent::AgentDefinition;
use crate::tools::ToolCallRecord;

/// What the supervisor does for a worker on request. Implemented by the supervisor, which checks
/// each request against the agent's allowlists.
#[async_trait::async_trait]
pub trait WorkerServices: Send + Sync {
    /// Produce an LLM completion for `agent`.
    async fn complete(
        &self,
        agent: &AgentDefinition,
        request: CompletionRequest,
        deltas: Option<DeltaSink>,
    ) -> Result<(CompletionResponse, String), CompletionFailure>;

    /// The tools `agent` may call, as offered to its model.
    fn agent_tools(&self, agent: &AgentDefinition) -> Vec<ToolSpec>;

    /// Run `calls` for `agent`, refusing any tool it may not use; one result per call, in order.
    async fn call_tools(
        &self,
        agent: &AgentDefinition,
        calls: Vec<ToolCall>,
    ) -> (Vec<ToolResult>, Vec<ToolCallRecord>);
}

/// Where streamed text goes: a provider's pieces of a completion, or a worker's pieces of its
/// answer on their way to the user.
pub type DeltaSink = tokio::sync::mpsc::UnboundedSender<String>;

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
    fn add(&mut self, response: &CompletionResponse, provider: String) {
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
enum Verdict {
    Answered(String),
    AgentFailed(String),
    Protocol(String),
    Deadline,
    ShutDown,
    /// The socket closed or the process exited without a reply.
    Gone,
}

/// A pidfd shared with the live table, pollable for exit.
struct PidFd(Arc<OwnedFd>);

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// What the supervisor is doing for a worker: at most one request at a time.
type Pending<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// The outcome of a worker's request, before it is sent back.
enum Reply {
    Completion(Result<(CompletionResponse, String), CompletionFailure>),
    Tools(Vec<ToolResult>, Vec<ToolCallRecord>),
}

/// Bytes of a worker's stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

impl WorkerPool {
    /// Run `input` through a fresh worker for `agent`.
    pub async fn execute(
        &self,
        agent: Arc<AgentDefinition>,
        input: JobInput,
        execution_id: String,
        services: &dyn WorkerServices,
        answer_sink: Option<DeltaSink>,
    ) -> ExecutionReport {
        let span = tracing::info_span!("execution", execution_id = %execution_id, agent = %agent.name, worker_pid = tracing::field::Empty);
        self.execute_inner(agent, input, execution_id, services, answer_sink)
            .instrument(span)
            .await
    }

    async fn execute_inner(
        &self,
        agent: Arc<AgentDefinition>,
        input: JobInput,
        execution_id: String,
        services: &dyn WorkerServices,
        answer_sink: Option<DeltaSink>,
    ) -> ExecutionReport {
        let started = Instant::now();
        let started_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut report = ExecutionReport::new(
            execution_id.clone(),
            &agent,
            started_at,
            0.0,
            Outcome::Succeeded,
        );
        let finish = |mut report: ExecutionReport, outcome: Outcome| {
            report.error = outcome.error_message(report.worker_pid);
            report.outcome = outcome;
            report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            report
        };

        let Ok(_permit) = self.permits.acquire().await else {
            return finish(report, Outcome::ShutDown);
        };
        let timeout = agent.timeout.unwrap_or(self.settings.default_timeout);
        // Durations are bounded when files are parsed; this keeps a bound that slipped through
        // from panicking the runtime: such a deadline is simply never reached.
        let deadline = started
            .checked_add(timeout)
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + FAR_FUTURE);

        let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                return finish(
                    report,
                    Outcome::SpawnFailed {
                        detail: format!("socketpair: {e}"),
                    },
                );
            }
        };
        let mut command = Command::new(&self.settings.worker_path);
        command
            .arg("--supervisor-pid")
            .arg(std::process::id().to_string())
            // Nothing of ours (NOTIFY_SOCKET, API keys, tokens) reaches a worker.
            .env_clear()
            .process_group(0)
            .current_dir("/")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let address_space = agent
            .memory_limit
            .unwrap_or(self.settings.limits.address_space);
        let spawned = match self
            .spawner
            .spawn(command, self.settings.limits, address_space)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let detail = format!("{}: {e}", self.settings.worker_path.display());
                tracing::error!(error = %detail, "worker spawn failed");
                return finish(report, Outcome::SpawnFailed { detail });
            }
        };
        self.metrics
            .worker_spawn_duration
            .observe(spawned.spawn_time.as_secs_f64());
        let mut worker = WorkerProcess::new(spawned.child, &self.spawner);
        let pid = worker.pid;
        // Into its pids cgroup before the handshake is answered, like the rlimits (the worker
        // starts nothing before it has its job); done here rather than on the spawner thread,
        // which every spawn waits for, while the worker is still starting up.
        if let Some(cgroups) = self.spawner.cgroups() {
            let max = self.settings.limits.processes;
            match tokio::task::spawn_blocking(move || cgroups.enter(pid, max)).await {
                Ok(Ok(cgroup)) => worker.cgroup = Some(cgroup),
                Ok(Err(e)) => {
                    tracing::warn!(pid, error = %e, "worker runs without its pids cgroup");
                }
                Err(e) => tracing::error!(pid, error = %e, "the cgroup task failed"),
            }
        }
        report.worker_pid = Some(pid);
        tracing::Span::current().record("worker_pid", pid);
        let pidfd = Arc::new(spawned.pidfd);
        let live_entry = LiveEntry::insert(
            self,
            &execution_id,
            Entry {
                pid,
                agent: agent.name.to_string(),
                started_at: SystemTime::now(),
                started: Instant::now(),
                state: WorkerState::Starting,
                pidfd: pidfd.clone(),
                operator_signal: None,
            },
        );
        let stderr_tail = worker
            .stderr()
            .map(|s| tokio::spawn(drain_stderr(OwnedFd::from(s), pid)));

        // SAFETY: PidFd holds an Arc of the OwnedFd, so the fd stays open and refers to this
        // pidfd for as long as the AsyncFd lives.
        let exit_fd = match unsafe {
            AsyncFd::register_with_interest(PidFd(pidfd), tokio::io::Interest::READABLE)
        } {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::error!(error = ?e, "cannot watch worker pidfd; relying on the socket");
                None
            }
        };

        let verdict = match prepare_socket(ours) {
            Ok((reader, writer)) => {
                let mut conversation = Conversation {
                    pool: self,
                    agent: &agent,
                    execution_id: &execution_id,
                    reader,
                    writer,
                    services,
                    usage: None,
                    started,
                    startup: None,
                    llm_started: None,
                    llm_time: None,
                    deltas: None,
                    answer_sink,
                    tool_calls: Vec::new(),
                };
                let v = conversation.run(&input, deadline, exit_fd.as_ref()).await;
                report.usage = conversation.usage;
                report.tool_calls = conversation.tool_calls;
                report.startup_ms = conversation.startup.map(|d| d.as_secs_f64() * 1000.0);
                report.llm_ms = conversation.llm_time.map(|d| d.as_secs_f64() * 1000.0);
                v
            }
            Err(e) => Verdict::Protocol(format!("socket setup: {e}")),
        };

        // Let a worker that is done exit by itself; stop any other.
        let polite = matches!(
            verdict,
            Verdict::Answered(_) | Verdict::AgentFailed(_) | Verdict::Gone
        );
        let ending = self
            .stop_and_reap(&execution_id, &mut worker, exit_fd.as_ref(), polite)
            .await;
        let operator_signal = live_entry.remove();
        let stderr = match stderr_tail {
            Some(task) => tokio::time::timeout(Duration::from_millis(200), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        report.exit_code = ending.status.and_then(|s| s.code());
        report.exit_signal = ending.status.and_then(|s| s.signal());

        // How the process ended comes first: a worker that died by a signal nobody in the
        // supervisor sent did not break the protocol, whatever its socket said as it went.
        let died_of = report.exit_signal.filter(|_| !ending.signalled_by_us);
        let killed = died_of.map(|signal| {
            if signal != libc::SIGKILL && OUT_OF_MEMORY_MARKS.iter().any(|m| stderr.contains(m)) {
                Outcome::MemoryLimit {
                    limit_bytes: address_space,
                    signal,
                    stderr: stderr.clone(),
                }
            } else {
                Outcome::Killed {
                    signal,
                    by_operator: operator_signal == Some(signal),
                    stderr: stderr.clone(),
                }
            }
        });
        let outcome = match verdict {
            Verdict::Answered(answer) => {
                report.answer = Some(answer);
                Outcome::Succeeded
            }
            Verdict::AgentFailed(message) => Outcome::AgentFailed { message },
            Verdict::Deadline => Outcome::DeadlineExceeded {
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                operator_signal,
            },
            Verdict::ShutDown => Outcome::ShutDown,
            Verdict::Protocol(detail) => killed.unwrap_or(Outcome::ProtocolViolation { detail }),
            Verdict::Gone => killed.unwrap_or(Outcome::WorkerExited {
                code: report.exit_code.unwrap_or(-1),
                stderr,
            }),
        };
        tracing::info!(
            outcome = outcome.label(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "execution finished"
        );
        finish(report, outcome)
    }

    /// Wait for the worker to exit (TERM, CONT, grace, KILL unless `polite`), end every process
    /// it left (its process group while the leader is still an unreaped zombie, and its
    /// cgroup), then reap it.
    async fn stop_and_reap(
        &self,
        execution_id: &str,
        worker: &mut WorkerProcess,
        exit_fd: Option<&AsyncFd<PidFd>>,
        polite: bool,
    ) -> Ending {
        let pid = worker.pid;
        let grace = self.settings.kill_grace;
        let mut exited = if polite {
            wait_exit(exit_fd, grace).await
        } else {
            os::has_exited(pid)
        };
        let mut signalled_by_us = false;
        if !exited {
            self.live.set_state(execution_id, WorkerState::Terminating);
            signalled_by_us = true;
            let _ = os::signal_group(pid, libc::SIGTERM);
            // A stopped worker cannot act on TERM until it is continued.
            let _ = os::signal_group(pid, libc::SIGCONT);
            exited = wait_exit(exit_fd, grace).await;
        }
        // The leader may be gone already, but its unreaped zombie keeps the group id ours, so this
        // also kills any grandchild it left behind.
        let _ = os::signal_group(pid, libc::SIGKILL);
        if let Some(cgroup) = &worker.cgroup {
            cgroup.kill_all();
        }
        if !exited {
            wait_exit(exit_fd, grace).await;
        }
        Ending {
            status: worker.reap(),
            signalled_by_us,
        }
    }
}

/// How a worker's process ended.
struct Ending {
    /// Its exit status, once reaped.
    status: Option<ExitStatus>,
    /// Whether the supervisor signalled it before it exited (deadline, shutdown, protocol).
    signalled_by_us: bool,
}

/// A deadline so far away it is never reached; used where adding a timeout would overflow.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The worker process of one execution. It is reaped exactly once: by [`reap`](Self::reap) on
/// the normal path, or, when the execution is dropped before that (its caller went away, or a
/// panic unwound), by the drop, which first kills its group and cgroup so nothing outlives it.
struct WorkerProcess {
    child: Option<Child>,
    pid: u32,
    cgroup: Option<WorkerCgroup>,
    spawner: super::spawner::Spawner,
}

impl WorkerProcess {
    fn new(child: Child, spawner: &super::spawner::Spawner) -> Self {
        Self {
            pid: child.id(),
            child: Some(child),
            cgroup: None,
            spawner: spawner.clone(),
        }
    }

    fn stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    /// Reap the (already signalled) worker and hand its leftovers to the spawner thread.
    fn reap(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = self.pid;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.spawner.retire(pid, self.cgroup.take());
                Some(status)
            }
            Ok(None) => {
                // Still not gone after SIGKILL (stuck in the kernel): reap it whenever it dies,
                // without holding up this request.
                tracing::error!(pid, "worker survived SIGKILL; reaping it in the background");
                let (spawner, cgroup) = (self.spawner.clone(), self.cgroup.take());
                std::thread::spawn(move || {
                    let _ = child.wait();
                    spawner.retire(pid, cgroup);
                });
                None
            }
            Err(e) => {
                tracing::error!(pid, error = %e, "cannot reap worker");
                None
            }
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = self.pid;
        tracing::warn!(
            pid,
            "execution dropped before its worker ended; killing the worker"
        );
        // Unreaped, so the group id is still this worker's.
        let _ = os::signal_group(pid, libc::SIGKILL);
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        let (spawner, cgroup) = (self.spawner.clone(), self.cgroup.take());
        // Waiting blocks; a drop may run on the async runtime, so the wait gets its own thread.
        let reaper = std::thread::Builder::new()
            .name("caxton-reap".into())
            .spawn(move || {
                let _ = child.wait();
                spawner.retire(pid, cgroup);
            });
        if let Err(e) = reaper {
            tracing::error!(pid, error = %e, "cannot start a thread to reap a dropped worker");
        }
    }
}

/// A worker's row in the live table and its share of the `live_workers` gauge, removed on the
/// normal path by [`remove`](Self::remove) and otherwise when the execution is dropped.
struct LiveEntry<'a> {
    pool: &'a WorkerPool,
    execution_id: &'a str,
    present: bool,
}

impl<'a> LiveEntry<'a> {
    fn insert(pool: &'a WorkerPool, execution_id: &'a str, entry: Entry) -> Self {
        pool.live.insert(execution_id, entry);
        pool.metrics.live_workers.inc();
        Self {
            pool,
            execution_id,
            present: true,
        }
    }

    /// Remove the row; returns the signal an operator sent the worker, if any.
    fn remove(mut self) -> Option<i32> {
        self.present = false;
        self.pool.metrics.live_workers.dec();
        self.pool.live.remove(self.execution_id)
    }
}

impl Drop for LiveEntry<'_> {
    fn drop(&mut self) {
        if self.present {
            self.pool.metrics.live_workers.dec();
            self.pool.live.remove(self.execution_id);
        }
    }
}

/// Wait until the pidfd says the process has exited, up to `limit`.
async fn wait_exit(exit_fd: Option<&AsyncFd<PidFd>>, limit: Duration) -> bool {
    match exit_fd {
        Some(fd) => tokio::time::timeout(limit, fd.readable())
            .await
            .is_ok_and(|r| r.is_ok()),
        None => {
            tokio::time::sleep(limit).await;
            false
        }
    }
}

fn prepare_socket(
    ours: std::os::unix::net::UnixStream,
) -> std::io::Result<(
    FramedRead<tokio::net::unix::OwnedReadHalf, LengthDelimitedCodec>,
    OwnedWriteHalf,
)> {
    ours.set_nonblocking(true)?;
    let (read, write) = tokio::net::UnixStream::from_std(ours)?.into_split();
    // Same framing as ipc-protocol: 4-byte big-endian length, capped at MAX_FRAME_LEN.
    let codec = LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec();
    Ok((FramedRead::new(read, codec), write))
}

async fn drain_stderr(fd: OwnedFd, pid: u32) -> String {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tracing::debug!(pid, stderr = %String::from_utf8_lossy(&buf[..n]).trim_end(), "worker stderr");
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
}

struct Conversation<'a> {
    pool: &'a WorkerPool,
    agent: &'a AgentDefinition,
    execution_id: &'a str,
    reader: FramedRead<tokio::net::unix::OwnedReadHalf, LengthDelimitedCodec>,
    writer: OwnedWriteHalf,
    services: &'a dyn WorkerServices,
    usage: Option<Usage>,
    started: Instant,
    startup: Option<Duration>,
    llm_started: Option<Instant>,
    llm_time: Option<Duration>,
    /// Pieces of the pending completion, for the worker, with its call id.
    deltas: Option<(u32, tokio::sync::mpsc::UnboundedReceiver<String>)>,
    /// Pieces of the answer, for the user who asked to watch it.
    answer_sink: Option<DeltaSink>,
    /// Tool calls run so far.
    tool_calls: Vec<ToolCallRecord>,
}

enum Step {
    Continue,
    Done(Verdict),
}

impl<'a> Conversation<'a> {
    async fn run(
        &mut self,
        input: &JobInput,
        deadline: tokio::time::Instant,
        exit_fd: Option<&AsyncFd<PidFd>>,
    ) -> Verdict {
        let shutdown = self.pool.shutdown.clone();
        let mut handshaken = false;
        let mut pending: Option<(u32, Pending<'a>)> = None;
        let mut exited = false;
        loop {
            let step = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => Step::Done(Verdict::Deadline),
                _ = shutdown.cancelled() => Step::Done(Verdict::ShutDown),
                result = async { pending.as_mut().map(|(_, f)| f.as_mut()).expect("guarded by pending.is_some()").await }, if pending.is_some() => {
                    let Some((call_id, _)) = pending.take() else { continue };
                    match result {
                        Reply::Completion(result) => self.finish_completion(call_id, result).await,
                        Reply::Tools(results, records) => self.finish_tools(call_id, results, records).await,
                    }
                }
                piece = next_delta(&mut self.deltas), if self.deltas.is_some() => match piece {
                    Some((call_id, text)) => match self.send(&SupervisorMessage::CompletionDelta { call_id, text }).await {
                        Ok(()) => Step::Continue,
                        Err(v) => Step::Done(v),
                    },
                    // The provider is done sending; the completion itself follows.
                    None => {
                        self.deltas = None;
                        Step::Continue
                    }
                },
                frame = self.reader.next() => match frame {
                    None => Step::Done(Verdict::Gone),
                    Some(Err(e)) => Step::Done(frame_error(e)),
                    Some(Ok(bytes)) => match decode_payload::<WorkerMessage>(&bytes) {
                        Err(e) => Step::Done(Verdict::Protocol(e.to_string())),
                        Ok(message) => self.handle(message, &mut handshaken, &mut pending, input).await,
                    },
                },
                _ = async { exit_fd.expect("guarded by exit_fd.is_some()").readable().await }, if exit_fd.is_some() && !exited => {
                    // The process is gone; whatever it wrote before dying is still in the socket.
                    exited = true;
                    Step::Continue
                }
            };
            match step {
                Step::Continue if exited && pending.is_none() => {
                    return match tokio::time::timeout(
                        Duration::from_millis(100),
                        self.drain_after_exit(&mut handshaken, input),
                    )
                    .await
                    {
                        Ok(v) => v,
                        Err(_) => Verdict::Gone,
                    };
                }
                Step::Continue => {}
                Step::Done(v) => return v,
            }
        }
    }

    /// Read what a dead worker left in the socket: it may have answered just before exiting.
    async fn drain_after_exit(&mut self, handshaken: &mut bool, input: &JobInput) -> Verdict {
        let mut pending = None;
        loop {
            match self.reader.next().await {
                None => return Verdict::Gone,
                Some(Err(e)) => return frame_error(e),
                Some(Ok(bytes)) => match decode_payload::<WorkerMessage>(&bytes) {
                    Err(e) => return Verdict::Protocol(e.to_string()),
                    Ok(message) => {
                        match self.handle(message, handshaken, &mut pending, input).await {
                            Step::Done(v) => return v,
                            Step::Continue if pending.is_some() => return Verdict::Gone,
                            Step::Continue => {}
                        }
                    }
                },
            }
        }
    }

    async fn handle(
        &mut self,
        message: WorkerMessage,
        handshaken: &mut bool,
        pending: &mut Option<(u32, Pending<'a>)>,
        input: &JobInput,
    ) -> Step {
        match (message, *handshaken) {
            (WorkerMessage::Hello(hello), false) => {
                if hello.protocol_version != PROTOCOL_VERSION {
                    let _ = self
                        .send(&SupervisorMessage::VersionMismatch {
                            supervisor: PROTOCOL_VERSION,
                            worker: hello.protocol_version,
                        })
                        .await;
                    return Step::Done(Verdict::Protocol(format!(
                        "protocol version mismatch: supervisor speaks v{PROTOCOL_VERSION}, worker {} speaks v{}",
                        hello.worker_version, hello.protocol_version
                    )));
                }
                *handshaken = true;
                self.startup = Some(self.started.elapsed());
                self.pool
                    .metrics
                    .worker_startup_duration
                    .observe(self.started.elapsed().as_secs_f64());
                let job = Job {
                    execution_id: self.execution_id.to_owned(),
                    agent: JobAgent {
                        name: self.agent.name.to_string(),
                        version: self.agent.version.clone(),
                        system_prompt: self.agent.system_prompt.clone(),
                        user_prompt_template: self.agent.user_prompt_template.clone(),
                        parameters_json: serde_json::Value::Object(self.agent.parameters.clone())
                            .to_string(),
                        tools: self.services.agent_tools(self.agent),
                        max_tool_calls: self.agent.max_tool_calls,
                    },
                    input: input.clone(),
                    stream: self.answer_sink.is_some(),
                };
                if let Err(v) = self.send(&SupervisorMessage::Welcome).await {
                    return Step::Done(v);
                }
                if let Err(v) = self.send(&SupervisorMessage::Job(job)).await {
                    return Step::Done(v);
                }
                self.pool
                    .live
                    .set_state(self.execution_id, WorkerState::Running);
                Step::Continue
            }
            (other, false) => Step::Done(Verdict::Protocol(format!(
                "expected Hello as the first frame, received {}",
                name_of(&other)
            ))),
            (WorkerMessage::Hello(_), true) => Step::Done(Verdict::Protocol(
                "a second Hello after the handshake".into(),
            )),
            (WorkerMessage::Complete { call_id, request }, true) => {
                if pending.is_some() {
                    return Step::Done(Verdict::Protocol(
                        "a second completion request while one is pending".into(),
                    ));
                }
                self.pool
                    .live
                    .set_state(self.execution_id, WorkerState::AwaitingModel);
                let services = self.services;
                let agent = self.agent;
                self.llm_started = Some(Instant::now());
                let sink = if request.stream {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    self.deltas = Some((call_id, rx));
                    Some(tx)
                } else {
                    None
                };
                *pending = Some((
                    call_id,
                    Box::pin(async move {
                        Reply::Completion(services.complete(agent, request, sink).await)
                    }),
                ));
                Step::Continue
            }
            (WorkerMessage::CallTools { call_id, calls }, true) => {
                if pending.is_some() {
                    return Step::Done(Verdict::Protocol(
                        "a tool call request while another request is pending".into(),
                    ));
                }
                let budget = self.agent.max_tool_calls as usize;
                if self.tool_calls.len() + calls.len() > budget {
                    return Step::Done(Verdict::Protocol(format!(
                        "{} tool calls requested, more than the agent's limit of {budget}",
                        self.tool_calls.len() + calls.len()
                    )));
                }
                self.pool
                    .live
                    .set_state(self.execution_id, WorkerState::AwaitingTools);
                let (services, agent) = (self.services, self.agent);
                *pending = Some((
                    call_id,
                    Box::pin(async move {
                        let (results, records) = services.call_tools(agent, calls).await;
                        Reply::Tools(results, records)
                    }),
                ));
                Step::Continue
            }
            (WorkerMessage::AnswerDelta { text }, true) => {
                if let Some(sink) = &self.answer_sink {
                    // The user may have gone; the answer still completes and is recorded.
                    let _ = sink.send(text);
                }
                Step::Continue
            }
            (
                WorkerMessage::Finished {
                    execution_id,
                    answer,
                },
                true,
            ) => match self.check_id(&execution_id) {
                Some(v) => Step::Done(v),
                None => {
                    self.pool
                        .live
                        .set_state(self.execution_id, WorkerState::Finishing);
                    Step::Done(Verdict::Answered(answer))
                }
            },
            (
                WorkerMessage::Failed {
                    execution_id,
                    error,
                },
                true,
            ) => match self.check_id(&execution_id) {
                Some(v) => Step::Done(v),
                None => {
                    self.pool
                        .live
                        .set_state(self.execution_id, WorkerState::Finishing);
                    Step::Done(Verdict::AgentFailed(error))
                }
            },
        }
    }

    fn check_id(&self, got: &str) -> Option<Verdict> {
        (got != self.execution_id).then(|| {
            Verdict::Protocol(format!(
                "reply for execution {got:?}, but this worker runs {:?}",
                self.execution_id
            ))
        })
    }

    async fn finish_completion(
        &mut self,
        call_id: u32,
        result: Result<(CompletionResponse, String), CompletionFailure>,
    ) -> Step {
        let result = result.map(|(response, provider)| {
            self.usage
                .get_or_insert_with(|| Usage {
                    prompt_tokens: Some(0),
                    completion_tokens: Some(0),
                    ..Usage::default()
                })
                .add(&response, provider);
            response
        });
        self.pool
            .live
            .set_state(self.execution_id, WorkerState::Running);
        // Pieces still queued belong before the completion they are part of.
        if let Some((delta_call, mut rx)) = self.deltas.take() {
            while let Ok(text) = rx.try_recv() {
                let delta = SupervisorMessage::CompletionDelta {
                    call_id: delta_call,
                    text,
                };
                if let Err(v) = self.send(&delta).await {
                    return Step::Done(v);
                }
            }
        }
        let sent = self
            .send(&SupervisorMessage::Completion { call_id, result })
            .await;
        if let Some(started) = self.llm_started.take() {
            *self.llm_time.get_or_insert(Duration::ZERO) += started.elapsed();
        }
        match sent {
            Ok(()) => Step::Continue,
            Err(v) => Step::Done(v),
        }
    }

    async fn finish_tools(
        &mut self,
        call_id: u32,
        results: Vec<ToolResult>,
        records: Vec<ToolCallRecord>,
    ) -> Step {
        self.tool_calls.extend(records);
        self.pool
            .live
            .set_state(self.execution_id, WorkerState::Running);
        match self
            .send(&SupervisorMessage::ToolResults { call_id, results })
            .await
        {
            Ok(()) => Step::Continue,
            Err(v) => Step::Done(v),
        }
    }

    async fn send(&mut self, message: &SupervisorMessage) -> Result<(), Verdict> {
        let frame = encode_frame(message).map_err(|e| Verdict::Protocol(e.to_string()))?;
        // A worker that stopped reading is handled by the deadline; a closed socket means it left.
        self.writer
            .write_all(&frame)
            .await
            .map_err(|_| Verdict::Gone)
    }
}

/// The next piece of a streamed completion with its call id; `None` once the provider is done.
async fn next_delta(
    deltas: &mut Option<(u32, tokio::sync::mpsc::UnboundedReceiver<String>)>,
) -> Option<(u32, String)> {
    let (call_id, rx) = deltas.as_mut()?;
    rx.recv().await.map(|text| (*call_id, text))
}

fn frame_error(e: std::io::Error) -> Verdict {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Verdict::Protocol(format!("frame larger than the {MAX_FRAME_LEN}-byte limit"))
    } else if matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
    ) {
        // The worker's end closed, typically because the process died.
        Verdict::Gone
    } else {
        Verdict::Protocol(format!("socket error: {e}"))
    }
}

fn name_of(message: &WorkerMessage) -> &'static str {
    match message {
        WorkerMessage::Hello(_) => "Hello",
        WorkerMessage::Complete { .. } => "Complete",
        WorkerMessage::CallTools { .. } => "CallTools",
        WorkerMessage::AnswerDelta { .. } => "AnswerDelta",
        WorkerMessage::Finished { .. } => "Finished",
        WorkerMessage::Failed { .. } => "Failed",
    }
}

#[cfg(test)]
mod usage_tests {
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
}
