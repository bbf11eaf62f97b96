//! `caxton serve`: the API listeners, systemd notification, and signal handling around a
//! [`Supervisor`].
//!
//! The daemon holds the data directory's lock file for its whole life. SIGHUP reloads the agents
//! directory. The first SIGTERM or SIGINT drains: no new runs (the API still answers, saying so),
//! the running ones get `[shutdown] grace_period` to finish, then their workers are terminated. A
//! second one during the drain terminates the workers at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api::{self, bind_unix_socket};
use crate::config::{ApiLimits, Config};
use crate::{StartError, Supervisor};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process owns the data directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The supervisor could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The Unix socket could not be bound.
    #[error(transparent)]
    Bind(#[from] api::listener::BindError),
    /// The TCP listener could not be bound.
    #[error("cannot listen on {addr} ([api] tcp_listen): {error}")]
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

/// The lock file in the data directory: whoever holds it (a daemon, or the CLI running one
/// request in its own process) is the only one writing the directory's databases.
pub const LOCK_FILE: &str = "caxton.lock";

/// Why the data directory's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{}", held_message(.path, .holder.as_deref()))]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote into it (`PID ROLE`), when it could be read.
        holder: Option<String>,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {error}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
}

impl LockError {
    /// Whether the holder is a daemon (`caxton serve`) rather than another CLI command.
    pub fn held_by_daemon(&self) -> bool {
        matches!(self, Self::Held { holder: Some(h), .. } if h.ends_with(" serve"))
    }
}

fn held_message(path: &Path, holder: Option<&str>) -> String {
    let dir = path.parent().unwrap_or(path).display();
    match holder.and_then(|h| h.split_once(' ')) {
        Some((pid, "serve")) => {
            format!("another caxton daemon (pid {pid}) is already serving the data directory {dir}")
        }
        Some((pid, role)) => {
            format!("the data directory {dir} is in use by `caxton {role}` (pid {pid})")
        }
        None => format!("the data directory {dir} is in use by another caxton process"),
    }
}

/// An exclusive `flock` on `<data_dir>/caxton.lock`, released when dropped (or when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Take the lock without waiting; `role` (`serve`, `agent run`, ...) is recorded for the
    /// messages others get.
    pub fn acquire(data_dir: &Path, role: &str) -> Result<Self, LockError> {
        use std::io::{Read, Seek, Write};
        let path = data_dir.join(LOCK_FILE);
        let io_err = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        std::fs::create_dir_all(data_dir).map_err(io_err)?;
        // std opens with O_CLOEXEC, so no worker inherits the lock.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let holder = file
                    .read_to_string(&mut holder)
                    .ok()
                    .map(|_| holder.trim().to_owned())
                    .filter(|h| !h.is_empty());
                return Err(LockError::Held { path, holder });
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(io_err(error)),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{} {role}", std::process::id()).map_err(io_err)?;
        Ok(Self { _file: file })
    }
}

/// Removes the socket file when dropped: whatever ends `serve` after the socket was bound (a
/// TCP port in use, a missing token, a normal stop) leaves no socket behind.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::debug!(error = %e, socket = %self.0.display(), "socket file not removed");
        }
    }
}

