//! `caxton serve`: the API listeners, systemd notification, and signal handling around a
//! [`Supervisor`].
//!
//! SIGHUP reloads the agents directory. The first SIGTERM or SIGINT drains: no new requests, the
//! running ones get `[shutdown] grace_period` to finish, then their workers are terminated. A
//! second one during the drain terminates the workers at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api::{self, bind_unix_socket};
use crate::config::Config;
use crate::{StartError, Supervisor};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The supervisor could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The Unix socket could not be bound.
    #[error(transparent)]
    Bind(#[from] api::listener::BindError),
    /// The TCP listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Tcp {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// The TCP API token could not be read.
    #[error(transparent)]
    Token(crate::config::ConfigError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Run the daemon until SIGTERM or SIGINT, then drain and return.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;

    let supervisor = Supervisor::open(config)?;
    // Workers' children that detach from their process group come back to the daemon and end.
    if let Err(e) = supervisor.adopt_orphans() {
        tracing::warn!(error = %e, "cannot become the child subreaper; escaped worker descendants would go to PID 1");
    }
    let config = supervisor.config().clone();
    let stop_accepting = CancellationToken::new();

    // Bind every listener before serving on any: a client that sees the Unix socket answer
    // (as the tests' readiness probe does) may use the TCP listener next.
    let listener = bind_unix_socket(&config.socket).await?;
    let tcp_listener = match &config.tcp {
        None => None,
        Some(tcp) => {
            let token = tcp.read_token().map_err(ServeError::Token)?;
            let listener = tokio::net::TcpListener::bind(tcp.listen)
                .await
                .map_err(|error| ServeError::Tcp {
                    addr: tcp.listen,
                    error,
                })?;
            tracing::info!(addr = %tcp.listen, "management API listening on TCP (bearer token required)");
            Some((listener, token))
        }
    };
    let unix_server = tokio::spawn(
        axum::serve(listener, api::router(supervisor.clone()))
            .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
            .into_future(),
    );
    let tcp_server = tcp_listener.map(|(listener, token)| {
        tokio::spawn(
            axum::serve(listener, api::router_with_token(supervisor.clone(), token))
                .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
                .into_future(),
        )
    });
    tracing::info!(socket = %config.socket.display(), pid = std::process::id(), "management API listening");
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    // Models load after READY: a missing or slow model must not hold up the API.
    tokio::spawn({
        let sup = supervisor.clone();
        async move { sup.preload_models().await }
    });

    let watchdog = sd_notify::watchdog_enabled().map(|period| {
        let beat = period / 2;
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog enabled"
        );
        let sup = supervisor.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(beat);
            loop {
                tick.tick().await;
                // Pinging from the main runtime proves its reactor and timers still turn.
                if sup.is_ready() {
                    notify(&[NotifyState::Watchdog]);
                }
            }
        })
    });

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!(signal = "SIGTERM", "shutting down"); break; }
            _ = sigint.recv() => { tracing::info!(signal = "SIGINT", "shutting down"); break; }
            _ = sighup.recv() => {
                match supervisor.reload() {
                    Ok(report) => {
                        for e in &report.errors {
                            tracing::warn!(file = %e.file, line = e.line, reason = %e.reason, "agent file not reloaded; previous version kept");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "reload failed"),
                }
            }
        }
    }

    // Drain.
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    supervisor.begin_drain();
    stop_accepting.cancel();
    let drained = wait_for_drain(
        &supervisor,
        config.shutdown_grace,
        &mut sigterm,
        &mut sigint,
    )
    .await;
    if !drained {
        tracing::warn!(
            in_flight = supervisor.in_flight(),
            "grace period over; terminating remaining workers"
        );
        supervisor.terminate_all();
        let bound = config.kill_grace * 3 + Duration::from_secs(1);
        let start = Instant::now();
        while supervisor.in_flight() > 0 && start.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    // Responses to the requests that just ended still have to be written.
    let _ = tokio::time::timeout(Duration::from_secs(2), unix_server).await;
    if let Some(tcp) = tcp_server {
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp).await;
    }
    if let Err(e) = std::fs::remove_file(&config.socket) {
        tracing::debug!(error = %e, "socket file not removed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Wait until no request runs, up to `grace`; a second signal ends the wait early.
async fn wait_for_drain(
    supervisor: &Arc<Supervisor>,
    grace: Duration,
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        if supervisor.in_flight() == 0 {
            return true;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(deadline) => return false,
            _ = sigterm.recv() => { tracing::warn!("second signal: terminating workers now"); return false; }
            _ = sigint.recv() => { tracing::warn!("second signal: terminating workers now"); return false; }
        }
    }
}

/// Tell systemd, when it is listening; harmless otherwise.
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
