//! The conversation with one worker over its socket: the handshake, the job, the completions
//! and tool calls it asks for (served through [`WorkerServices`]), streamed pieces both ways,
//! and its answer, bounded by the deadline and the pool's shutdown.
//!
//! Invariant: frames are read and written only through the protocol's own codec
//! ([`SupervisorCodec`]), at most one worker request is served at a time, and whatever the
//! worker does ends as a [`Verdict`] of this execution; nothing here touches the process.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use caxton_ipc_protocol::{
    CompletionFailure, CompletionRequest, CompletionResponse, Job, JobAgent, JobInput,
    PROTOCOL_VERSION, ProtocolError, SupervisorCodec, SupervisorMessage, ToolCall, ToolResult,
    ToolSpec, WorkerMessage,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::WorkerPool;
use super::live::WorkerState;
use super::outcome::{Usage, Verdict};
use super::process::ExitWatch;
use crate::agent::AgentDefinition;
use crate::tools::ToolCallRecord;

/// Whether the daemon has said that workers run without a layer of their sandbox (it says so
/// once, not for every request).
static SANDBOX_GAP_LOGGED: AtomicBool = AtomicBool::new(false);

/// What the supervisor does for a worker on request. Implemented by the supervisor, which checks
/// each request against the execution's grant (`crate::grant::ExecutionGrant`).
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

/// What the supervisor is doing for a worker: at most one request at a time.
type Pending<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// The outcome of a worker's request, before it is sent back.
enum Reply {
    Completion(Result<(CompletionResponse, String), CompletionFailure>),
    Tools(Vec<ToolResult>, Vec<ToolCallRecord>),
}

/// One worker's conversation and what it accounted for so far.
pub(super) struct Conversation<'a> {
    pool: &'a WorkerPool,
    agent: &'a AgentDefinition,
    execution_id: &'a str,
    reader: FramedRead<OwnedReadHalf, SupervisorCodec>,
    writer: FramedWrite<OwnedWriteHalf, SupervisorCodec>,
    services: &'a dyn WorkerServices,
    usage: Option<Usage>,
    /// When the worker's spawn was asked for; its startup is measured from here.
    spawned_at: Instant,
    startup: Option<Duration>,
    llm_started: Option<Instant>,
    llm_time: Option<Duration>,
    /// Pieces of the pending completion, for the worker, with its call id.
    deltas: Option<(u32, tokio::sync::mpsc::UnboundedReceiver<String>)>,
    /// Pieces of the answer, for the user who asked to watch it.
    answer_sink: Option<DeltaSink>,
    /// Tool calls run so far.
    tool_calls: Vec<ToolCallRecord>,
    /// The worker phase under way, as a span of the execution's trace: `worker handshake` until
    /// its Hello is answered, `worker render` until its first request after the job. The worker
    /// links no tracing SDK; the supervisor sees both phases on the socket.
    phase: Option<tracing::Span>,
}

/// A span for a worker phase the supervisor observes.
fn phase_span(name: &'static str) -> tracing::Span {
    tracing::info_span!(
        "worker_phase",
        "otel.name" = name,
        "otel.kind" = "internal",
        phase = name
    )
}

/// Whether the conversation goes on.
enum Step {
    Continue,
    Done(Verdict),
}

/// What a finished conversation accounted for, for the execution's report.
pub(super) struct Accounts {
    /// Tokens and model of its completions.
    pub usage: Option<Usage>,
    /// The tool calls run for it, in order.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Spawn to completed handshake.
    pub startup: Option<Duration>,
    /// Time spent waiting for completions.
    pub llm_time: Option<Duration>,
}

