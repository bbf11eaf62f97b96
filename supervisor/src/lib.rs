//! The Caxton supervisor as a library: everything `caxton serve` does, and what `caxton agent run`
//! uses in-process when no daemon is running.
//!
//! [`Supervisor`] owns the agent registry, the LLM providers, the worker pool, the execution
//! database and the metrics; [`daemon::serve`] puts the management API and signal handling
//! around it.
#![deny(missing_docs)]

pub mod a2a;
pub mod agent;
pub mod api;
pub mod config;
pub mod daemon;
pub mod delegation;
pub mod grant;
pub mod memory;
pub mod messaging;
pub mod metrics;
pub mod protocols;
pub mod provider;
pub mod router;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod worker_pool;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use caxton_ipc_protocol::{
    CompletionFailure, CompletionRequest, CompletionResponse, JobInput, ToolCall, ToolResult,
    ToolSpec,
};
use grant::ExecutionGrant;

use agent::{AgentDefinition, AgentRegistry, DeployOutcome, RegistryError, ReloadReport};
use config::Config;
use memory::{MemoryService, MemoryTools};
use metrics::Metrics;
use provider::{ProviderError, ProviderRequest, Providers};
use store::{Exchange, Store};
use tools::{CallOutcome, ToolCallRecord, ToolProvider, ToolRegistry};
use worker_pool::{ExecutionReport, LiveWorker, Outcome, PoolSettings, WorkerPool, WorkerServices};

use caxton_api_contract::conversations::{MessageKind, Party};

pub use caxton_api_contract::{RunRequest, StatusReport};
pub use worker_pool::{KillError, KillTarget, signal_name};

/// Failures while starting the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The agents directory could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A provider is misconfigured.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The worker pool could not start.
    #[error("cannot start the worker pool: {0}")]
    Pool(std::io::Error),
    /// The tool host could not start.
    #[error(transparent)]
    Tools(#[from] tools::ToolError),
    /// The memory database could not be opened (a newer schema, say).
    #[error(transparent)]
    Memory(#[from] caxton_memory::MemoryError),
    /// The worker binary is missing.
    #[error(
        "worker binary {0} not found: build it with `cargo build --release` or set [worker] path"
    )]
    WorkerMissing(String),
    /// The server's id could not be read or made.
    #[error("cannot read or write the server id in the data directory: {0}")]
    ServerId(std::io::Error),
}

