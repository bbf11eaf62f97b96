//! `POST /api/v1/agents/{name}/run` and the execution records: what a caller asks, and the
//! report of how the execution went.

use serde::{Deserialize, Serialize};

use crate::error::ErrorAnswer;

/// Body of a run request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The question.
    pub request: String,
    /// Background the agent's prompt template may use (`{{ context }}`).
    #[serde(default)]
    pub context: String,
    /// What the answer must satisfy (`{{ requirements }}`).
    #[serde(default)]
    pub requirements: String,
    /// The workspace whose memory a `scope = "workspace"` agent uses.
    #[serde(default)]
    pub workspace: Option<String>,
    /// A conversation to continue: the agent gets its earlier turns.
    #[serde(default)]
    pub conversation: Option<String>,
}

/// Tokens and model of the completions an execution used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    pub fn add(
        &mut self,
        provider: String,
        model: String,
        prompt_tokens: Option<u32>,
        completion_tokens: Option<u32>,
    ) {
        let sum = |a: Option<u32>, b: Option<u32>| Some(a?.saturating_add(b?));
        self.provider = provider;
        self.model = model;
        self.prompt_tokens = sum(self.prompt_tokens, prompt_tokens);
        self.completion_tokens = sum(self.completion_tokens, completion_tokens);
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// One executed tool call, for the execution record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCallRecord {
    /// Tool name.
    pub tool: String,
    /// Arguments as the model sent them (cut at 4 KiB).
    pub arguments: String,
    /// Bytes of result text returned to the model.
    pub result_bytes: usize,
    /// Milliseconds the call took.
    pub duration_ms: f64,
    /// `ok`, `tool_error` (the tool reported an error), `refused` (not allowed), `invalid`
    /// (arguments did not match the schema) or `failed` (the module faulted).
    pub outcome: String,
    /// The error, when there is one.
    pub error: Option<String>,
}

/// Where an execution sits: its conversation and its delegation tree. Flattened into reports
/// and records, so the JSON has the three fields side by side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The conversation it belongs to.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// The execution that delegated to it; `None` for a caller's request.
    #[serde(default)]
    pub parent_execution_id: Option<String>,
    /// The caller's request at the root of its tree (itself for a caller's request).
    #[serde(default)]
    pub root_execution_id: Option<String>,
}

/// Everything known about one finished execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub tool_calls: Vec<ToolCallRecord>,
    /// The worker's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the worker, if any.
    pub exit_signal: Option<i32>,
    /// Why the end of this execution could not be recorded, when it could not: the caller must
    /// then be told, as the history will not show it.
    pub record_error: Option<String>,
    /// Its conversation and its place in its delegation tree.
    #[serde(flatten)]
    pub placement: Placement,
    /// The OpenTelemetry trace it belongs to, when traces are exported (32 hex digits).
    #[serde(default)]
    pub trace_id: Option<String>,
}

impl ExecutionReport {
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

    /// What went wrong, if anything: the missing record first (a caller is never told a run
    /// succeeded when the history does not have it), else the execution's error.
    pub fn failure_message(&self) -> Option<String> {
        self.not_recorded_message().or_else(|| self.error.clone())
    }
}

/// A stored execution (`GET /api/v1/executions[/ID]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Execution id.
    pub execution_id: String,
    /// Agent name.
    pub agent: String,
    /// Agent version.
    pub agent_version: String,
    /// `running`, `finished` or `abandoned`.
    pub status: String,
    /// Outcome label once finished.
    pub outcome: Option<String>,
    /// The error shown to the user.
    pub error: Option<String>,
    /// Worker PID.
    pub worker_pid: Option<u32>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Terminating signal.
    pub exit_signal: Option<i32>,
    /// Seconds since the epoch.
    pub started_at: f64,
    /// Milliseconds.
    pub duration_ms: Option<f64>,
    /// Provider that answered.
    pub provider: Option<String>,
    /// Model that answered.
    pub model: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u32>,
    /// Completion tokens.
    pub completion_tokens: Option<u32>,
    /// Time the worker waited for completions, milliseconds.
    pub llm_ms: Option<f64>,
    /// The tool calls the agent made, in order.
    #[serde(default)]
    pub tool_calls: Vec<ToolCallRecord>,
    /// Its conversation and its place in its delegation tree.
    #[serde(flatten)]
    pub placement: Placement,
    /// The OpenTelemetry trace it belongs to, when traces are exported (32 hex digits).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The executions it delegated to, in start order (filled when one execution is shown).
    #[serde(default)]
    pub children: Vec<String>,
}

