//! `serve`, `status`, `health` and `worker kill`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use caxton_api_contract::{Health, KillAnswer, KillRequest, StatusReport};
use caxton_supervisor::config::Config;
use hyper::Method;

use super::EXIT_UNAVAILABLE;
use crate::cli::WorkerCommand;
use crate::client::{ApiClient, ClientError};
use crate::output;

pub async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    init_daemon_logging();
    caxton_supervisor::daemon::serve(config)
        .await
        .context("caxton serve")?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr (journald under systemd). `CAXTON_LOG` filters (default `info`);
/// `CAXTON_LOG_FORMAT=json` switches to one JSON object per line.
fn init_daemon_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAXTON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // journald and log files get plain text; colours only for a person at a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("CAXTON_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

pub async fn status(client: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let status = match client
        .request::<StatusReport>(Method::GET, "/api/v1/status", None::<&()>)
        .await
    {
        Ok(Ok(status)) => status,
        Ok(Err(refusal)) => bail!(refusal.message().to_owned()),
        Err(e @ ClientError::NotRunning(_)) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_UNAVAILABLE));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        output::print_json(&status);
    } else {
        output::print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn health(client: &ApiClient) -> anyhow::Result<ExitCode> {
    match client
        .request::<Health>(Method::GET, "/api/v1/health", None::<&()>)
        .await
    {
        Ok(Ok(_)) => {
            println!("ready");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(refusal)) => {
            // `draining` while the daemon stops (a 503 with the health body); otherwise the
            // refusal's reason (a peer the socket does not allow, ...).
            match serde_json::from_slice::<Health>(&refusal.body) {
                Ok(health) => println!("{}", health.status),
                Err(_) => eprintln!("{}", refusal.message()),
            }
            Ok(ExitCode::from(EXIT_UNAVAILABLE))
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(EXIT_UNAVAILABLE))
        }
    }
}

pub async fn worker(cmd: WorkerCommand, client: &ApiClient) -> anyhow::Result<ExitCode> {
    let WorkerCommand::Kill { target, signal } = cmd;
    let path = format!("/api/v1/workers/{target}/kill");
    let answer = client
        .request::<KillAnswer>(
            Method::POST,
            &path,
            Some(&KillRequest {
                signal: Some(signal),
            }),
        )
        .await?
        .map_err(|refusal| anyhow::anyhow!(refusal.message().to_owned()))?;
    println!(
        "sent {} to worker {} (execution {})",
        answer.signal, answer.signalled.pid, answer.signalled.execution_id
    );
    Ok(ExitCode::SUCCESS)
}