impl<'a> Conversation<'a> {
    /// A conversation over `socket`, the supervisor's end of the worker's socketpair.
    pub(super) fn new(
        pool: &'a WorkerPool,
        agent: &'a AgentDefinition,
        execution_id: &'a str,
        services: &'a dyn WorkerServices,
        socket: std::os::unix::net::UnixStream,
        spawned_at: Instant,
        answer_sink: Option<DeltaSink>,
    ) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        let (read, write) = tokio::net::UnixStream::from_std(socket)?.into_split();
        Ok(Self {
            pool,
            agent,
            execution_id,
            reader: FramedRead::new(read, SupervisorCodec::new()),
            writer: FramedWrite::new(write, SupervisorCodec::new()),
            services,
            usage: None,
            spawned_at,
            startup: None,
            llm_started: None,
            llm_time: None,
            deltas: None,
            answer_sink,
            tool_calls: Vec::new(),
            phase: Some(phase_span("worker handshake")),
        })
    }

    /// What it accounted for: usage, tool calls, startup and model time.
    pub(super) fn into_accounts(self) -> Accounts {
        Accounts {
            usage: self.usage,
            tool_calls: self.tool_calls,
            startup: self.startup,
            llm_time: self.llm_time,
        }
    }

    /// Hold the conversation until the worker answers, fails, breaks the protocol or leaves,
    /// the `deadline` passes or the pool shuts down. `exit` tells when the process has exited.
    pub(super) async fn run(
        &mut self,
        input: &JobInput,
        deadline: tokio::time::Instant,
        exit: Option<&ExitWatch>,
    ) -> Verdict {
        let shutdown = self.pool.shutdown.clone();
        // A worker silent before its Hello is stuck: it is ended now, not at the request's
        // deadline, so it cannot hold a slot for the whole of it.
        let hello_by =
            tokio::time::Instant::from_std(self.spawned_at + self.pool.settings.handshake_timeout);
        let mut handshaken = false;
        let mut pending: Option<(u32, Pending<'a>)> = None;
        let mut exited = false;
        loop {
            let step = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => Step::Done(Verdict::Deadline),
                _ = tokio::time::sleep_until(hello_by), if !handshaken => Step::Done(Verdict::Protocol(format!(
                    "no Hello within {} of its start ([worker] handshake_timeout): a worker says hello before anything else",
                    humantime::format_duration(self.pool.settings.handshake_timeout)
                ))),
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
                    Some(Err(e)) => Step::Done(read_error(e)),
                    Some(Ok(message)) => self.handle(message, &mut handshaken, &mut pending, input).await,
                },
                _ = async { exit.expect("guarded by exit.is_some()").readable().await }, if exit.is_some() && !exited => {
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
                Some(Err(e)) => return read_error(e),
                Some(Ok(message)) => {
                    match self.handle(message, handshaken, &mut pending, input).await {
                        Step::Done(v) => return v,
                        Step::Continue if pending.is_some() => return Verdict::Gone,
                        Step::Continue => {}
                    }
                }
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
        if *handshaken {
            // The worker's first request after its job ends its render phase.
            self.phase = None;
        }
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
                let missing = hello.sandbox.missing();
                if !missing.is_empty() && !SANDBOX_GAP_LOGGED.swap(true, Ordering::Relaxed) {
                    let why: Vec<String> = hello
                        .sandbox
                        .layers
                        .iter()
                        .filter(|l| !l.applied)
                        .map(|l| format!("{}: {}", l.name, l.detail))
                        .collect();
                    tracing::warn!(
                        mode = %hello.sandbox.mode,
                        missing = %why.join("; "),
                        "workers run without every sandbox layer (logged once)"
                    );
                }
                self.pool
                    .live
                    .set_sandbox(self.execution_id, hello.sandbox.summary());
                self.phase = Some(phase_span("worker render"));
                let startup = self.spawned_at.elapsed();
                self.startup = Some(startup);
                self.pool
                    .metrics
                    .worker_startup_duration
                    .observe(startup.as_secs_f64());
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
                if let Err(v) = self.send(&SupervisorMessage::Job(Box::new(job))).await {
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
                .add(
                    provider,
                    response.model.clone(),
                    response.prompt_tokens,
                    response.completion_tokens,
                );
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
        // A worker that stopped reading is handled by the deadline; a closed socket means it left.
        self.writer.send(message).await.map_err(|e| match e {
            ProtocolError::Io(_) => Verdict::Gone,
            e => Verdict::Protocol(e.to_string()),
        })
    }
}

/// The next piece of a streamed completion with its call id; `None` once the provider is done.
async fn next_delta(
    deltas: &mut Option<(u32, tokio::sync::mpsc::UnboundedReceiver<String>)>,
) -> Option<(u32, String)> {
    let (call_id, rx) = deltas.as_mut()?;
    rx.recv().await.map(|text| (*call_id, text))
}

/// What a failed read says about the worker.
fn read_error(e: ProtocolError) -> Verdict {
    match e {
        ProtocolError::FrameTooLarge { max, .. } => {
            Verdict::Protocol(format!("frame larger than the {max}-byte limit"))
        }
        // The worker's end closed, typically because the process died.
        ProtocolError::Closed => Verdict::Gone,
        ProtocolError::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Verdict::Gone
        }
        ProtocolError::Io(e) => Verdict::Protocol(format!("socket error: {e}")),
        // A malformed frame, or one cut short as the worker went.
        e => Verdict::Protocol(e.to_string()),
    }
}

/// The message's name, for errors.
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
