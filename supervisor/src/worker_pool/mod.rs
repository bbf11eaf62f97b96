//! Worker processes: spawning one `caxton-worker` per request, talking to it, bounding it in time
//! and resources, and reaping it.
//!
//! Architecture invariants:
//! - every worker is its own process group, and the group is swept with SIGKILL before the
//!   worker is reaped, so no grandchild outlives its request; where a cgroup can be made (a
//!   delegated cgroup v2 subtree, else a cgroup v1 pids hierarchy), each worker gets one that
//!   bounds it and is emptied at the end too, and the daemon is the child subreaper, so a
//!   descendant that left the group (setsid, double fork) is adopted and ended rather than
//!   re-parented to PID 1;
//! - a worker is owned by a guard that kills and reaps it when its execution is dropped (a
//!   caller that went away), so no worker outlives its request's future;
//! - a worker is signalled only through its pidfd (or its unreaped group), never by a bare PID,
//!   so an operator's kill can never hit a recycled PID;
//! - workers are spawned by one dedicated thread that lives as long as the pool, because the
//!   parent-death signal fires when the spawning *thread* exits;
//! - a worker's misbehaviour becomes the [`Outcome`] of its own execution and nothing else.

mod cgroup;
mod conversation;
mod execution;
mod live;
mod os;
mod outcome;
mod process;
mod spawner;

pub use conversation::{DeltaSink, WorkerServices};
pub use execution::ExecutionStart;
pub use live::{KillError, KillTarget, LiveWorker, WorkerState};
pub use os::{parse_signal, signal_name};
pub use outcome::{ExecutionReport, Outcome, Placement, Usage, error_message, new_report};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, WorkerLimits};
use crate::metrics::Metrics;

/// Settings of the pool, resolved from [`Config`].
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The worker binary.
    pub worker_path: PathBuf,
    /// Deadline for agents that set none.
    pub default_timeout: Duration,
    /// Time between TERM and KILL.
    pub kill_grace: Duration,
    /// Longest wait for a new worker's Hello.
    pub handshake_timeout: Duration,
    /// Default rlimits.
    pub limits: WorkerLimits,
    /// Concurrency cap (a delegated request its parent waits for runs beside its parent).
    pub max_concurrent: usize,
    /// How workers confine themselves (`--sandbox`).
    pub sandbox: &'static str,
}

impl From<&Config> for PoolSettings {
    fn from(c: &Config) -> Self {
        Self {
            worker_path: c.worker_path.clone(),
            default_timeout: c.default_timeout,
            kill_grace: c.kill_grace,
            handshake_timeout: c.handshake_timeout,
            limits: c.worker_limits,
            max_concurrent: c.max_concurrent_workers,
            sandbox: c.worker_sandbox,
        }
    }
}

/// Runs agent requests in worker processes.
pub struct WorkerPool {
    settings: PoolSettings,
    spawner: spawner::Spawner,
    live: live::LiveTable,
    permits: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl WorkerPool {
    /// Start the spawner thread.
    pub fn new(settings: PoolSettings, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        Ok(Self {
            permits: tokio::sync::Semaphore::new(settings.max_concurrent),
            spawner: spawner::Spawner::start()?,
            live: live::LiveTable::default(),
            settings,
            metrics,
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The live workers, oldest first.
    pub fn live_workers(&self) -> Vec<LiveWorker> {
        self.live.snapshot()
    }

    /// Number of requests currently running (or waiting for a worker slot).
    pub fn in_flight(&self) -> usize {
        self.live.len()
    }

    /// Send a signal to a live worker, chosen by PID or execution id.
    pub fn kill(&self, target: &KillTarget, signal: i32) -> Result<LiveWorker, KillError> {
        self.live.signal(target, signal)
    }

    /// Become the child subreaper of this process and end every orphan a worker leaves behind
    /// (the daemon and the CLI's in-process supervisor do; a library user that has children of
    /// its own must not, as any child that is not a worker would be ended).
    pub fn adopt_orphans(&self) -> std::io::Result<()> {
        self.spawner.adopt_orphans()
    }

    /// Which cgroups workers get (a delegated cgroup v2 subtree, a cgroup v1 pids cgroup, or
    /// none), and why no better kind.
    pub fn cgroups(&self) -> &str {
        self.spawner.cgroup_summary()
    }

    /// Stop every running worker now (TERM, grace, KILL); used when draining times out.
    pub fn terminate_all(&self) {
        self.shutdown.cancel();
    }
}