/// Why an agent request could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No such agent.
    #[error("no agent named {0:?} is deployed (see `caxton agent list`)")]
    UnknownAgent(String),
    /// Its provider cannot be used.
    #[error(transparent)]
    Provider(ProviderError),
    /// The supervisor is draining.
    #[error("the supervisor is shutting down and accepts no new requests")]
    ShuttingDown,
    /// The request cannot reach the memory its agent uses.
    #[error(transparent)]
    MemoryScope(#[from] memory::ScopeError),
    /// No agent declares the capability asked for.
    #[error(transparent)]
    Route(#[from] router::RouteError),
    /// The conversation the request names cannot be continued.
    #[error(transparent)]
    Conversation(#[from] messaging::ConversationError),
    /// Another server's request would break the guards of its tree here (a cycle across
    /// servers, too deep, its budget spent).
    #[error(transparent)]
    Refused(#[from] delegation::Refusal),
}

/// A request that passed every check that can refuse it before a worker exists, with what it
/// may use.
#[derive(Debug)]
pub struct PreparedRun {
    /// The agent, its tools and its memory, resolved once.
    pub grant: ExecutionGrant,
    /// The worker's job.
    input: JobInput,
    /// The message that starts it, and its place in its conversation.
    exchange: Exchange,
    /// Its place in its delegation tree (its id, deadline, the tree's budgets).
    lineage: Arc<delegation::Lineage>,
}

impl PreparedRun {
    /// The conversation the run belongs to.
    pub fn conversation_id(&self) -> &str {
        &self.exchange.conversation_id
    }

    /// The execution's id, chosen before anything about it is stored.
    pub fn execution_id(&self) -> &str {
        &self.lineage.execution_id
    }

    /// Its place in its delegation tree.
    pub fn lineage(&self) -> &delegation::Lineage {
        &self.lineage
    }
}

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The file is invalid or could not be written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// It names a provider that does not exist.
    #[error("{file}: [llm] provider {provider:?} is not configured; configured providers: {known}")]
    UnknownProvider {
        /// The file.
        file: String,
        /// The provider it names.
        provider: String,
        /// What exists.
        known: String,
    },
}

/// The daemon's state.
pub struct Supervisor {
    config: Config,
    registry: AgentRegistry,
    providers: Providers,
    tools: Arc<ToolRegistry>,
    memory: Arc<MemoryService>,
    /// Every source of tools an execution's grant draws from.
    tool_providers: Vec<Arc<dyn ToolProvider>>,
    router: router::Router,
    pool: WorkerPool,
    store: Store,
    metrics: Arc<Metrics>,
    started: Instant,
    draining: AtomicBool,
    /// Executions started without waiting for them (notifications), so an in-process
    /// supervisor can let them finish before its command ends.
    detached: tokio_util::task::TaskTracker,
    /// Changes the log filter at run time, when the daemon's logging allows it.
    log_control: std::sync::OnceLock<Arc<dyn telemetry::LogControl>>,
    /// The id this server goes by when a request crosses servers over A2A.
    server_id: String,
    /// The cards of the agents on other servers asked lately.
    remote_cards: a2a::remote::Cards,
}

impl Supervisor {
    /// Open the database, load the agents and start the worker pool.
    pub fn open(config: Config) -> Result<Arc<Self>, StartError> {
        Self::with_providers(config, None)
    }

    /// As [`open`](Self::open), with providers supplied by the caller instead of the config.
    pub fn with_providers(
        config: Config,
        providers: Option<Providers>,
    ) -> Result<Arc<Self>, StartError> {
        if !config.worker_path.is_file() {
            return Err(StartError::WorkerMissing(
                config.worker_path.display().to_string(),
            ));
        }
        let providers = match providers {
            Some(p) => p,
            None => Providers::from_config(&config)?,
        };
        let store = Store::open_capped(&config.database, config.database_max_bytes)?;
        let server_id = a2a::server_id(&config.data_dir).map_err(StartError::ServerId)?;
        let registry = AgentRegistry::new(&config.agents_dir);
        let report = registry.reload()?;
        for e in &report.errors {
            tracing::warn!(file = %e.file, line = e.line, reason = %e.reason, "agent file not loaded");
        }
        let reserved: Vec<(&str, &str)> = memory::reserved_names()
            .into_iter()
            .chain(delegation::tools::reserved_names())
            .collect();
        let tools = Arc::new(ToolRegistry::open(
            &config.tools_dir,
            config.builtin_tools_dir.as_deref(),
            &config.cache_dir,
            &reserved,
        )?);
        let metrics = Arc::new(Metrics::new());
        let memory = Arc::new(MemoryService::open(&config, metrics.clone())?);
        metrics.agents_deployed.set(registry.len() as i64);
        let pool = WorkerPool::new(PoolSettings::from(&config), metrics.clone())
            .map_err(StartError::Pool)?;
        tracing::info!(agents = registry.len(), data_dir = %config.data_dir.display(), "supervisor ready");
        // The delegation tools start child requests on the supervisor that serves them.
        Ok(Arc::new_cyclic(|me| {
            let tool_providers: Vec<Arc<dyn ToolProvider>> = vec![
                tools.clone(),
                Arc::new(MemoryTools::new(memory.clone())),
                Arc::new(delegation::DelegationTools::new(me.clone())),
            ];
            Self {
                config,
                registry,
                providers,
                tools,
                memory,
                tool_providers,
                router: router::Router::default(),
                pool,
                store,
                metrics,
                started: Instant::now(),
                draining: AtomicBool::new(false),
                detached: tokio_util::task::TaskTracker::new(),
                log_control: std::sync::OnceLock::new(),
                server_id,
                remote_cards: a2a::remote::Cards::default(),
            }
        }))
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The cards of the agents on other servers this server's agents asked lately.
    pub fn remote_cards(&self) -> &a2a::remote::Cards {
        &self.remote_cards
    }

    /// The id this server goes by across servers ([`a2a::server_id`]).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Deployed agents.
    pub fn registry(&self) -> &AgentRegistry {
        &self.registry
    }

    /// The deployed tool servers.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// Warnings about an agent's `tools` entries that match no deployed tool.
    pub fn tool_warnings(&self, agent: &AgentDefinition) -> Vec<String> {
        let (_, missing) = self.tools.resolve(&agent.tools);
        missing
            .into_iter()
            .map(|m| {
                format!("tools: {m:?} matches no deployed tool or tool server (see `caxton tool list`); the agent runs without it")
            })
            .collect()
    }

    /// The embedded memory.
    pub fn memory(&self) -> &MemoryService {
        &self.memory
    }

    /// The execution database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Load the local models configured with `preload = true`.
    pub async fn preload_models(&self) {
        self.providers.preload().await;
        if self.config.memory.preload {
            self.memory.preload().await;
        }
    }

    /// Everything that can refuse a caller's request to agent `agent_name` before a worker
    /// exists: draining, an unknown agent, a provider that is not configured, a workspace the
    /// agent may not use, a conversation that cannot be continued. What the request may use is
    /// resolved here, once.
    pub async fn prepare_run(
        &self,
        agent_name: &str,
        request: RunRequest,
    ) -> Result<PreparedRun, RunError> {
        self.check_open()?;
        let joined = self.join_conversation(request.conversation.clone()).await?;
        self.prepare_in(
            agent_name,
            request,
            Party::Agent(agent_name.to_owned()),
            MessageKind::Request,
            &joined,
        )
    }

    /// A caller's request to `capability`: the agent the strategy picks, or every agent with
    /// it for a broadcast, each prepared (so one refusal runs none), all in one conversation.
    pub async fn prepare_capability_run(
        &self,
        capability: &str,
        strategy: caxton_api_contract::routing::Strategy,
        request: RunRequest,
    ) -> Result<Vec<PreparedRun>, RunError> {
        let agents = self.route(capability, strategy)?;
        let joined = self.join_conversation(request.conversation.clone()).await?;
        agents
            .iter()
            .map(|agent| {
                self.prepare_in(
                    agent.name.as_str(),
                    request.clone(),
                    Party::Capability(capability.to_owned()),
                    MessageKind::Request,
                    &joined,
                )
            })
            .collect()
    }

    fn check_open(&self) -> Result<(), RunError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(RunError::ShuttingDown);
        }
        Ok(())
    }

    pub(crate) async fn join_conversation(
        &self,
        requested: Option<String>,
    ) -> Result<messaging::Joined, RunError> {
        Ok(messaging::join(
            &self.store,
            requested,
            self.config.history_turns,
            self.config.conversation_expiry,
        )
        .await?)
    }

    /// A request that came over A2A to `agent_name`: a caller's, or, with `delegation`, one that
    /// an agent on another server delegated, whose tree's guards hold here too.
    pub async fn prepare_a2a(
        &self,
        agent_name: &str,
        request: RunRequest,
        delegation: Option<&a2a::Delegation>,
    ) -> Result<PreparedRun, RunError> {
        self.check_open()?;
        let joined = self.join_conversation(request.conversation.clone()).await?;
        let sender = delegation.map_or(Party::Caller, |d| {
            let asking = d.ancestry.last();
            Party::Remote(format!(
                "{}@{} task {}",
                asking.map_or("?", |h| h.agent.as_str()),
                asking.map_or("?", |h| h.server.as_str()),
                d.parent_task
            ))
        });
        self.prepare_from(
            agent_name,
            request,
            sender,
            MessageKind::Request,
            &joined,
            delegation,
        )
    }

    /// Prepare a caller's request (or notification, by `kind`) to `agent_name`, addressed to
    /// `receiver`, in `conversation`.
    pub(crate) fn prepare_in(
        &self,
        agent_name: &str,
        request: RunRequest,
        receiver: Party,
        kind: MessageKind,
        conversation: &messaging::Joined,
    ) -> Result<PreparedRun, RunError> {
        let mut prepared =
            self.prepare_from(agent_name, request, Party::Caller, kind, conversation, None)?;
        prepared.exchange.receiver = receiver;
        Ok(prepared)
    }

    /// Prepare `sender`'s request to `agent_name` in `conversation`; `upstream` is what another
    /// server said of the request's tree, when it came from one.
    fn prepare_from(
        &self,
        agent_name: &str,
        request: RunRequest,
        sender: Party,
        kind: MessageKind,
        conversation: &messaging::Joined,
        upstream: Option<&a2a::Delegation>,
    ) -> Result<PreparedRun, RunError> {
        self.check_open()?;
        let agent = self
            .registry
            .get(agent_name)
            .ok_or_else(|| RunError::UnknownAgent(agent_name.to_owned()))?;
        // Fail before spawning anything if the agent's model cannot be reached by name.
        self.providers
            .resolve(&agent.llm)
            .map_err(RunError::Provider)?;
        let memory_scope = memory::request_scope(&agent, request.workspace.as_deref())?;
        let execution_id = uuid::Uuid::new_v4().to_string();
        let deadline = self.deadline_of(&agent);
        let lineage = Arc::new(match upstream {
            None => delegation::Lineage::root(
                &execution_id,
                &conversation.id,
                &agent,
                deadline,
                self.config.token_budget,
                self.config.tool_call_budget,
            ),
            Some(asked) => delegation::Lineage::from_remote(
                &execution_id,
                &conversation.id,
                &agent,
                deadline,
                asked,
                &self.server_id,
            )?,
        });
        let receiver = Party::Agent(agent.name.to_string());
        let grant = self.grant(agent, memory_scope, &lineage);
        let mut exchange = messaging::from_caller(
            conversation,
            receiver,
            kind,
            &request.request,
            &execution_id,
            self.config.conversation_expiry,
        );
        exchange.sender = sender;
        exchange.depth = lineage.depth();
        // The worker's job: the caller's words; the memories are the supervisor's to add.
        let input = JobInput {
            request: request.request,
            context: request.context,
            requirements: request.requirements,
            memory_context: String::new(),
            conversation_id: conversation.id.clone(),
            history: conversation.history.clone(),
        };
        Ok(PreparedRun {
            grant,
            input,
            exchange,
            lineage,
        })
    }

    /// When a request of `agent` starting now must end, by its own timeout.
    fn deadline_of(&self, agent: &AgentDefinition) -> Instant {
        let timeout = agent.timeout.unwrap_or(self.config.default_timeout);
        Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(86400))
    }

    /// Resolve what an execution of `agent` may use.
    fn grant(
        &self,
        agent: Arc<AgentDefinition>,
        memory_scope: Option<caxton_memory::Scope>,
        lineage: &Arc<delegation::Lineage>,
    ) -> ExecutionGrant {
        let grant = ExecutionGrant::resolve(
            agent,
            memory_scope,
            Some(lineage.clone()),
            &self.tool_providers,
            &self.config.workspaces_dir,
        );
        if !grant.unmatched().is_empty() {
            tracing::warn!(agent = %grant.agent().name, missing = ?grant.unmatched(), "agent names tools that are not deployed");
        }
        self.router.used(grant.agent().name.as_str());
        grant
    }

    /// A request an execution (placed by `parent`) sends `agent` through a delegation tool:
    /// checked like a caller's (draining, provider, memory), one level down its tree, in its
    /// conversation. The tree's guards ([`delegation::Lineage::check`]) were checked by the
    /// caller.
    pub fn prepare_child(
        &self,
        agent: Arc<AgentDefinition>,
        text: &str,
        context: &str,
        parent: &delegation::Lineage,
        receiver: Party,
        kind: MessageKind,
    ) -> Result<PreparedRun, RunError> {
        self.check_open()?;
        self.providers
            .resolve(&agent.llm)
            .map_err(RunError::Provider)?;
        let memory_scope = memory::request_scope(&agent, None)?;
        let execution_id = uuid::Uuid::new_v4().to_string();
        let lineage = Arc::new(parent.child(&execution_id, &agent, self.deadline_of(&agent)));
        let exchange = messaging::from_agent(
            parent,
            receiver,
            kind,
            text,
            lineage.depth(),
            self.config.conversation_expiry,
        );
        let grant = self.grant(agent, memory_scope, &lineage);
        let input = JobInput {
            request: text.to_owned(),
            context: context.to_owned(),
            requirements: String::new(),
            memory_context: String::new(),
            conversation_id: lineage.conversation_id.clone(),
            history: Vec::new(),
        };
        Ok(PreparedRun {
            grant,
            input,
            exchange,
            lineage,
        })
    }

    /// Every declared capability and the agents that declare it.
    pub fn capabilities(&self) -> caxton_api_contract::routing::CapabilityList {
        router::capabilities(&self.registry.list())
    }

    /// The agents a request to `capability` reaches under `strategy` (one, or every one for
    /// a broadcast), by the live table's requests in flight and the agents' last use.
    pub fn route(
        &self,
        capability: &str,
        strategy: caxton_api_contract::routing::Strategy,
    ) -> Result<Vec<Arc<AgentDefinition>>, RunError> {
        self.check_open()?;
        let live = self.pool.live_workers();
        let in_flight = |agent: &str| live.iter().filter(|w| w.agent == agent).count();
        Ok(self
            .router
            .route(&self.registry.list(), capability, strategy, in_flight)?)
    }

    /// Run a prepared request in a fresh worker; with `answer_sink`, the answer is also sent
    /// there piece by piece as it is generated.
    pub async fn run_prepared(
        &self,
        PreparedRun {
            grant,
            mut input,
            exchange,
            lineage,
        }: PreparedRun,
        answer_sink: Option<worker_pool::DeltaSink>,
    ) -> ExecutionReport {
        let agent = grant.agent().clone();
        let memory_scope = grant.memory().cloned();
        // The supervisor, not the caller, decides what the agent remembers.
        if let Some(scope) = &memory_scope {
            input.memory_context = self
                .memory
                .context_for(scope, &agent.memory, &input.request)
                .await;
        }
        // Kept only when the exchange will be stored: most requests have no memory.
        let request =
            (memory_scope.is_some() && agent.memory.auto_store).then(|| input.request.clone());
        let execution_id = lineage.execution_id.clone();
        // One start for the record and the report: the pool measures from it too. A child ends
        // when its parent must.
        let mut start = worker_pool::ExecutionStart::now();
        start.conversation_id = Some(exchange.conversation_id.clone());
        if exchange.parent_execution_id.is_some() {
            start.not_after = Some(lineage.deadline);
            start.parent = exchange.parent_execution_id.clone();
            // A parent waiting for its answer holds a slot already; a notification's sender
            // does not wait, so its execution takes a slot like any request.
            start.waits_for_slot = exchange.kind != MessageKind::Request;
        }
        let (started, started_at) = (start.instant, start.unix_seconds);
        let exchange = Arc::new(exchange);
        // From here on, dropping this future (the caller went away) still records the
        // execution: as cancelled while the worker runs (the pool's own guard ends the worker),
        // as it ended after that. A drop while the start is being written waits for that write,
        // so the row it leaves `running` is finished too.
        let (start_written, written_start) = std::sync::mpsc::channel::<bool>();
        let mut pending = PendingRecord {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            report: Some(Arc::new(placed(
                worker_pool::new_report(
                    execution_id.clone(),
                    &agent,
                    started_at,
                    0.0,
                    Outcome::Cancelled,
                ),
                &exchange,
            ))),
            exchange: exchange.clone(),
            stop_tree: lineage.cancel.clone(),
            start_written: Some(written_start),
            started,
        };
        // A run whose record cannot be written is not run: the history never silently misses
        // an execution (the caller gets the reason, 507 for a full disk).
        if let Err(e) = self
            .store_write({
                let (id, name, version, exchange) = (
                    execution_id.clone(),
                    agent.name.to_string(),
                    agent.version.clone(),
                    exchange.clone(),
                );
                move |s| {
                    let written = s.record_start(&id, &name, &version, started_at, &exchange);
                    let _ = start_written.send(written.is_ok());
                    written
                }
            })
            .await
        {
            pending.report = None;
            let report = placed(
                worker_pool::new_report(
                    execution_id,
                    &agent,
                    started_at,
                    started.elapsed().as_secs_f64() * 1000.0,
                    Outcome::NotRecorded {
                        detail: e.to_string(),
                    },
                ),
                &exchange,
            );
            count_end(&self.metrics, &report, &exchange);
            return report;
        }
        let services = Services {
            providers: &self.providers,
            grant: &grant,
            metrics: &self.metrics,
        };
        // Shared, not copied, between the guard and the record's write.
        let report = Arc::new(placed(
            self.pool
                .execute(
                    agent.clone(),
                    input,
                    execution_id,
                    start,
                    &services,
                    answer_sink,
                )
                .await,
            &exchange,
        ));
        pending.report = Some(report.clone());
        if let (Outcome::Succeeded, Some(answer), Some(scope), Some(request)) =
            (&report.outcome, &report.answer, &memory_scope, &request)
        {
            self.memory
                .store_interaction(
                    scope,
                    agent.name.as_str(),
                    &report.execution_id,
                    request,
                    answer,
                )
                .await;
        }
        // The write below is this future's from its first poll (a blocking task that runs to
        // its end even if the future is dropped), so the guard must not write it again.
        pending.report = None;
        let written = self
            .store_write({
                let (report, exchange) = (report.clone(), exchange.clone());
                move |s| s.record_finish(&report, &exchange)
            })
            .await;
        let mut report = Arc::unwrap_or_clone(report);
        if stops_the_tree(&report.outcome) {
            lineage.cancel.cancel();
        }
        if let Err(e) = written {
            // The work is done and its answer is kept for the caller, who is told that the
            // history does not have it.
            report.record_error = Some(e.to_string());
        }
        count_end(&self.metrics, &report, &exchange);
        report
    }

    /// The most recently changed conversations.
    pub async fn conversations(
        &self,
        limit: usize,
    ) -> Result<Vec<caxton_api_contract::conversations::ConversationSummary>, store::StoreError>
    {
        self.with_store(move |s| s.conversations(limit, store::now_seconds()))
            .await
    }

    /// One conversation, its messages and its tree of executions.
    pub async fn conversation(
        &self,
        id: &str,
    ) -> Result<Option<caxton_api_contract::conversations::ConversationDetail>, store::StoreError>
    {
        let id = id.to_owned();
        self.with_store(move |s| s.conversation(&id, store::now_seconds()))
            .await
    }

    /// Database work runs on the blocking pool.
    /// Run `prepared` without waiting for it (a notification, an A2A task its caller does not
    /// wait for); it stops with the tree it belongs to, and shutdown waits for it.
    pub(crate) fn run_detached(self: &Arc<Self>, prepared: PreparedRun) {
        let stop = prepared.lineage().cancel.clone();
        let runner = self.clone();
        // In the caller's span, so the execution is part of the same trace.
        self.detached
            .spawn(tracing::Instrument::in_current_span(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = runner.run_prepared(prepared, None) => {}
                }
            }));
    }

    /// Store what an execution asked an agent on another server and what came back, in the
    /// execution's conversation: the request to `remote:NAME@CARD task ID`, then its answer or
    /// the error. A failure to store is logged; the answer still reaches the asking model.
    pub(crate) async fn record_remote_exchange(
        &self,
        lineage: &delegation::Lineage,
        remote: &caxton_api_contract::agents::RemoteAgent,
        request: &str,
        asked: &Result<a2a::remote::RemoteAnswer, a2a::remote::RemoteError>,
    ) {
        use caxton_api_contract::conversations::{Message, Protocol};
        let task = match asked {
            Ok(answer) => format!(" task {}", answer.task_id),
            Err(_) => String::new(),
        };
        let them = Party::Remote(format!("{}@{}{task}", remote.name, remote.card));
        let us = lineage
            .agent()
            .map_or(Party::Caller, |a| Party::Agent(a.to_string()));
        let now = store::now_seconds();
        let question = Message {
            id: uuid::Uuid::new_v4().to_string(),
            kind: MessageKind::Request,
            conversation_id: lineage.conversation_id.clone(),
            reply_to: None,
            sender: us.clone(),
            receiver: them.clone(),
            content: request.to_owned(),
            timestamp: now,
            execution_id: None,
        };
        let (kind, content) = match asked {
            Ok(answer) => (MessageKind::Response, answer.text.clone()),
            Err(e) => (MessageKind::Error, e.to_string()),
        };
        let reply = Message {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            reply_to: Some(question.id.clone()),
            sender: them,
            receiver: us,
            content,
            timestamp: store::now_seconds(),
            ..question.clone()
        };
        let stored = self
            .with_store(move |s| {
                s.record_notice(Protocol::RequestReply, &question)?;
                s.record_notice(Protocol::RequestReply, &reply)
            })
            .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, remote = %remote.name, "the exchange with a remote agent was not stored");
        }
    }

    pub(crate) async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, store::StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| store::StoreError::Query(format!("database task failed: {e}")))?
    }

    /// Database writes run on the blocking pool; a failure is logged and returned.
    async fn store_write(
        &self,
        f: impl FnOnce(&Store) -> Result<(), store::StoreError> + Send + 'static,
    ) -> Result<(), store::StoreError> {
        let result = self.with_store(f).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot record execution");
        }
        result
    }

    /// Validate and deploy an agent file's contents.
    pub fn deploy(&self, origin: &Path, source: &str) -> Result<DeployOutcome, DeployError> {
        let parsed = agent::parse_agent(origin, source).map_err(RegistryError::from)?;
        self.check_provider(&parsed, origin)?;
        let outcome = self.registry.deploy(origin, source)?;
        // A deploy also picks up files an operator changed by hand, as SIGHUP does.
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "agents directory not re-read after deploy");
        }
        tracing::info!(agent = %outcome.agent.name, version = %outcome.agent.version, "agent deployed");
        Ok(outcome)
    }

    /// Validate an agent file without deploying it.
    pub fn validate(&self, origin: &Path, source: &str) -> Result<AgentDefinition, DeployError> {
        let parsed = agent::parse_agent(origin, source).map_err(RegistryError::from)?;
        self.check_provider(&parsed, origin)?;
        Ok(parsed)
    }

    fn check_provider(&self, agent: &AgentDefinition, origin: &Path) -> Result<(), DeployError> {
        match &agent.llm.provider {
            Some(p) if !self.providers.contains(p) => Err(DeployError::UnknownProvider {
                file: origin.display().to_string(),
                provider: p.clone(),
                known: if self.providers.names().is_empty() {
                    "none".into()
                } else {
                    self.providers.names().join(", ")
                },
            }),
            _ => Ok(()),
        }
    }

    /// Re-read the agents directory (SIGHUP and `POST /api/v1/agents/reload`).
    pub fn reload(&self) -> Result<ReloadReport, RegistryError> {
        let report = self.registry.reload()?;
        self.metrics.agents_deployed.set(self.registry.len() as i64);
        tracing::info!(
            loaded = report.loaded,
            errors = report.errors.len(),
            "agents reloaded"
        );
        Ok(report)
    }

    /// Remove an agent.
    pub fn remove(&self, name: &str) -> Result<Arc<AgentDefinition>, RegistryError> {
        let removed = self.registry.remove(name)?;
        self.metrics.agents_deployed.set(self.registry.len() as i64);
        Ok(removed)
    }

    /// Signal a live worker.
    pub fn kill_worker(&self, target: &KillTarget, signal: i32) -> Result<LiveWorker, KillError> {
        self.pool.kill(target, signal)
    }

    /// Uptime, agents and live workers.
    pub fn status(&self) -> StatusReport {
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            ready: !self.draining.load(Ordering::SeqCst),
            agents: self.registry.len(),
            workers: self.pool.live_workers(),
            cgroups: self.pool.cgroups().to_owned(),
        }
    }

    /// Whether the supervisor accepts requests.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
    }

    /// Stop accepting requests; those running continue.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Requests still running.
    pub fn in_flight(&self) -> usize {
        self.pool.in_flight()
    }

    /// Let the log filter be changed at run time through `control` (once; later calls are
    /// ignored).
    pub fn set_log_control(&self, control: Arc<dyn telemetry::LogControl>) {
        let _ = self.log_control.set(control);
    }

    /// The log filter in force; `None` when it cannot be changed at run time.
    pub fn log_filter(&self) -> Option<String> {
        self.log_control.get().map(|c| c.current())
    }

    /// Put a new log filter in force; `Ok(None)` when it cannot be changed at run time.
    pub fn set_log_filter(&self, filter: &str) -> Result<Option<String>, String> {
        let Some(control) = self.log_control.get() else {
            return Ok(None);
        };
        control.set(filter)?;
        tracing::warn!(filter, "log filter changed");
        Ok(Some(control.current()))
    }

    /// Wait until every execution started without waiting for it (notifications, and what they
    /// started) has ended: a supervisor inside a CLI command ends with the command.
    pub async fn wait_for_notifications(&self) {
        self.detached.close();
        self.detached.wait().await;
    }

    /// Terminate every running worker.
    pub fn terminate_all(&self) {
        self.pool.terminate_all();
    }

    /// Become the child subreaper and end any process a worker leaves behind; for a process
    /// whose only children are workers (the daemon, the CLI's in-process supervisor).
    pub fn adopt_orphans(&self) -> std::io::Result<()> {
        self.pool.adopt_orphans()
    }
}

