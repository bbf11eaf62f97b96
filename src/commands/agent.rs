//! `caxton agent ...`. With a daemon running these go through its API; without one, `deploy`,
//! `list`, `show`, `remove` work on the agents directory and `run` starts an in-process
//! supervisor for the one request (it still forks a worker).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use caxton_api_contract::routing::Strategy;
use caxton_api_contract::{ExecutionReport, RunRequest};
use caxton_supervisor::agent::parse_agent;
use caxton_supervisor::config::Config;

use crate::backend::{Backend, CapabilityRun, RunFailure, check_provider_offline};
use crate::cli::{AgentCommand, CapabilityCommand};
use crate::client::ApiClient;
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
            capability,
            strategy,
            context,
            requirements,
            workspace,
            conversation,
            json,
            stream,
            verbose,
        } => {
            // With --capability there is no agent name, so a lone positional is the question.
            let (agent, text) = match (capability.is_some(), name, text) {
                (true, Some(_), Some(_)) => {
                    bail!("name an agent or give --capability, not both")
                }
                (true, first, None) => (None, first),
                (true, None, text) => (None, text),
                (false, Some(name), text) => (Some(name), text),
                (false, None, _) => {
                    bail!("name the agent to run, or send the request by --capability")
                }
            };
            let request = RunRequest {
                request: read_request(text)?,
                context,
                requirements,
                workspace,
                conversation,
            };
            let backend = Backend::choose(config, client, "agent run").await?;
            let show = RunDisplay {
                json,
                stream,
                verbose,
            };
            match (agent, capability) {
                (Some(name), _) => run_agent(&name, request, &backend, show).await,
                (None, Some(capability)) => {
                    run_capability(&capability, strategy, request, &backend, show).await
                }
                (None, None) => bail!("name the agent to run"),
            }
        }
    }
}

/// `caxton capability list`.
pub async fn capability(
    cmd: CapabilityCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    let CapabilityCommand::List { json } = cmd;
    let list = Backend::choose_to_read(config, client)
        .await?
        .capabilities()
        .await?;
    if json {
        output::print_json(&list);
    } else {
        output::print_capabilities(&list);
    }
    Ok(ExitCode::SUCCESS)
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

async fn deploy(file: &Path, config: &Config, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let source = read_file(file)?;
    let backend = Backend::choose(config, client, "agent deploy").await?;
    let out = backend.deploy_agent(file, source).await?;
    print_warnings(out.warnings);
    let verb = if out.replaced { "updated" } else { "deployed" };
    if backend.is_in_process() {
        // No daemon: a daemon started later loads it from there.
        println!(
            "{verb} agent {} {} in {} (no daemon running)",
            out.agent.name, out.agent.version, out.path
        );
    } else {
        println!("{verb} agent {} {}", out.agent.name, out.agent.version);
    }
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

async fn list(config: &Config, client: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let list = Backend::choose_to_read(config, client)
        .await?
        .agents()
        .await?;
    if json {
        output::print_json(&list);
    } else {
        output::print_agents(&list);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(
    name: &str,
    config: &Config,
    client: &ApiClient,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let agent = Backend::choose_to_read(config, client)
        .await?
        .agent(name)
        .await?;
    if json {
        output::print_json(&agent);
    } else {
        output::print_agent(&agent);
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(name: &str, config: &Config, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let backend = Backend::choose(config, client, "agent remove").await?;
    backend.remove_agent(name).await?;
    println!(
        "removed agent {name}{}",
        if backend.is_in_process() {
            " (no daemon running)"
        } else {
            ""
        }
    );
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

/// Run one request and print how it went: the answer (as it comes, with `stream`), the report
/// as JSON with `json`, its details on stderr with `verbose`.
async fn run_agent(
    name: &str,
    request: RunRequest,
    backend: &Backend<'_>,
    show: RunDisplay,
) -> anyhow::Result<ExitCode> {
    let mut printed = false;
    let mut print = |text: &str| {
        printed = true;
        print_piece(text);
    };
    let on_piece = show
        .stream
        .then_some(&mut print as &mut (dyn FnMut(&str) + Send));
    let result = backend.run(name, request, on_piece).await?;
    // The answer's pieces end without a newline; a stream that printed nothing needs none.
    show_run(
        result,
        RunDisplay {
            stream: show.stream && printed,
            ..show
        },
    )
}

/// Send the request to the agent(s) with `capability` and print how it went; a broadcast
/// prints each agent's answer under its name and fails if any agent failed.
async fn run_capability(
    capability: &str,
    strategy: Strategy,
    request: RunRequest,
    backend: &Backend<'_>,
    show: RunDisplay,
) -> anyhow::Result<ExitCode> {
    let all = match backend
        .run_capability(capability, strategy, request)
        .await?
    {
        CapabilityRun::One(result) => return show_run(*result, show),
        CapabilityRun::All(all) => all,
    };
    if show.json {
        output::print_json(&all);
    } else {
        output::print_labelled(&all.answers);
    }
    if show.verbose {
        for report in &all.answers {
            output::print_run_details(report);
        }
    }
    let failed = all
        .answers
        .iter()
        .filter(|r| r.failure_message().is_some())
        .count();
    if failed > 0 {
        bail!(
            "{failed} of the {} agents with capability {capability:?} failed",
            all.answers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Print how one run went (see [`run_agent`]).
fn show_run(
    result: Result<ExecutionReport, RunFailure>,
    show: RunDisplay,
) -> anyhow::Result<ExitCode> {
    let streamed = match &result {
        Ok(_) => show.stream,
        Err(failure) => failure.streamed && show.stream,
    };
    if streamed {
        println!();
    }
    match result {
        Ok(report) => {
            if show.json && !show.stream {
                output::print_json(&report);
            } else if !show.stream {
                println!("{}", report.answer.as_deref().unwrap_or_default());
            }
            if show.verbose {
                output::print_run_details(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if let Some(report) = &failure.report {
                if !show.stream {
                    if show.json {
                        output::print_json(report);
                    } else if let Some(text) = &report.answer {
                        // An answer whose record could not be written is still the user's.
                        println!("{text}");
                    }
                }
                if show.verbose {
                    output::print_run_details(report);
                }
            }
            bail!(failure.message)
        }
    }
}

/// How `caxton agent run` shows its result.
#[derive(Clone, Copy)]
struct RunDisplay {
    json: bool,
    stream: bool,
    verbose: bool,
}

/// Print one piece of the answer now, not when the line ends.
fn print_piece(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
