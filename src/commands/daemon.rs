//! `serve`, `status`, `health` and `worker kill`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use caxton_supervisor::config::Config;
use hyper::Method;
use serde_json::{Value, json};

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
    let answer = match client.call(Method::GET, "/api/v1/status", None).await {
        Ok(a) => a,
        Err(e @ ClientError::NotRunning(_)) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_UNAVAILABLE));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(message) = answer.error_message() {
        bail!(message);
    }
    if json {
        output::print_json(&answer.body);
    } else {
        output::print_status(&answer.body);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn health(client: &ApiClient) -> anyhow::Result<ExitCode> {
    match client.call(Method::GET, "/api/v1/health", None).await {
        Ok(answer) if answer.status.is_success() => {
            println!("ready");
            Ok(ExitCode::SUCCESS)
        }
        Ok(answer) => {
            // `draining` while the daemon stops; otherwise the refusal's reason (a peer the
            // socket does not allow, ...).
            match answer.body.get("status").and_then(Value::as_str) {
                Some(state) => println!("{state}"),
                None => eprintln!(
                    "{}",
                    answer.error_message().unwrap_or_else(|| "not ready".into())
                ),
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
        .call(Method::POST, &path, Some(&json!({"signal": signal})))
        .await?;
    if let Some(message) = answer.error_message() {
        bail!(message);
    }
    let pid = answer
        .body
        .pointer("/signalled/pid")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let exec = answer
        .body
        .pointer("/signalled/execution_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sig = answer
        .body
        .get("signal")
        .and_then(Value::as_str)
        .unwrap_or_default();
    println!("sent {sig} to worker {pid} (execution {exec})");
    Ok(ExitCode::SUCCESS)
}