/// The final record of an execution whose future may be dropped before it writes it (its
/// caller went away): written when the guard drops still holding it.
struct PendingRecord {
    store: Store,
    metrics: Arc<Metrics>,
    report: Option<Arc<ExecutionReport>>,
    exchange: Arc<Exchange>,
    /// Stops what the execution started and did not wait for.
    stop_tree: tokio_util::sync::CancellationToken,
    /// Whether the start was written: the end is written only after it, and only if it was.
    start_written: Option<std::sync::mpsc::Receiver<bool>>,
    started: Instant,
}

/// Count an ended execution, and the message it processed.
fn count_end(metrics: &Metrics, report: &ExecutionReport, exchange: &Exchange) {
    let seconds = report.duration_ms / 1000.0;
    metrics.record_execution(&report.agent, report.outcome.label(), seconds);
    metrics.record_message(
        exchange.kind.as_str(),
        report.outcome == Outcome::Succeeded,
        seconds,
    );
}

/// Whether an execution that ended so takes the notifications it sent down with it: it was
/// stopped (killed, out of time, its caller gone), not finished.
fn stops_the_tree(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Killed { .. }
            | Outcome::DeadlineExceeded { .. }
            | Outcome::Cancelled
            | Outcome::ShutDown
            | Outcome::MemoryLimit { .. }
    )
}

