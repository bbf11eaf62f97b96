//! Where a command's work happens: the daemon, through its API, or a supervisor in this process
//! when no daemon is running. Chosen once per command ([`Backend::choose`]); each command is
//! then written once, against the API contract's typed answers, which both sides give alike.

use std::sync::Arc;

use anyhow::{Context, bail};
use caxton_api_contract::{ExecutionReport, RunRequest, StreamLine};
use caxton_supervisor::Supervisor;
use caxton_supervisor::config::Config;
use caxton_supervisor::daemon::{DataDirLock, LockError};
use hyper::Method;

use crate::client::{ApiClient, ClientError};

/// Where the work happens.
pub enum Backend<'a> {
    /// The daemon listening on the client's socket.
    Daemon(&'a ApiClient),
    /// This process, holding the data directory's lock.
    InProcess(InProcess<'a>),
}

/// Work done in this process: the data directory is claimed for as long as this lives.
pub struct InProcess<'a> {
    config: &'a Config,
    _lock: DataDirLock,
}

/// A run that did not succeed: what the user is told, and the report when there is one (its
/// answer may still be the user's).
pub struct RunFailure {
    /// The message.
    pub message: String,
    /// The execution's report.
    pub report: Option<ExecutionReport>,
    /// Whether a streamed answer had begun (its pieces were printed) before the failure.
    pub streamed: bool,
}

impl<'a> Backend<'a> {
    /// The daemon when one accepts connections on the client's socket, else this process
    /// (taking the data directory's lock for `role`, which names the command in the message a
    /// second user of the directory gets).
    pub async fn choose(
        config: &'a Config,
        client: &'a ApiClient,
        role: &str,
    ) -> anyhow::Result<Self> {
        match client.probe().await {
            Ok(()) => Ok(Self::Daemon(client)),
            Err(ClientError::NotRunning(_)) => Ok(Self::InProcess(InProcess {
                config,
                _lock: claim_data_dir(config, client, role)?,
            })),
            Err(e) => Err(e.into()),
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
        return Ok(
            match client
                .request::<ExecutionReport>(Method::POST, &path, Some(&request))
                .await?
            {
                Ok(report) => Ok(report),
                Err(refusal) => Err(RunFailure {
                    message: refusal.message().to_owned(),
                    report: refusal.answer.execution.map(|r| *r),
                    streamed: false,
                }),
            },
        );
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
        return Ok(Err(RunFailure {
            message: refusal.message().to_owned(),
            report: None,
            streamed: false,
        }));
    }
    Ok(match last {
        Some(StreamLine::Done { done }) => Ok(*done),
        Some(StreamLine::Failed(answer)) => Err(RunFailure {
            message: answer.error.message,
            report: answer.execution.map(|r| *r),
            streamed: true,
        }),
        Some(StreamLine::Delta { .. }) | None => Err(RunFailure {
            message: "the answer stream ended without a result".into(),
            report: None,
            streamed: true,
        }),
    })
}

impl InProcess<'_> {
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

    async fn run(
        &self,
        name: &str,
        request: RunRequest,
        on_piece: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> anyhow::Result<Result<ExecutionReport, RunFailure>> {
        // The same code path as the daemon's, still one worker per request.
        let supervisor = self.supervisor()?;
        let prepared = supervisor.prepare_run(name, request)?;
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
        Ok(match report.failure_message() {
            None => Ok(report),
            Some(message) => Err(RunFailure {
                message,
                report: Some(report),
                streamed,
            }),
        })
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
