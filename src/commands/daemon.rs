//! `serve`, `status`, `health` and `worker kill`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use caxton_api_contract::{Health, KillAnswer, KillRequest, LogFilter, StatusReport};
use caxton_supervisor::config::Config;
use hyper::Method;

use super::EXIT_UNAVAILABLE;
use crate::cli::WorkerCommand;
use crate::client::{ApiClient, ClientError};
use crate::output;

pub async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let (tracing, log_control) = init_daemon_logging(&config)?;
    let served = caxton_supervisor::daemon::serve(config, Some(log_control))
        .await
        .context("caxton serve");
    if let Some(tracing) = tracing {
        // Blocking: it waits for the last export, which must not hold a runtime thread.
        tokio::task::spawn_blocking(move || tracing.shutdown())
            .await
            .ok();
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The log filter, replaceable while the daemon runs (`PUT /api/v1/log-filter`).
struct ReloadableFilter<S> {
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
    current: std::sync::Mutex<String>,
}

impl<S: 'static> caxton_supervisor::telemetry::LogControl for ReloadableFilter<S> {
    fn current(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        let parsed = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        self.handle.reload(parsed).map_err(|e| e.to_string())?;
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = filter.to_owned();
        Ok(())
    }
}

type Started = (
    Option<caxton_supervisor::telemetry::Tracing>,
    std::sync::Arc<dyn caxton_supervisor::telemetry::LogControl>,
);

/// Where the daemon's log lines go, from `CAXTON_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogOutput {
    /// Plain text on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// The journal's native protocol: each field of a line and of the spans it is in becomes a
    /// journal field (`journalctl TRACE_ID=...`).
    Journal,
}

impl LogOutput {
    /// `CAXTON_LOG_FORMAT` (`text`, `json` or `journald`); unset, the journal when systemd
    /// connected stderr to it, text otherwise.
    fn from_env() -> anyhow::Result<Self> {
        match std::env::var("CAXTON_LOG_FORMAT").ok().as_deref() {
            Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some("journald") => Ok(Self::Journal),
            Some(other) => {
                bail!("CAXTON_LOG_FORMAT = {other:?}: must be \"text\", \"json\" or \"journald\"")
            }
            None if stderr_is_the_journal() => Ok(Self::Journal),
            None => Ok(Self::Text),
        }
    }
}

/// Whether stderr is the stream systemd connected to the journal: systemd names that stream's
/// device and inode in `JOURNAL_STREAM` (systemd.exec(5)), and a daemon whose stderr is still
/// it may upgrade to the native protocol. Redirected elsewhere (`caxton serve 2>file` in a unit
/// shell), it is not.
fn stderr_is_the_journal() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (dev, ino) = v.split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Logs go to stderr, or to the journal under systemd ([`LogOutput`]). `CAXTON_LOG` filters
/// (default `info`; changed at run time with `PUT /api/v1/log-filter`). Spans also go to an
/// OpenTelemetry collector when one is configured (`caxton_supervisor::telemetry`), whatever the
/// log filter.
fn init_daemon_logging(config: &Config) -> anyhow::Result<Started> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let output = LogOutput::from_env()?;
    let text = std::env::var("CAXTON_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&text)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let control = std::sync::Arc::new(ReloadableFilter {
        handle,
        current: std::sync::Mutex::new(text),
    });
    // Telemetry never stops the daemon: an exporter that cannot be built (a malformed
    // OTEL_EXPORTER_OTLP_ENDPOINT) is reported once logging is up, and nothing is exported.
    let (tracing, not_traced) =
        match caxton_supervisor::telemetry::Tracing::start(&config.telemetry) {
            Ok(t) => (t, None),
            Err(e) => (None, Some(e)),
        };
    let spans = tracing.as_ref().map(|t| {
        t.layer()
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let registry = tracing_subscriber::registry().with(spans);
    // Nor does a journal that cannot be reached: the lines go to stderr, saying why.
    let journal = match output {
        LogOutput::Journal => Some(tracing_journald::layer()),
        LogOutput::Text | LogOutput::Json => None,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Log files get plain text; colours only for a person at a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let (lines, no_journal) = match (output, journal) {
        (_, Some(Ok(journal))) => (
            // Field names as written (`TRACE_ID`, `AGENT`), not behind the layer's `F_` prefix:
            // none of the daemon's fields is one of the journal's own.
            journal.with_field_prefix(None).with_filter(filter).boxed(),
            None,
        ),
        (LogOutput::Json, _) => (
            fmt.json().flatten_event(true).with_filter(filter).boxed(),
            None,
        ),
        (_, journal) => (
            fmt.with_filter(filter).boxed(),
            journal.and_then(Result::err),
        ),
    };
    registry.with(lines).init();
    if let Some(e) = no_journal {
        tracing::warn!(error = %e, "the journal cannot be reached; logging to stderr");
    }
    if let Some(t) = &tracing {
        tracing::info!(endpoint = t.endpoint(), "exporting traces over OTLP");
    }
    if let Some(e) = not_traced {
        tracing::error!(error = %e, "traces are not exported");
    }
    Ok((tracing, control))
}

/// `caxton log-filter [FILTER]`: show the running daemon's log filter, or change it.
pub async fn log_filter(client: &ApiClient, filter: Option<String>) -> anyhow::Result<ExitCode> {
    let answer = match filter {
        None => {
            client
                .request::<LogFilter>(Method::GET, "/api/v1/log-filter", None::<&()>)
                .await?
        }
        Some(filter) => {
            client
                .request::<LogFilter>(
                    Method::PUT,
                    "/api/v1/log-filter",
                    Some(&LogFilter { filter }),
                )
                .await?
        }
    };
    match answer {
        Ok(f) => {
            println!("{}", f.filter);
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => bail!(refusal.message().to_owned()),
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
