//! `caxton execution list | show ID`: the execution history, from the daemon or, when none
//! runs, from the database (read only).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use caxton_api_contract::runs::ExecutionFilter;
use caxton_supervisor::config::Config;

use crate::backend::Backend;
use crate::cli::ExecutionCommand;
use crate::client::ApiClient;
use crate::output;

pub async fn run(
    cmd: ExecutionCommand,
    config: &Config,
    client: &ApiClient,
) -> anyhow::Result<ExitCode> {
    let backend = Backend::choose_to_read(config, client).await?;
    match cmd {
        ExecutionCommand::List {
            agent,
            status,
            since,
            limit,
            json,
        } => {
            let filter = ExecutionFilter {
                agent,
                status,
                since: since.as_deref().map(since_seconds).transpose()?,
                limit: Some(limit),
            };
            let list = backend.executions(&filter).await?;
            if json {
                output::print_json(&list);
            } else {
                output::print_executions(&list);
            }
        }
        ExecutionCommand::Show { id, json } => {
            let record = backend.execution(&id).await?;
            if json {
                output::print_json(&record);
            } else {
                output::print_execution(&record);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since`: a duration ago (`1h`, `2days`) or an RFC 3339 time, as seconds since the epoch.
fn since_seconds(text: &str) -> anyhow::Result<f64> {
    let at = match humantime::parse_duration(text) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(text).with_context(|| {
            format!(
                "--since {text:?}: not a duration (\"1h\", \"2days\") or a time (\"2026-12-06T22:00:00Z\")"
            )
        })?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_a_duration_ago_or_a_time_and_names_what_it_refuses() {
        let hour_ago = since_seconds("1h").unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        assert!((now - hour_ago - 3600.0).abs() < 5.0);
        assert_eq!(
            since_seconds("2026-12-06T22:00:00Z").ok(),
            Some(1_796_594_400.0)
        );
        let err = since_seconds("yesterday-ish")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--since \"yesterday-ish\""), "{err}");
    }
}