/// The report, with where its execution sits: its conversation and its tree.
fn placed(mut report: ExecutionReport, exchange: &Exchange) -> ExecutionReport {
    report.placement = exchange.placement();
    report
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        let Some(report) = self.report.take() else {
            return;
        };
        self.stop_tree.cancel();
        let mut report = Arc::unwrap_or_clone(report);
        if report.outcome == Outcome::Cancelled {
            report.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            tracing::info!(execution_id = %report.execution_id, "execution cancelled by its caller");
        }
        count_end(&self.metrics, &report, &self.exchange);
        let store = self.store.clone();
        let exchange = self.exchange.clone();
        let start_written = self.start_written.take();
        // A drop cannot await; the write gets a thread of its own.
        let writer = std::thread::Builder::new()
            .name("caxton-cancel".into())
            .spawn(move || {
                if let Some(written) = start_written
                    && written.recv() != Ok(true)
                {
                    return;
                }
                if let Err(e) = store.record_finish(&report, &exchange) {
                    tracing::error!(error = %e, "cannot record an execution whose caller went away");
                }
            });
        if let Err(e) = writer {
            tracing::error!(error = %e, "cannot start a thread to record an execution");
        }
    }
}

/// The supervisor's answers to one execution's worker, each checked against its grant.
struct Services<'a> {
    providers: &'a Providers,
    grant: &'a ExecutionGrant,
    metrics: &'a Metrics,
}

