//! One worker's process: spawning it (through the spawner thread, into its cgroup), watching
//! its exit through its pidfd, draining its stderr, stopping and reaping it.
//!
//! Invariant: a [`WorkerProcess`] is reaped exactly once, by [`stop_and_reap`] on the normal path
//! or by its drop when the execution is dropped first; either way its process group (swept
//! while the leader is still an unreaped zombie, so the group id cannot have been reused) and its
//! cgroup are killed before the reap, so nothing it started outlives it.
//!
//! [`stop_and_reap`]: WorkerProcess::stop_and_reap

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use super::cgroup::{CgroupLimits, WorkerCgroup};
use super::spawner::Spawner;
use super::{WorkerPool, os};

/// Bytes of a worker's stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

/// A pidfd shared with the live table, pollable for exit.
pub(super) struct PidFd(Arc<OwnedFd>);

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Readable once the worker has exited.
pub(super) type ExitWatch = AsyncFd<PidFd>;

/// How a worker's process ended.
pub(super) struct Ending {
    /// Its exit status, once reaped.
    pub status: Option<ExitStatus>,
    /// Whether the supervisor signalled it before it exited (deadline, shutdown, protocol).
    pub signalled_by_us: bool,
    /// Whether the kernel's OOM killer ended a process in its cgroup.
    pub oom_killed: bool,
}

/// The worker process of one execution. It is reaped exactly once: by
/// [`stop_and_reap`](Self::stop_and_reap) on the normal path, or, when the execution is dropped
/// before that (its caller went away, or a panic unwound), by the drop, which first kills its
/// group and cgroup so nothing outlives it.
pub(super) struct WorkerProcess {
    child: Option<Child>,
    pid: u32,
    pidfd: Arc<OwnedFd>,
    cgroup: Option<WorkerCgroup>,
    spawner: Spawner,
    /// When the spawn was asked for.
    spawned_at: Instant,
    /// `None` when the pidfd cannot be watched; the socket then tells when the worker is gone.
    exit: Option<ExitWatch>,
    /// The end of its stderr, once the pipe closes.
    stderr: Option<JoinHandle<String>>,
}