/// Run the daemon until SIGTERM or SIGINT, then drain and return.
pub async fn serve(
    config: Config,
    log_control: Option<Arc<dyn crate::telemetry::LogControl>>,
) -> Result<(), ServeError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;

    // Before the database is opened: opening marks rows left `running` as abandoned, which must
    // never happen to the rows of a daemon that is still running.
    let _lock = DataDirLock::acquire(&config.data_dir, "serve")?;
    let listeners = 1 + usize::from(config.tcp.is_some());
    let limits = connection_limits(config.api_limits, listeners);
    let supervisor = Supervisor::open(config)?;
    if let Some(control) = log_control {
        supervisor.set_log_control(control);
    }
    // Workers' children that detach from their process group come back to the daemon and end.
    if let Err(e) = supervisor.adopt_orphans() {
        tracing::warn!(error = %e, "cannot become the child subreaper; escaped worker descendants would go to PID 1");
    }
    let config = supervisor.config().clone();
    let stop_accepting = CancellationToken::new();

    // Bind every listener before serving on any: a client that sees the Unix socket answer
    // (as the tests' readiness probe does) may use the TCP listener next.
    let listener = bind_unix_socket(&config.socket).await?;
    let _socket_file = SocketFile(config.socket.clone());
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
    let unix_server = tokio::spawn(api::serve(
        api::ApiListener::Unix(listener),
        api::router(supervisor.clone()),
        limits,
        stop_accepting.clone(),
    ));
    let tcp_server = tcp_listener.map(|(listener, token)| {
        tokio::spawn(api::serve(
            api::ApiListener::Tcp(listener),
            api::router_with_token(supervisor.clone(), token),
            limits,
            stop_accepting.clone(),
        ))
    });
    tracing::info!(
        socket = %config.socket.display(),
        pid = std::process::id(),
        max_connections = limits.max_connections,
        max_unauthenticated = limits.max_unauthenticated,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        "management API listening"
    );
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

    // Drain. The listeners stay open meanwhile, so clients hear "draining" (health) and
    // "shutting down" (runs) instead of finding nobody and working around the daemon.
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    supervisor.begin_drain();
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
    stop_accepting.cancel();
    if let Some(w) = watchdog {
        w.abort();
    }
    // Responses to the requests that just ended still have to be written.
    let _ = tokio::time::timeout(Duration::from_secs(2), unix_server).await;
    if let Some(tcp) = tcp_server {
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The listeners' limits, with the connection caps shrunk if they and `[api] fd_reserve` would
/// not fit in the open-files limit (raised to its hard maximum first): connections are refused
/// before a worker spawn or a database open could fail for want of a descriptor.
fn connection_limits(limits: ApiLimits, listeners: usize) -> api::ServeLimits {
    let open_files = raise_open_files_limit();
    let in_use = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count() as u64);
    let budget = open_files.saturating_sub(in_use + limits.fd_reserve);
    let per_listener = usize::try_from(budget / listeners as u64).unwrap_or(usize::MAX);
    let mut max_connections = limits.max_connections;
    if max_connections > per_listener {
        max_connections = per_listener.max(1);
        tracing::warn!(
            configured = limits.max_connections,
            max_connections,
            open_files,
            fd_reserve = limits.fd_reserve,
            "[api] max_connections lowered to fit the open-files limit"
        );
    }
    api::ServeLimits {
        header_timeout: limits.header_timeout,
        body_timeout: limits.body_timeout,
        max_connections,
        max_unauthenticated: limits.max_unauthenticated.min(max_connections),
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard one; returns the soft limit in force.
fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            // An unlimited hard limit is still capped by the kernel's fs.nr_open.
            let target = hard.min(1 << 20);
            match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
                Ok(()) => target,
                Err(e) => {
                    tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit");
                    soft
                }
            }
        }
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            1024
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_has_one_owner_at_a_time_and_others_hear_who() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = DataDirLock::acquire(dir.path(), "serve").unwrap();
        let err = DataDirLock::acquire(dir.path(), "agent run").unwrap_err();
        assert!(err.held_by_daemon());
        assert!(
            err.to_string().contains(&format!(
                "another caxton daemon (pid {}) is already serving the data directory",
                std::process::id()
            )),
            "{err}"
        );
        drop(daemon);
        let cli = DataDirLock::acquire(dir.path(), "agent run").unwrap();
        let err = DataDirLock::acquire(dir.path(), "serve").unwrap_err();
        assert!(!err.held_by_daemon());
        assert!(
            err.to_string().contains("in use by `caxton agent run`"),
            "{err}"
        );
        drop(cli);
    }
}
