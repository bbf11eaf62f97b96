//! Where a command's work happens: the daemon, through its API, or a supervisor in this process
//! when no daemon is running. Chosen once per command ([`Backend::choose`]); each command is
//! then written once, against the API contract's typed answers, which both sides give alike.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use caxton_api_contract::agents::{
    AgentDetail, AgentList, AgentSource, DeployAnswer, RemoveAnswer,
};
use caxton_api_contract::conversations::{ConversationDetail, ConversationList};
use caxton_api_contract::memory::{MemoryRequest, encode_segment};
use caxton_api_contract::protocols::{
    AwardAnswer, AwardRule, CallForProposals, NegotiationAnswer, NegotiationRequest, PublishAnswer,
    PublishRequest,
};
use caxton_api_contract::routing::{BroadcastAnswer, CapabilityList, Strategy};
use caxton_api_contract::runs::ExecutionFilter;
use caxton_api_contract::tools::{
    ToolDeployAnswer, ToolPackage, ToolRemoveAnswer, ToolServerDetail, ToolServerList,
};
use caxton_api_contract::{
    ExecutionList, ExecutionRecord, ExecutionReport, RunRequest, StreamLine,
};
use caxton_supervisor::agent::{AgentRegistry, parse_agent};
use caxton_supervisor::config::Config;
use caxton_supervisor::daemon::{DataDirLock, LockError};
use caxton_supervisor::memory::{MemoryOp, MemoryService, OperationReply};
use caxton_supervisor::metrics::Metrics;
use caxton_supervisor::protocols;
use caxton_supervisor::store::{Store, now_seconds};
use caxton_supervisor::tools::ToolError;
use caxton_supervisor::tools::ToolRegistry;
use caxton_supervisor::{RunError, Supervisor};
use hyper::Method;

use crate::client::{ApiClient, ClientError, Refusal};

/// Where the work happens.
pub enum Backend<'a> {
    /// The daemon listening on the client's socket.
    Daemon(&'a ApiClient),
    /// This process, holding the data directory's lock.
    InProcess(InProcess<'a>),
}

/// Work done in this process. A command that writes claims the data directory for as long as
/// this lives; one that only reads does not, so it works beside another that writes.
pub struct InProcess<'a> {
    config: &'a Config,
    _lock: Option<DataDirLock>,
}

/// A run that did not succeed: what the user is told, and the report when there is one (its
/// answer may still be the user's).
pub struct RunFailure {
    /// The message.
    pub message: String,
    /// The execution's report.
    pub report: Option<Box<ExecutionReport>>,
    /// Whether a streamed answer had begun (its pieces were printed) before the failure.
    pub streamed: bool,
}

impl<'a> Backend<'a> {
    /// The daemon when one accepts connections on the client's socket, else this process,
    /// taking the data directory's lock for `role` (which names the command in the message a
    /// second user of the directory gets).
    pub async fn choose(
        config: &'a Config,
        client: &'a ApiClient,
        role: &str,
    ) -> anyhow::Result<Self> {
        Self::pick(config, client, Some(role)).await
    }

    /// As [`choose`](Self::choose), for a command that only reads: no lock is taken.
    pub async fn choose_to_read(config: &'a Config, client: &'a ApiClient) -> anyhow::Result<Self> {
        Self::pick(config, client, None).await
    }

