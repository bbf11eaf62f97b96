//! `caxton agent ...`. With a daemon running these go through its API; without one, `deploy`,
//! `list`, `show`, `remove` work on the agents directory and `run` starts an in-process
//! supervisor for the one request (it still forks a worker).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use caxton_ipc_protocol::JobInput;
use caxton_supervisor::Supervisor;
use caxton_supervisor::agent::{AgentRegistry, parse_agent};
use caxton_supervisor::config::Config;
use caxton_supervisor::daemon::{DataDirLock, LockError};
use hyper::Method;
use serde_json::{Value, json};

use crate::cli::AgentCommand;
use crate::client::{Answer, ApiClient, ClientError};
use crate::output;

pub async fn run(
    cmd: AgentCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentCommand::Deploy { file } => deploy(&file, config, client).await,
        AgentCommand::Validate { file } => validate(&file, config),
        AgentCommand::List { json } => list(config, client, json).await,
        AgentCommand::Show { name, json } => show(&name, config, client, json).await,
        AgentCommand::Remove { name } => remove(&name, config, client).await,
        AgentCommand::Run {
            name,
            text,
            context,
            requirements,
            workspace,
            json,
            stream,
            verbose,
        } => {
            let request = read_request(text)?;
            let input = JobInput {
                request,
                context,
                requirements,
                memory_context: String::new(),
            };
            if stream {
                run_streaming(&name, workspace.as_deref(), input, config, client, verbose).await
            } else {
                run_agent(
                    &name,
                    workspace.as_deref(),
                    input,
                    config,
                    client,
                    json,
                    verbose,
                )
                .await
            }
        }
    }
}

