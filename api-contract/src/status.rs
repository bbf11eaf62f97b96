//! `/api/v1/health`, `/api/v1/status` and `/api/v1/workers`.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/health`: `ready`, or `draining` (with 503) while the daemon stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// `ready` or `draining`.
    pub status: String,
}

/// `GET /api/v1/status`: what `caxton status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Package version.
    pub version: String,
    /// Supervisor PID.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Whether new requests are accepted.
    pub ready: bool,
    /// Deployed agents.
    pub agents: usize,
    /// Live workers.
    pub workers: Vec<LiveWorker>,
    /// Which cgroups workers get (`v2 PATH (...)`, `v1 pids PATH (...)` or `none (...)`), and
    /// why no better kind; empty from a daemon that predates it.
    #[serde(default)]
    pub cgroups: String,
}

/// What a live worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Spawned, handshake not yet complete.
    Starting,
    /// Running the agent.
    Running,
    /// Waiting for the LLM completion it asked for.
    AwaitingModel,
    /// Waiting for the tool calls it asked for.
    AwaitingTools,
    /// Answered; exiting.
    Finishing,
    /// Being stopped (deadline, shutdown or protocol error).
    Terminating,
}

impl WorkerState {
    /// The state as the API spells it (`awaiting_model`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::AwaitingModel => "awaiting_model",
            Self::AwaitingTools => "awaiting_tools",
            Self::Finishing => "finishing",
            Self::Terminating => "terminating",
        }
    }
}

/// A row of the live table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveWorker {
    /// OS process id.
    pub pid: u32,
    /// The agent it runs.
    pub agent: String,
    /// The execution it serves.
    pub execution_id: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_at: f64,
    /// Seconds since it was spawned.
    pub age_seconds: f64,
    /// What it is doing.
    pub state: WorkerState,
    /// The execution that delegated to this one, when one did.
    #[serde(default)]
    pub parent_execution_id: Option<String>,
    /// How it confined itself: the sandbox mode and its layers, a missing one marked `-`
    /// (`best-effort: fds no_new_privs -landlock seccomp`); none before its handshake.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// `GET /api/v1/workers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerList {
    /// Live workers.
    pub workers: Vec<LiveWorker>,
}

/// Body of `POST /api/v1/workers/{pid or execution id}/kill`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// A signal name (`TERM`, `SIGKILL`) or number; `TERM` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// Answer of a kill: the worker signalled and the signal's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillAnswer {
    /// The worker.
    pub signalled: LiveWorker,
    /// The signal's name, e.g. `SIGTERM`.
    pub signal: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn a_state_is_spelt_as_the_api_writes_it() {
        for state in [
            WorkerState::Starting,
            WorkerState::Running,
            WorkerState::AwaitingModel,
            WorkerState::AwaitingTools,
            WorkerState::Finishing,
            WorkerState::Terminating,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}

/// `GET` and `PUT /api/v1/log-filter`: what the daemon logs, as a `tracing` filter directive
/// (`info`, `debug`, `warn,caxton_supervisor=debug`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    /// The directive.
    pub filter: String,
}