impl WorkerProcess {
    /// Spawn a worker with `socket` as its stdin, within `address_space` bytes and the pool's
    /// other limits, and move it into its cgroup where there is one. The error is why no
    /// worker could be started.
    pub(super) async fn spawn(
        pool: &WorkerPool,
        socket: OwnedFd,
        address_space: u64,
    ) -> Result<Self, String> {
        let settings = &pool.settings;
        let mut command = Command::new(&settings.worker_path);
        command
            .arg("--supervisor-pid")
            .arg(std::process::id().to_string())
            .arg("--sandbox")
            .arg(settings.sandbox)
            // Nothing of ours (NOTIFY_SOCKET, API keys, tokens) reaches a worker.
            .env_clear()
            .process_group(0)
            .current_dir("/")
            .stdin(Stdio::from(socket))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned_at = Instant::now();
        let spawned = match pool
            .spawner
            .spawn(command, settings.limits, address_space)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let detail = format!("{}: {e}", settings.worker_path.display());
                tracing::error!(error = %detail, "worker spawn failed");
                return Err(detail);
            }
        };
        pool.metrics
            .worker_spawn_duration
            .observe(spawned.spawn_time.as_secs_f64());
        let mut child = spawned.child;
        let pid = child.id();
        let stderr = child.stderr.take();
        // The guard exists from here on, so a drop during the awaits below still ends the worker.
        let mut worker = Self {
            child: Some(child),
            pid,
            pidfd: Arc::new(spawned.pidfd),
            cgroup: None,
            spawner: pool.spawner.clone(),
            spawned_at,
            exit: None,
            stderr: None,
        };
        // Into its cgroup before the handshake is answered, like the rlimits (the worker starts
        // nothing before it has its job); done here rather than on the spawner thread, which
        // every spawn waits for, while the worker is still starting up.
        if let Some(cgroups) = pool.spawner.cgroups() {
            let limits = CgroupLimits {
                memory: address_space,
                processes: settings.limits.processes,
                cpu_quota_micros: settings.limits.cpu_quota_micros,
            };
            match tokio::task::spawn_blocking(move || cgroups.enter(pid, &limits)).await {
                Ok(Ok(cgroup)) => worker.cgroup = Some(cgroup),
                Ok(Err(e)) => {
                    tracing::warn!(pid, error = %e, "worker runs without its cgroup");
                }
                Err(e) => tracing::error!(pid, error = %e, "the cgroup task failed"),
            }
        }
        worker.stderr = stderr.map(|s| tokio::spawn(drain_stderr(OwnedFd::from(s), pid)));
        // SAFETY: PidFd holds an Arc of the OwnedFd, so the fd stays open and refers to this
        // pidfd for as long as the AsyncFd lives.
        worker.exit = match unsafe {
            AsyncFd::register_with_interest(
                PidFd(worker.pidfd.clone()),
                tokio::io::Interest::READABLE,
            )
        } {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::error!(error = ?e, "cannot watch worker pidfd; relying on the socket");
                None
            }
        };
        Ok(worker)
    }

    /// Its process id (and process group id).
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Its pidfd, for signalling it without naming a PID that may be recycled.
    pub(super) fn pidfd(&self) -> Arc<OwnedFd> {
        self.pidfd.clone()
    }

    /// When its spawn was asked for.
    pub(super) fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// Readable once it has exited; `None` when the pidfd could not be watched.
    pub(super) fn exit_watch(&self) -> Option<&ExitWatch> {
        self.exit.as_ref()
    }

    /// The end of what it wrote to stderr, waiting briefly for the pipe to close.
    pub(super) async fn stderr_tail(&mut self) -> String {
        match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_millis(200), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Wait for the worker to exit (TERM, CONT, grace, KILL unless `polite`), end every process
    /// it left (its process group while the leader is still an unreaped zombie, and its
    /// cgroup), then reap it. `terminating` runs when it has to be signalled.
    pub(super) async fn stop_and_reap(
        &mut self,
        grace: Duration,
        polite: bool,
        terminating: impl FnOnce(),
    ) -> Ending {
        let pid = self.pid;
        let exit = self.exit.as_ref();
        let mut exited = if polite {
            wait_exit(exit, grace).await
        } else {
            os::has_exited(pid)
        };
        let mut signalled_by_us = false;
        if !exited {
            terminating();
            signalled_by_us = true;
            let _ = os::signal_group(pid, libc::SIGTERM);
            // A stopped worker cannot act on TERM until it is continued.
            let _ = os::signal_group(pid, libc::SIGCONT);
            exited = wait_exit(exit, grace).await;
        }
        // The leader may be gone already, but its unreaped zombie keeps the group id ours, so this
        // also kills any grandchild it left behind.
        let _ = os::signal_group(pid, libc::SIGKILL);
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        if !exited {
            wait_exit(exit, grace).await;
        }
        let oom_killed = self.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
        Ending {
            status: self.reap(),
            signalled_by_us,
            oom_killed,
        }
    }

    /// Reap the (already signalled) worker and hand its leftovers to the spawner thread.
    fn reap(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = self.pid;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.spawner.retire(pid, self.cgroup.take());
                Some(status)
            }
            Ok(None) => {
                // Still not gone after SIGKILL (stuck in the kernel): reap it whenever it dies,
                // without holding up this request.
                tracing::error!(pid, "worker survived SIGKILL; reaping it in the background");
                let (spawner, cgroup) = (self.spawner.clone(), self.cgroup.take());
                std::thread::spawn(move || {
                    let _ = child.wait();
                    spawner.retire(pid, cgroup);
                });
                None
            }
            Err(e) => {
                tracing::error!(pid, error = %e, "cannot reap worker");
                None
            }
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = self.pid;
        tracing::warn!(
            pid,
            "execution dropped before its worker ended; killing the worker"
        );
        // Unreaped, so the group id is still this worker's.
        let _ = os::signal_group(pid, libc::SIGKILL);
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        let (spawner, cgroup) = (self.spawner.clone(), self.cgroup.take());
        // Waiting blocks; a drop may run on the async runtime, so the wait gets its own thread.
        let reaper = std::thread::Builder::new()
            .name("caxton-reap".into())
            .spawn(move || {
                let _ = child.wait();
                spawner.retire(pid, cgroup);
            });
        if let Err(e) = reaper {
            tracing::error!(pid, error = %e, "cannot start a thread to reap a dropped worker");
        }
    }
}

/// Wait until the pidfd says the process has exited, up to `limit`.
async fn wait_exit(exit: Option<&ExitWatch>, limit: Duration) -> bool {
    match exit {
        Some(fd) => tokio::time::timeout(limit, fd.readable())
            .await
            .is_ok_and(|r| r.is_ok()),
        None => {
            tokio::time::sleep(limit).await;
            false
        }
    }
}

/// Log a worker's stderr as it comes and keep its last [`STDERR_TAIL`] bytes.
async fn drain_stderr(fd: OwnedFd, pid: u32) -> String {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tracing::debug!(pid, stderr = %String::from_utf8_lossy(&buf[..n]).trim_end(), "worker stderr");
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
}