/// Call the daemon; `Ok(None)` when no daemon is running, so the caller can work offline.
pub(super) async fn try_daemon(
    client: &ApiClient,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Option<Answer>> {
    match client.call(method, path, body).await {
        Ok(answer) => Ok(Some(answer)),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
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
pub(super) fn claim_data_dir(
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

/// A supervisor in this process, for one command run without a daemon. Like the daemon, it
/// adopts and ends whatever a worker leaves behind: its only children are its workers.
fn open_in_process(config: &Config) -> anyhow::Result<std::sync::Arc<Supervisor>> {
    let supervisor =
        Supervisor::open(config.clone()).context("starting an in-process supervisor")?;
    if let Err(e) = supervisor.adopt_orphans() {
        tracing::warn!(error = %e, "cannot become the child subreaper");
    }
    Ok(supervisor)
}

/// Read an agent file within the size cap the daemon's API accepts (so a deploy it refuses
/// fails here, naming the file) and as UTF-8 (naming the line of a bad byte).
fn read_file(file: &Path) -> anyhow::Result<String> {
    Ok(caxton_supervisor::agent::read_agent_file(file)?)
}

pub(super) fn print_warnings(warnings: impl IntoIterator<Item = String>) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn check_provider_offline(
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

async fn deploy(file: &Path, config: &Config, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let source = read_file(file)?;
    let body = json!({"source": source, "file": file.display().to_string()});
    if let Some(answer) = try_daemon(client, Method::POST, "/api/v1/agents", Some(&body)).await? {
        if let Some(message) = answer.error_message() {
            bail!(message);
        }
        let warnings = answer
            .body
            .get("warnings")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        print_warnings(
            warnings
                .iter()
                .filter_map(|w| w.as_str().map(str::to_owned)),
        );
        let name = answer
            .body
            .pointer("/agent/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = answer
            .body
            .pointer("/agent/version")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let replaced = answer
            .body
            .get("replaced")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        println!(
            "{} agent {name} {version}",
            if replaced { "updated" } else { "deployed" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    // No daemon: validate and write into the agents directory; a daemon started later loads it.
    let _lock = claim_data_dir(config, client, "agent deploy")?;
    let parsed = parse_agent(file, &source)?;
    check_provider_offline(config, parsed.llm.provider.as_deref(), file)?;
    let registry = AgentRegistry::new(&config.agents_dir);
    registry.reload()?;
    let out = registry.deploy(file, &source)?;
    print_warnings(out.agent.warnings.iter().cloned());
    println!(
        "{} agent {} {} in {} (no daemon running)",
        if out.replaced { "updated" } else { "deployed" },
        out.agent.name,
        out.agent.version,
        out.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn validate(file: &Path, config: &Config) -> anyhow::Result<ExitCode> {
    let source = read_file(file)?;
    let agent = parse_agent(file, &source)?;
    check_provider_offline(config, agent.llm.provider.as_deref(), file)?;
    print_warnings(agent.warnings.iter().cloned());
    println!(
        "{}: valid agent {} {}",
        file.display(),
        agent.name,
        agent.version
    );
    Ok(ExitCode::SUCCESS)
}

fn offline_registry(config: &Config) -> anyhow::Result<AgentRegistry> {
    let registry = AgentRegistry::new(&config.agents_dir);
    let report = registry.reload()?;
    for e in report.errors {
        eprintln!("warning: {e}");
    }
    Ok(registry)
}

async fn list(config: &Config, client: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let body = match try_daemon(client, Method::GET, "/api/v1/agents", None).await? {
        Some(answer) => {
            if let Some(message) = answer.error_message() {
                bail!(message);
            }
            answer.body
        }
        None => {
            let agents: Vec<Value> = offline_registry(config)?
                .list()
                .iter()
                .map(|a| json!({"name": a.name, "version": a.version, "description": a.description, "capabilities": a.capabilities, "tools": a.tools}))
                .collect();
            json!({"agents": agents})
        }
    };
    if json {
        output::print_json(&body);
    } else {
        output::print_agents(&body);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(
    name: &str,
    config: &Config,
    client: &ApiClient,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let body =
        match try_daemon(client, Method::GET, &format!("/api/v1/agents/{name}"), None).await? {
            Some(answer) => {
                if let Some(message) = answer.error_message() {
                    bail!(message);
                }
                answer.body
            }
            None => {
                let agent = offline_registry(config)?
                    .get(name)
                    .with_context(|| format!("no agent named {name:?} is deployed"))?;
                let mut v = serde_json::to_value(&*agent)?;
                v["source"] = agent.source.clone().into();
                v
            }
        };
    if json {
        output::print_json(&body);
    } else {
        output::print_agent(&body);
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(name: &str, config: &Config, client: &ApiClient) -> anyhow::Result<ExitCode> {
    match try_daemon(
        client,
        Method::DELETE,
        &format!("/api/v1/agents/{name}"),
        None,
    )
    .await?
    {
        Some(answer) => {
            if let Some(message) = answer.error_message() {
                bail!(message);
            }
        }
        None => {
            let _lock = claim_data_dir(config, client, "agent remove")?;
            offline_registry(config)?.remove(name)?;
        }
    }
    println!("removed agent {name}");
    Ok(ExitCode::SUCCESS)
}

/// The question: the argument, or standard input when the argument is `-` or absent and standard
/// input is not a terminal (text piped in). Refused when there is none or it is blank.
fn read_request(text: Option<String>) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let from_stdin = match text.as_deref() {
        Some("-") => true,
        Some(_) => false,
        None if std::io::stdin().is_terminal() => bail!(
            "no question given: pass it as an argument (`caxton agent run NAME \"...\"`), or pipe \
             it in (`-` reads standard input)"
        ),
        None => true,
    };
    let request = if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the question from standard input")?;
        s
    } else {
        text.unwrap_or_default()
    };
    if request.trim().is_empty() {
        bail!(
            "the question is empty{}: nothing to ask the agent",
            if from_stdin {
                " (standard input held no text)"
            } else {
                ""
            }
        );
    }
    Ok(request)
}

/// The API's run request body.
fn run_body(input: &JobInput, workspace: Option<&str>) -> Value {
    json!({
        "request": input.request,
        "context": input.context,
        "requirements": input.requirements,
        "workspace": workspace,
    })
}

async fn run_agent(
    name: &str,
    workspace: Option<&str>,
    input: JobInput,
    config: &Config,
    client: &ApiClient,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let body = run_body(&input, workspace);
    let report: Value = match try_daemon(
        client,
        Method::POST,
        &format!("/api/v1/agents/{name}/run"),
        Some(&body),
    )
    .await?
    {
        Some(answer) => {
            if let Some(message) = answer.error_message() {
                let exec = answer.body.get("execution");
                if json && let Some(exec) = exec {
                    output::print_json(exec);
                } else if let Some(text) =
                    exec.and_then(|e| e.get("answer")).and_then(Value::as_str)
                {
                    // An answer whose record could not be written is still the user's.
                    println!("{text}");
                }
                if verbose && let Some(exec) = exec {
                    output::print_run_details(exec);
                }
                bail!(message);
            }
            answer.body
        }
        None => {
            // No daemon: one supervisor in this process, the same code path, still one worker.
            let _lock = claim_data_dir(config, client, "agent run")?;
            let supervisor = open_in_process(config)?;
            let report = supervisor.run_agent(name, workspace, input).await?;
            let value = serde_json::to_value(&report)?;
            if let Some(message) = report.not_recorded_message().or(report.error) {
                if json {
                    output::print_json(&value);
                } else if let Some(text) = &report.answer {
                    println!("{text}");
                }
                if verbose {
                    output::print_run_details(&value);
                }
                bail!(message);
            }
            value
        }
    };
    if json {
        output::print_json(&report);
    } else {
        println!(
            "{}",
            report
                .get("answer")
                .and_then(Value::as_str)
                .unwrap_or_default()
        );
        if verbose {
            output::print_run_details(&report);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Print one piece of the answer now, not when the line ends.
fn print_piece(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn run_streaming(
    name: &str,
    workspace: Option<&str>,
    input: JobInput,
    config: &Config,
    client: &ApiClient,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let body = run_body(&input, workspace);
    let mut last: Option<Value> = None;
    let path = format!("/api/v1/agents/{name}/run?stream=true");
    let answered = match client
        .call_lines(Method::POST, &path, &body, |line| {
            match line.get("delta").and_then(Value::as_str) {
                Some(text) => print_piece(text),
                None => last = Some(line),
            }
        })
        .await
    {
        Ok(None) => true,
        Ok(Some(refused)) => bail!(
            refused
                .error_message()
                .unwrap_or_else(|| "the daemon refused the request".into())
        ),
        Err(ClientError::NotRunning(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if !answered {
        // No daemon: an in-process supervisor, printing the worker's pieces as they come.
        let _lock = claim_data_dir(config, client, "agent run")?;
        let supervisor = open_in_process(config)?;
        let prepared = supervisor.prepare_run(name, workspace)?;
        let (sink, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
        let printer = tokio::spawn(async move {
            while let Some(text) = pieces.recv().await {
                print_piece(&text);
            }
        });
        let report = supervisor.run_prepared(prepared, input, Some(sink)).await;
        let _ = printer.await;
        last = Some(
            match report.not_recorded_message().or(report.error.clone()) {
                None => json!({"done": report}),
                Some(message) => json!({"error": {"message": message}, "execution": report}),
            },
        );
    }
    println!();
    let Some(last) = last else {
        bail!("the answer stream ended without a result")
    };
    if let Some(report) = last.get("done").or_else(|| last.get("execution"))
        && verbose
    {
        output::print_run_details(report);
    }
    if let Some(message) = last.pointer("/error/message").and_then(Value::as_str) {
        bail!(message.to_owned());
    }
    Ok(ExitCode::SUCCESS)
}
