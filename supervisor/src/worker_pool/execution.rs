//! One execution from its caller's side: [`WorkerPool::execute`] takes a slot, spawns the
//! worker ([`process`](super::process)), holds the conversation
//! ([`conversation`](super::conversation)), stops and reaps the worker and classifies how it
//! all ended ([`outcome`](super::outcome)).
//!
//! Invariant: an execution has one start, its caller's ([`ExecutionStart`]): the report carries
//! it, its duration and its deadline are measured from it, so the report and the record its
//! caller wrote at the start agree.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use caxton_ipc_protocol::JobInput;
use tracing::Instrument;

use super::WorkerPool;
use super::conversation::{Conversation, DeltaSink, WorkerServices};
use super::live::{Entry, LiveEntry, WorkerState};
use super::outcome::{
    ExecutionReport, Outcome, ProcessEnd, Verdict, classify, error_message, new_report,
};
use super::process::WorkerProcess;
use crate::agent::AgentDefinition;

/// When an execution started, taken once by its caller and carried by everything about it,
/// and what its caller bounds it by.
#[derive(Debug, Clone)]
pub struct ExecutionStart {
    /// For durations and the deadline.
    pub instant: Instant,
    /// Wall-clock start, seconds since the Unix epoch, as reports and records show it.
    pub unix_seconds: f64,
    /// A deadline the caller sets, earlier than the agent's own timeout would (a delegation
    /// ends when its parent must).
    pub not_after: Option<Instant>,
    /// The execution that delegated this one, for the live table.
    pub parent: Option<String>,
    /// Whether it waits for a slot of `[worker] max_concurrent`: every execution but one whose
    /// parent waits for its answer (and holds a slot already).
    pub waits_for_slot: bool,
    /// The conversation it belongs to, for its trace span.
    pub conversation_id: Option<String>,
}

impl ExecutionStart {
    /// Now.
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            unix_seconds: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            not_after: None,
            parent: None,
            waits_for_slot: true,
            conversation_id: None,
        }
    }
}

/// A deadline so far away it is never reached; used where adding a timeout would overflow.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl WorkerPool {
    /// Run `input` through a fresh worker for `agent`; the report's start, duration and
    /// deadline are `start`'s.
    pub async fn execute(
        &self,
        agent: Arc<AgentDefinition>,
        input: JobInput,
        execution_id: String,
        start: ExecutionStart,
        services: &dyn WorkerServices,
        answer_sink: Option<DeltaSink>,
    ) -> ExecutionReport {
        // `invoke_agent {agent}` by the OpenTelemetry GenAI conventions: the supervisor calls
        // the agent in its worker (CLIENT). A delegated execution is a child of the tool call
        // that asked for it, so a request's tree is one trace.
        let span = tracing::info_span!(
            "execution",
            "otel.name" = %format!("invoke_agent {}", agent.name),
            "otel.kind" = "client",
            "otel.status_code" = tracing::field::Empty,
            "otel.status_description" = tracing::field::Empty,
            "gen_ai.operation.name" = "invoke_agent",
            "gen_ai.agent.name" = %agent.name,
            "gen_ai.conversation.id" = start.conversation_id.as_deref().unwrap_or_default(),
            execution_id = %execution_id,
            agent = %agent.name,
            worker_pid = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        );
        crate::telemetry::label_with_trace(&span);
        self.execute_inner(agent, input, execution_id, start, services, answer_sink)
            .instrument(span)
            .await
    }

    async fn execute_inner(
        &self,
        agent: Arc<AgentDefinition>,
        input: JobInput,
        execution_id: String,
        start: ExecutionStart,
        services: &dyn WorkerServices,
        answer_sink: Option<DeltaSink>,
    ) -> ExecutionReport {
        let mut report = new_report(
            execution_id.clone(),
            &agent,
            start.unix_seconds,
            0.0,
            Outcome::Succeeded,
        );
        let finish = |mut report: ExecutionReport, outcome: Outcome| {
            report.error = error_message(&outcome, report.worker_pid);
            report.outcome = outcome;
            report.duration_ms = start.instant.elapsed().as_secs_f64() * 1000.0;
            report
        };

        // An execution its parent waits for does not wait for a slot: its ancestors hold theirs,
        // so waiting could deadlock a full pool. Its tree's guards (depth, the shared budgets,
        // its parent's deadline) bound how many it can be.
        let _permit = if start.waits_for_slot {
            let waiting = Instant::now();
            let Ok(permit) = self.permits.acquire().await else {
                return finish(report, Outcome::ShutDown);
            };
            self.metrics
                .worker_slot_wait
                .observe(waiting.elapsed().as_secs_f64());
            Some(permit)
        } else {
            None
        };
        let mut timeout = agent.timeout.unwrap_or(self.settings.default_timeout);
        if let Some(cap) = start.not_after {
            timeout = timeout.min(cap.saturating_duration_since(start.instant));
        }
        // Durations are bounded when files are parsed; this keeps a bound that slipped through
        // from panicking the runtime: such a deadline is simply never reached.
        let deadline = start
            .instant
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
        let address_space = agent
            .memory_limit
            .unwrap_or(self.settings.limits.address_space);
        let mut worker =
            match WorkerProcess::spawn(self, OwnedFd::from(theirs), address_space).await {
                Ok(worker) => worker,
                Err(detail) => return finish(report, Outcome::SpawnFailed { detail }),
            };
        let pid = worker.pid();
        report.worker_pid = Some(pid);
        tracing::Span::current().record("worker_pid", pid);
        let live_entry = LiveEntry::insert(
            self,
            &execution_id,
            Entry {
                pid,
                agent: agent.name.to_string(),
                started_at: SystemTime::now(),
                started: Instant::now(),
                state: WorkerState::Starting,
                pidfd: worker.pidfd(),
                operator_signal: None,
                parent: start.parent.clone(),
                sandbox: None,
            },
        );

        let verdict = match Conversation::new(
            self,
            &agent,
            &execution_id,
            services,
            ours,
            worker.spawned_at(),
            answer_sink,
        ) {
            Ok(mut conversation) => {
                let verdict = conversation
                    .run(&input, deadline, worker.exit_watch())
                    .await;
                let accounts = conversation.into_accounts();
                report.usage = accounts.usage;
                report.tool_calls = accounts.tool_calls;
                report.startup_ms = accounts.startup.map(|d| d.as_secs_f64() * 1000.0);
                report.llm_ms = accounts.llm_time.map(|d| d.as_secs_f64() * 1000.0);
                verdict
            }
            Err(e) => Verdict::Protocol(format!("socket setup: {e}")),
        };

        // Let a worker that is done exit by itself; stop any other.
        let ending = worker
            .stop_and_reap(
                self.settings.kill_grace,
                verdict.lets_the_worker_exit(),
                || self.live.set_state(&execution_id, WorkerState::Terminating),
            )
            .await;
        let operator_signal = live_entry.remove();
        let stderr = worker.stderr_tail().await;
        let outcome = classify(
            &mut report,
            verdict,
            ProcessEnd {
                status: ending.status,
                signalled_by_us: ending.signalled_by_us,
                operator_signal,
                stderr,
                timeout,
                address_space,
                oom_killed: ending.oom_killed,
            },
        );
        tracing::info!(
            outcome = outcome.label(),
            duration_ms = start.instant.elapsed().as_secs_f64() * 1000.0,
            "execution finished"
        );
        let span = tracing::Span::current();
        if outcome != Outcome::Succeeded {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", outcome.label());
        }
        report.trace_id = crate::telemetry::current_trace_id();
        finish(report, outcome)
    }
}