/// `GET /api/v1/executions` query: which records, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionFilter {
    /// Only this agent's.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only those with this status (`running`, `finished`, `abandoned`) or outcome
    /// (`succeeded`, `killed`, `deadline_exceeded`, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// Only those started at or after this time, seconds since the Unix epoch.
    #[serde(default)]
    pub since: Option<f64>,
    /// At most this many (default 20, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl ExecutionFilter {
    /// The query string of this filter, `?` included when not empty.
    pub fn query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(a) = &self.agent {
            q.append_pair("agent", a);
        }
        if let Some(s) = &self.status {
            q.append_pair("status", s);
        }
        if let Some(t) = self.since {
            q.append_pair("since", &t.to_string());
        }
        if let Some(l) = self.limit {
            q.append_pair("limit", &l.to_string());
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }
}

/// `GET /api/v1/executions`: the most recent first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionList {
    /// The executions.
    pub executions: Vec<ExecutionRecord>,
}

/// One line of a streamed run (`?stream=true`, newline-delimited JSON): pieces of the answer as
/// the worker sends them, then the report, or the error with the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StreamLine {
    /// `{"delta": "..."}`
    Delta {
        /// The piece.
        delta: String,
    },
    /// `{"done": report}`
    Done {
        /// The report.
        done: Box<ExecutionReport>,
    },
    /// `{"error": {...}, "execution": report}`
    Failed(ErrorAnswer),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn one_completion_without_counts_makes_the_execution_s_counts_unknown() {
        let mut usage = Usage {
            prompt_tokens: Some(0),
            completion_tokens: Some(0),
            ..Usage::default()
        };
        let mut add = |p, c| usage.add("p".into(), "m".into(), p, c);
        add(Some(5), Some(2));
        add(Some(7), Some(3));
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(12), Some(5))
        );
        usage.add("p".into(), "m".into(), Some(1), None);
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(13), None)
        );
        usage.add("p".into(), "m".into(), Some(1), Some(1));
        assert_eq!(
            usage.completion_tokens, None,
            "a later count does not make the sum known"
        );
    }

    #[test]
    fn a_stream_reads_back_as_the_lines_that_were_written() {
        let report = ExecutionReport {
            execution_id: "e".into(),
            agent: "a".into(),
            agent_version: "1".into(),
            worker_pid: Some(7),
            started_at: 1.5,
            duration_ms: 2.0,
            startup_ms: None,
            llm_ms: None,
            outcome: Outcome::DeadlineExceeded {
                after_ms: 1000,
                operator_signal: Some(19),
            },
            error: Some("late".into()),
            answer: None,
            usage: None,
            tool_calls: Vec::new(),
            exit_code: None,
            exit_signal: Some(9),
            record_error: None,
            placement: Placement {
                conversation_id: Some("c".into()),
                parent_execution_id: None,
                root_execution_id: Some("e".into()),
            },
            trace_id: None,
        };
        let mut failed = ErrorAnswer::new("deadline_exceeded", "late");
        failed.execution = Some(Box::new(report.clone()));
        let lines = [
            StreamLine::Delta { delta: "he".into() },
            StreamLine::Done {
                done: Box::new(report.clone()),
            },
            StreamLine::Failed(failed),
        ];
        for line in lines {
            let text = serde_json::to_string(&line).unwrap();
            let back: StreamLine = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
        let text = serde_json::to_value(&report).unwrap();
        assert_eq!(text["outcome"]["kind"], "deadline_exceeded");
        assert_eq!(report.failure_message().as_deref(), Some("late"));
    }
}