    async fn pick(
        config: &'a Config,
        client: &'a ApiClient,
        role: Option<&str>,
    ) -> anyhow::Result<Self> {
        match client.probe().await {
            Ok(()) => Ok(Self::Daemon(client)),
            Err(ClientError::NotRunning(_)) => Ok(Self::InProcess(InProcess {
                config,
                _lock: role
                    .map(|role| claim_data_dir(config, client, role))
                    .transpose()?,
            })),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the work happens in this process (no daemon is running).
    pub fn is_in_process(&self) -> bool {
        matches!(self, Self::InProcess(_))
    }

    /// The deployed agents.
    pub async fn agents(&self) -> anyhow::Result<AgentList> {
        match self {
            Self::Daemon(client) => ask(client, Method::GET, "/api/v1/agents", NO_BODY).await,
            Self::InProcess(local) => Ok(AgentList {
                agents: local.agents()?.list().iter().map(|a| a.summary()).collect(),
            }),
        }
    }

    /// One deployed agent in full.
    pub async fn agent(&self, name: &str) -> anyhow::Result<AgentDetail> {
        match self {
            Self::Daemon(client) => {
                ask(
                    client,
                    Method::GET,
                    &format!("/api/v1/agents/{name}"),
                    NO_BODY,
                )
                .await
            }
            Self::InProcess(local) => Ok(local
                .agents()?
                .get(name)
                .ok_or_else(|| RunError::UnknownAgent(name.to_owned()))?
                .detail()),
        }
    }

    /// Deploy the agent file `file` with contents `source`; in this process it is checked and
    /// written into the agents directory, which a daemon started later loads.
    pub async fn deploy_agent(&self, file: &Path, source: String) -> anyhow::Result<DeployAnswer> {
        match self {
            Self::Daemon(client) => {
                let body = AgentSource {
                    source,
                    file: Some(file.display().to_string()),
                };
                ask(client, Method::POST, "/api/v1/agents", Some(&body)).await
            }
            Self::InProcess(local) => {
                let parsed = parse_agent(file, &source)?;
                check_provider_offline(local.config, parsed.llm.provider.as_deref(), file)?;
                let registry = AgentRegistry::new(&local.config.agents_dir);
                registry.reload()?;
                let out = registry.deploy(file, &source)?;
                Ok(DeployAnswer {
                    agent: out.agent.summary(),
                    path: out.path.display().to_string(),
                    replaced: out.replaced,
                    warnings: out.agent.warnings.clone(),
                })
            }
        }
    }

    /// Every declared capability and its agents.
    pub async fn capabilities(&self) -> anyhow::Result<CapabilityList> {
        match self {
            Self::Daemon(client) => ask(client, Method::GET, "/api/v1/capabilities", NO_BODY).await,
            Self::InProcess(local) => Ok(caxton_supervisor::router::capabilities(
                &local.agents()?.list(),
            )),
        }
    }

    /// Send `request` to the agent(s) declaring `capability`, chosen by `strategy`.
    pub async fn run_capability(
        &self,
        capability: &str,
        strategy: Strategy,
        request: RunRequest,
    ) -> anyhow::Result<CapabilityRun> {
        match self {
            Self::Daemon(client) => {
                let path = format!(
                    "/api/v1/capabilities/{capability}/run?strategy={}",
                    strategy.as_str()
                );
                if strategy == Strategy::Broadcast {
                    return Ok(CapabilityRun::All(
                        ask(client, Method::POST, &path, Some(&request)).await?,
                    ));
                }
                Ok(CapabilityRun::One(Box::new(
                    post_run(client, &path, &request).await?,
                )))
            }
            Self::InProcess(local) => local.run_capability(capability, strategy, request).await,
        }
    }

    /// The executions `filter` selects, newest first.
    pub async fn executions(&self, filter: &ExecutionFilter) -> anyhow::Result<ExecutionList> {
        match self {
            Self::Daemon(client) => {
                let path = format!("/api/v1/executions{}", filter.query());
                ask(client, Method::GET, &path, NO_BODY).await
            }
            Self::InProcess(local) => Ok(ExecutionList {
                executions: match local.store()? {
                    Some(store) => store.executions(filter)?,
                    None => Vec::new(),
                },
            }),
        }
    }

    /// One execution's record, with its tool calls and children.
    pub async fn execution(&self, id: &str) -> anyhow::Result<ExecutionRecord> {
        match self {
            Self::Daemon(client) => {
                let path = format!("/api/v1/executions/{}", encode_segment(id));
                ask(client, Method::GET, &path, NO_BODY).await
            }
            Self::InProcess(local) => local
                .store()?
                .map(|store| store.get(id))
                .transpose()?
                .flatten()
                .with_context(|| format!("no execution with id {id:?}")),
        }
    }

    /// The most recently changed conversations.
    pub async fn conversations(&self, limit: usize) -> anyhow::Result<ConversationList> {
        match self {
            Self::Daemon(client) => {
                let path = format!("/api/v1/conversations?limit={limit}");
                ask(client, Method::GET, &path, NO_BODY).await
            }
            Self::InProcess(local) => Ok(ConversationList {
                conversations: match local.store()? {
                    Some(store) => store.conversations(limit, now_seconds())?,
                    None => Vec::new(),
                },
            }),
        }
    }

    /// One conversation with its messages and executions.
    pub async fn conversation(&self, id: &str) -> anyhow::Result<ConversationDetail> {
        match self {
            Self::Daemon(client) => {
                let path = format!("/api/v1/conversations/{}", encode_segment(id));
                ask(client, Method::GET, &path, NO_BODY).await
            }
            Self::InProcess(local) => local
                .store()?
                .map(|store| store.conversation(id, now_seconds()))
                .transpose()?
                .flatten()
                .with_context(|| {
                    format!("no conversation {id:?} exists (see `caxton conversation list`)")
                }),
        }
    }

    /// Run a contract-net (`HighestScore`) or an auction (`LowestPrice`).
    pub async fn call_for_proposals(
        &self,
        body: CallForProposals,
        rule: AwardRule,
    ) -> anyhow::Result<AwardAnswer> {
        match self {
            Self::Daemon(client) => {
                let path = match rule {
                    AwardRule::HighestScore => "/api/v1/protocols/contract-net",
                    AwardRule::LowestPrice => "/api/v1/protocols/auction",
                };
                ask(client, Method::POST, path, Some(&body)).await
            }
            Self::InProcess(local) => {
                let sup = local.supervisor()?;
                let answer = protocols::start_call_for_proposals(&sup, body, rule).await?;
                sup.wait_for_notifications().await;
                Ok(answer)
            }
        }
    }

    /// Run a negotiation between two agents.
    pub async fn negotiate(&self, body: NegotiationRequest) -> anyhow::Result<NegotiationAnswer> {
        match self {
            Self::Daemon(client) => {
                ask(
                    client,
                    Method::POST,
                    "/api/v1/protocols/negotiation",
                    Some(&body),
                )
                .await
            }
            Self::InProcess(local) => {
                let sup = local.supervisor()?;
                let answer = protocols::start_negotiation(&sup, body).await?;
                sup.wait_for_notifications().await;
                Ok(answer)
            }
        }
    }

    /// Publish a notification to a topic's subscribers and wait for each.
    pub async fn publish(
        &self,
        topic: &str,
        body: PublishRequest,
    ) -> anyhow::Result<PublishAnswer> {
        match self {
            Self::Daemon(client) => {
                let path = format!("/api/v1/topics/{}/publish", encode_segment(topic));
                ask(client, Method::POST, &path, Some(&body)).await
            }
            Self::InProcess(local) => {
                let sup = local.supervisor()?;
                let answer = protocols::start_publication(&sup, topic, body).await?;
                sup.wait_for_notifications().await;
                Ok(answer)
            }
        }
    }

    /// The deployed tool servers.
    pub async fn tool_servers(&self) -> anyhow::Result<ToolServerList> {
        match self {
            Self::Daemon(client) => ask(client, Method::GET, "/api/v1/tools", NO_BODY).await,
            Self::InProcess(local) => Ok(ToolServerList {
                servers: local.tools()?.list(),
            }),
        }
    }

    /// One tool server in full.
    pub async fn tool_server(&self, name: &str) -> anyhow::Result<ToolServerDetail> {
        match self {
            Self::Daemon(client) => {
                ask(
                    client,
                    Method::GET,
                    &format!("/api/v1/tools/{name}"),
                    NO_BODY,
                )
                .await
            }
            Self::InProcess(local) => local
                .tools()?
                .show(name)
                .ok_or_else(|| ToolError::UnknownServer(name.to_owned()).into()),
        }
    }

    /// Deploy a tool package (its manifest text and module bytes; `origin` is its directory).
    pub async fn deploy_tool(
        &self,
        origin: &Path,
        manifest: String,
        module: Vec<u8>,
    ) -> anyhow::Result<ToolDeployAnswer> {
        match self {
            Self::Daemon(client) => {
                let body = ToolPackage {
                    manifest,
                    module_base64: base64::engine::general_purpose::STANDARD.encode(&module),
                    origin: Some(origin.display().to_string()),
                };
                ask(client, Method::POST, "/api/v1/tools", Some(&body)).await
            }
            Self::InProcess(local) => {
                let registry = local.tools()?;
                let before: Vec<String> = registry.list().into_iter().map(|i| i.name).collect();
                let server = registry.deploy(origin, &manifest, &module)?;
                Ok(ToolDeployAnswer {
                    replaced: before.contains(&server.name),
                    server,
                })
            }
        }
    }

    /// Remove a deployed tool server.
    pub async fn remove_tool(&self, name: &str) -> anyhow::Result<ToolRemoveAnswer> {
        match self {
            Self::Daemon(client) => {
                ask(
                    client,
                    Method::DELETE,
                    &format!("/api/v1/tools/{name}"),
                    NO_BODY,
                )
                .await
            }
            Self::InProcess(local) => Ok(ToolRemoveAnswer {
                removed: local.tools()?.remove(name)?.name,
            }),
        }
    }

    /// Run one memory operation. `Ok(Err)` is the operation's refusal, its message naming
    /// the API's parameter.
    pub async fn memory(
        &self,
        request: MemoryRequest,
    ) -> anyhow::Result<Result<MemoryAnswer, String>> {
        match self {
            Self::Daemon(client) => {
                let is_export = matches!(request, MemoryRequest::Export { .. });
                let method = Method::from_bytes(request.route().method().as_bytes())?;
                let (content_type, body) = request.body();
                let (status, bytes) = client
                    .call_raw(method, &request.path_and_query(), content_type, body.into())
                    .await?;
                if !status.is_success() {
                    return Ok(Err(Refusal::read(status, bytes).message().to_owned()));
                }
                Ok(Ok(if is_export {
                    MemoryAnswer::File(bytes.to_vec())
                } else {
                    MemoryAnswer::Json(
                        serde_json::from_slice(&bytes)
                            .context("the daemon's answer is not JSON")?,
                    )
                }))
            }
            Self::InProcess(local) => local.memory(request).await,
        }
    }

    /// Remove a deployed agent.
    pub async fn remove_agent(&self, name: &str) -> anyhow::Result<RemoveAnswer> {
        match self {
            Self::Daemon(client) => {
                ask(
                    client,
                    Method::DELETE,
                    &format!("/api/v1/agents/{name}"),
                    NO_BODY,
                )
                .await
            }
            Self::InProcess(local) => Ok(RemoveAnswer {
                removed: local.agents()?.remove(name)?.name.to_string(),
            }),
        }
    }

    /// Run one request of agent `name`; with `on_piece`, the answer is handed over piece by
    /// piece as it is generated. `Ok(Err)` is a run that failed, with its report if it ran.
    pub async fn run(
        &self,
        name: &str,
        request: RunRequest,
        on_piece: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> anyhow::Result<Result<ExecutionReport, RunFailure>> {
        match self {
            Self::Daemon(client) => run_on_daemon(client, name, request, on_piece).await,
            Self::InProcess(local) => local.run(name, request, on_piece).await,
        }
    }
}

async fn run_on_daemon(
    client: &ApiClient,
    name: &str,
    request: RunRequest,
    on_piece: Option<&mut (dyn FnMut(&str) + Send)>,
) -> anyhow::Result<Result<ExecutionReport, RunFailure>> {
    let Some(on_piece) = on_piece else {
        let path = format!("/api/v1/agents/{name}/run");
        return post_run(client, &path, &request).await;
    };
    let path = format!("/api/v1/agents/{name}/run?stream=true");
    let mut last = None;
    let streamed = client
        .request_lines(
            Method::POST,
            &path,
            &request,
            |line: StreamLine| match line {
                StreamLine::Delta { delta } => on_piece(&delta),
                other => last = Some(other),
            },
        )
        .await?;
    if let Err(refusal) = streamed {
        return Ok(Err(RunFailure::refused(refusal)));
    }
    Ok(match last {
        Some(StreamLine::Done { done }) => Ok(*done),
        Some(StreamLine::Failed(answer)) => Err(RunFailure {
            message: answer.error.message,
            report: answer.execution,
            streamed: true,
        }),
        Some(StreamLine::Delta { .. }) | None => Err(RunFailure {
            message: "the answer stream ended without a result".into(),
            report: None,
            streamed: true,
        }),
    })
}

/// How a request to a capability went: one agent's run, or every agent's for a broadcast.
pub enum CapabilityRun {
    /// The one agent chosen.
    One(Box<Result<ExecutionReport, RunFailure>>),
    /// Every agent with the capability.
    All(BroadcastAnswer),
}

/// What a memory operation answers.
pub enum MemoryAnswer {
    /// A JSON document.
    Json(serde_json::Value),
    /// An export file.
    File(Vec<u8>),
}

impl RunFailure {
    /// A refusal of the daemon: before anything was streamed, with the report of a run that
    /// happened.
    fn refused(refusal: Refusal) -> Self {
        Self {
            message: refusal.message().to_owned(),
            report: refusal.answer.execution,
            streamed: false,
        }
    }
}

/// A finished run's report as a success, or as a failure carrying it (a failed run, or one whose
/// record is missing).
fn finished(report: ExecutionReport, streamed: bool) -> Result<ExecutionReport, RunFailure> {
    match report.failure_message() {
        None => Ok(report),
        Some(message) => Err(RunFailure {
            message,
            report: Some(Box::new(report)),
            streamed,
        }),
    }
}

/// Post a run request and read its report, or the daemon's refusal as the run's failure.
async fn post_run(
    client: &ApiClient,
    path: &str,
    request: &RunRequest,
) -> anyhow::Result<Result<ExecutionReport, RunFailure>> {
    Ok(client
        .request::<ExecutionReport>(Method::POST, path, Some(request))
        .await?
        .map_err(RunFailure::refused))
}

/// No request body.
const NO_BODY: Option<&()> = None;

/// One request to the daemon: its typed answer, or its refusal as the error the user reads.
async fn ask<T: serde::de::DeserializeOwned>(
    client: &ApiClient,
    method: Method,
    path: &str,
    body: Option<&impl serde::Serialize>,
) -> anyhow::Result<T> {
    client
        .request(method, path, body)
        .await?
        .map_err(|refusal| anyhow::anyhow!(refusal.message().to_owned()))
}

/// Refuse an agent file naming a provider the configuration does not have, as the daemon does.
pub fn check_provider_offline(
    config: &Config,
    provider: Option<&str>,
    file: &Path,
) -> anyhow::Result<()> {
    if let Some(p) = provider
        && !config.providers.contains_key(p)
    {
        let known: Vec<_> = config.providers.keys().cloned().collect();
        bail!(
            "{}: [llm] provider {p:?} is not configured; configured providers: {}",
            file.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
    }
    Ok(())
}

impl InProcess<'_> {
    /// The tool servers of the data directory (and the built-in ones), loaded now.
    fn tools(&self) -> anyhow::Result<ToolRegistry> {
        Ok(ToolRegistry::open(
            &self.config.tools_dir,
            self.config.builtin_tools_dir.as_deref(),
            &self.config.cache_dir,
            &caxton_supervisor::memory::reserved_names(),
        )?)
    }

    /// The memory operation on the database, in this process: the same operation the daemon
    /// runs, checked and run without HTTP.
    async fn memory(&self, request: MemoryRequest) -> anyhow::Result<Result<MemoryAnswer, String>> {
        let op = match MemoryOp::from_request(request) {
            Ok(op) => op,
            Err(message) => return Ok(Err(message)),
        };
        let config = self.config.clone();
        // Opening reads every vector into memory and the model loads on first use: both block.
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let service =
                MemoryService::open(&config, Arc::new(Metrics::new())).with_context(|| {
                    format!(
                        "no daemon is running, and the memory database {} cannot be opened",
                        config.memory.database.display()
                    )
                })?;
            Ok(op.run(service.memory()))
        })
        .await
        .context("the memory task failed")??;
        Ok(match result {
            Ok(OperationReply::Json { body, .. }) => Ok(MemoryAnswer::Json(body)),
            Ok(OperationReply::File { bytes, .. }) => Ok(MemoryAnswer::File(bytes)),
            Err(e) => Err(e.to_string()),
        })
    }

    /// The agents directory, read now; files that cannot be used are warned about.
    fn agents(&self) -> anyhow::Result<AgentRegistry> {
        let registry = AgentRegistry::new(&self.config.agents_dir);
        let report = registry.reload()?;
        for e in report.errors {
            eprintln!("warning: {e}");
        }
        Ok(registry)
    }

    /// A supervisor in this process, for one command. Like the daemon, it adopts and ends
    /// whatever a worker leaves behind: its only children are its workers.
    fn supervisor(&self) -> anyhow::Result<Arc<Supervisor>> {
        let supervisor =
            Supervisor::open(self.config.clone()).context("starting an in-process supervisor")?;
        if let Err(e) = supervisor.adopt_orphans() {
            tracing::warn!(error = %e, "cannot become the child subreaper");
        }
        Ok(supervisor)
    }

    /// The execution database, read only; `None` before anything ran.
    fn store(&self) -> anyhow::Result<Option<Store>> {
        Ok(Store::open_to_read(&self.config.database)?)
    }

    async fn run_capability(
        &self,
        capability: &str,
        strategy: Strategy,
        request: RunRequest,
    ) -> anyhow::Result<CapabilityRun> {
        let supervisor = self.supervisor()?;
        let prepared = supervisor
            .prepare_capability_run(capability, strategy, request)
            .await?;
        let reports = futures_util::future::join_all(
            prepared
                .into_iter()
                .map(|p| supervisor.run_prepared(p, None)),
        )
        .await;
        supervisor.wait_for_notifications().await;
        if strategy == Strategy::Broadcast {
            return Ok(CapabilityRun::All(BroadcastAnswer {
                capability: capability.to_owned(),
                answers: reports,
            }));
        }
        let Some(report) = reports.into_iter().next() else {
            bail!("no agent was chosen for capability {capability:?}");
        };
        Ok(CapabilityRun::One(Box::new(finished(report, false))))
    }

    async fn run(
        &self,
        name: &str,
        request: RunRequest,
        on_piece: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> anyhow::Result<Result<ExecutionReport, RunFailure>> {
        // The same code path as the daemon's, still one worker per request.
        let supervisor = self.supervisor()?;
        let prepared = supervisor.prepare_run(name, request).await?;
        let streamed = on_piece.is_some();
        let report = match on_piece {
            None => supervisor.run_prepared(prepared, None).await,
            Some(on_piece) => {
                let (sink, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
                let run = supervisor.run_prepared(prepared, Some(sink));
                tokio::pin!(run);
                let report = loop {
                    tokio::select! {
                        biased;
                        Some(piece) = pieces.recv() => on_piece(&piece),
                        report = &mut run => break report,
                    }
                };
                while let Ok(piece) = pieces.try_recv() {
                    on_piece(&piece);
                }
                report
            }
        };
        // The notifications it sent end before the command does.
        supervisor.wait_for_notifications().await;
        Ok(finished(report, streamed))
    }
}

/// Offline commands write into the data directory themselves. Doing that as another user than
/// its owner (typically root on a system whose daemon runs as `caxton`) would leave files the
/// daemon cannot open, so refuse and say what to do instead.
fn ensure_data_dir_owner(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(&config.data_dir) else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "no daemon is running, and {} belongs to uid {} (you are uid {me}): start the daemon \
             (`systemctl start caxton`) or run this command as the directory's owner",
            config.data_dir.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// Before working on the data directory in this process (no daemon answered): check its owner
/// and take its lock, held until the returned guard drops. A daemon whose socket refused (it is
/// draining, or stopping) still holds the lock, and then nothing is written.
pub fn claim_data_dir(
    config: &Config,
    client: &ApiClient,
    role: &str,
) -> anyhow::Result<DataDirLock> {
    ensure_data_dir_owner(config)?;
    match DataDirLock::acquire(&config.data_dir, role) {
        Ok(lock) => Ok(lock),
        Err(e) if e.held_by_daemon() => bail!(
            "{e}, but its socket {} did not accept the connection (the daemon is probably \
             draining or stopping; `caxton health` says which). Not working on the data \
             directory behind its back: try again once it has stopped or restarted",
            client.socket().display()
        ),
        Err(e @ LockError::Held { .. }) => bail!("{e}: try again when it has finished"),
        Err(e) => Err(e.into()),
    }
}