/// Most text of all results of one `CallTools` sent back to a worker; each result gets its
/// share, so a frame stays far below the protocol's limit.
const TOOL_RESULTS_BUDGET: usize = 1 << 20;

#[async_trait::async_trait]
impl WorkerServices for Services<'_> {
    fn agent_tools(&self, _agent: &AgentDefinition) -> Vec<ToolSpec> {
        self.grant.tools()
    }

    async fn call_tools(
        &self,
        _agent: &AgentDefinition,
        calls: Vec<ToolCall>,
    ) -> (Vec<ToolResult>, Vec<ToolCallRecord>) {
        let share = TOOL_RESULTS_BUDGET / calls.len().max(1);
        let mut results = Vec::with_capacity(calls.len());
        let mut records = Vec::with_capacity(calls.len());
        let budget = self.grant.lineage().map(|l| l.budget.clone());
        for call in calls {
            // Every tool call of the tree, delegations included, draws on one budget.
            let outcome = match budget.as_ref().map(|b| b.take_tool_call()) {
                Some(Err(message)) => {
                    CallOutcome::refused(&call.name, &call.arguments_json, "refused", message)
                }
                _ => {
                    let span = tracing::info_span!(
                        "tool_call",
                        "otel.name" = %format!("execute_tool {}", call.name),
                        "otel.kind" = "internal",
                        "otel.status_code" = tracing::field::Empty,
                        "gen_ai.operation.name" = "execute_tool",
                        "gen_ai.tool.name" = %call.name,
                        "gen_ai.tool.call.id" = %call.id,
                    );
                    let outcome =
                        tracing::Instrument::instrument(self.grant.call(&call), span.clone()).await;
                    if outcome.is_error() {
                        span.record("otel.status_code", "ERROR");
                    }
                    outcome
                }
            };
            results.push(ToolResult {
                tool_call_id: call.id,
                content: tools::cut(&tools::result_text(&outcome.result), share),
                is_error: outcome.is_error(),
            });
            // A name the model made up is not a label: the set stays as small as the grants.
            let tool = if self.grant.grants(&call.name) {
                call.name.as_str()
            } else {
                "(not granted)"
            };
            self.metrics.record_tool_call(
                tool,
                &outcome.record.outcome,
                outcome.record.duration_ms / 1000.0,
            );
            records.push(outcome.record);
        }
        (results, records)
    }

    async fn complete(
        &self,
        agent: &AgentDefinition,
        request: CompletionRequest,
        deltas: Option<worker_pool::DeltaSink>,
    ) -> Result<(CompletionResponse, String), CompletionFailure> {
        // The model is offered only granted tools, as the grant describes them.
        let request = CompletionRequest {
            tools: self
                .grant
                .offered(&request.tools)
                .map_err(|message| CompletionFailure { message })?,
            ..request
        };
        let fail = |e: ProviderError| CompletionFailure {
            message: e.to_string(),
        };
        // A delegated execution stops when its tree's tokens are spent; the root's own turns
        // are counted but never cut, so its model can read why a delegation was refused.
        if let Some(lineage) = self.grant.lineage()
            && lineage.depth() > 0
            && lineage.budget.tokens_left() == 0
        {
            return Err(CompletionFailure {
                message: lineage.budget.tokens_spent_message(),
            });
        }
        let provider = self.providers.resolve(&agent.llm).map_err(fail)?;
        let mut request = ProviderRequest::from_ipc(request, &agent.llm).map_err(fail)?;
        // A delegated model call may answer with no more tokens than its tree has left; calls
        // running at once can still overspend by their prompts.
        if let Some(lineage) = self.grant.lineage().filter(|l| l.depth() > 0) {
            let left = u32::try_from(lineage.budget.tokens_left()).unwrap_or(u32::MAX);
            request.max_tokens = Some(request.max_tokens.map_or(left, |m| m.min(left)));
        }
        let model = agent
            .llm
            .model
            .as_deref()
            .unwrap_or(provider.default_model())
            .to_owned();
        // `chat {model}` by the OpenTelemetry GenAI conventions (CLIENT: the provider's server).
        let span = tracing::info_span!(
            "completion",
            "otel.name" = %format!("chat {model}"),
            "otel.kind" = "client",
            "otel.status_code" = tracing::field::Empty,
            "otel.status_description" = tracing::field::Empty,
            "gen_ai.operation.name" = "chat",
            "gen_ai.provider.name" = provider.system(),
            "gen_ai.request.model" = %model,
            "gen_ai.request.max_tokens" = request.max_tokens.map(i64::from),
            "gen_ai.request.temperature" = request.temperature.map(f64::from),
            "gen_ai.response.model" = tracing::field::Empty,
            "gen_ai.response.finish_reasons" = tracing::field::Empty,
            "gen_ai.usage.input_tokens" = tracing::field::Empty,
            "gen_ai.usage.output_tokens" = tracing::field::Empty,
            "gen_ai.response.time_to_first_chunk" = tracing::field::Empty,
            provider = provider.name(),
            model = %model,
        );
        let started = Instant::now();
        let result = match deltas {
            None => {
                tracing::Instrument::instrument(provider.complete(request, None), span.clone())
                    .await
            }
            // A streamed answer: its pieces pass through here on their way to the worker, so
            // the span can say when the first one came.
            Some(sink) => {
                let (relay, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
                let forward = async {
                    let mut first = true;
                    while let Some(piece) = pieces.recv().await {
                        if first {
                            first = false;
                            span.record(
                                "gen_ai.response.time_to_first_chunk",
                                started.elapsed().as_secs_f64(),
                            );
                        }
                        let _ = sink.send(piece);
                    }
                };
                let (result, ()) = tokio::join!(
                    tracing::Instrument::instrument(
                        provider.complete(request, Some(relay)),
                        span.clone()
                    ),
                    forward
                );
                result
            }
        };
        match &result {
            Ok(r) => {
                span.record("gen_ai.response.model", r.model.as_str());
                if let Some(reason) = &r.finish_reason {
                    span.record("gen_ai.response.finish_reasons", reason.as_str());
                }
                if let Some(n) = r.usage.prompt_tokens {
                    span.record("gen_ai.usage.input_tokens", i64::from(n));
                }
                if let Some(n) = r.usage.completion_tokens {
                    span.record("gen_ai.usage.output_tokens", i64::from(n));
                }
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", e.to_string().as_str());
            }
        }
        self.metrics.record_model_call(
            provider.name(),
            &model,
            result.is_ok(),
            started.elapsed().as_secs_f64(),
            result.as_ref().map_or((None, None), |r| {
                (r.usage.prompt_tokens, r.usage.completion_tokens)
            }),
        );
        if let (Ok(r), Some(lineage)) = (&result, self.grant.lineage()) {
            lineage.budget.spend_tokens(
                u64::from(r.usage.prompt_tokens.unwrap_or(0))
                    + u64::from(r.usage.completion_tokens.unwrap_or(0)),
            );
        }
        match &result {
            Ok(r) => tracing::debug!(
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                prompt_tokens = r.usage.prompt_tokens,
                completion_tokens = r.usage.completion_tokens,
                finish_reason = ?r.finish_reason,
                "completion"
            ),
            Err(e) => tracing::warn!(error = %e, "completion failed"),
        }
        result
            .map(|r| (r.into(), provider.name().to_owned()))
            .map_err(fail)
    }
}
