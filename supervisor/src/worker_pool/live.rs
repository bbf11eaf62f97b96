//! The live table: every worker that exists right now, what it is doing, and a way to signal it
//! that cannot hit a recycled PID. A worker's row, and its share of the `live_workers` gauge,
//! last exactly as long as its execution's [`LiveEntry`], however the execution ends.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::{WorkerPool, os};

pub use caxton_api_contract::{LiveWorker, WorkerState};

/// How an operator names a worker.
#[derive(Debug, Clone)]
pub enum KillTarget {
    /// By OS process id.
    Pid(u32),
    /// By execution id.
    Execution(String),
}

impl KillTarget {
    /// A number is a PID; anything else is an execution id.
    pub fn parse(text: &str) -> Self {
        match text.parse::<u32>() {
            Ok(pid) => Self::Pid(pid),
            Err(_) => Self::Execution(text.to_owned()),
        }
    }
}

/// Why a worker could not be signalled.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// No live worker matches.
    #[error("no live worker with {0}")]
    NotFound(String),
    /// It exited between lookup and signal.
    #[error("worker {0} has already exited")]
    AlreadyExited(u32),
    /// The kernel refused.
    #[error("cannot signal worker {pid}: {error}")]
    Os {
        /// The worker.
        pid: u32,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
}

pub(super) struct Entry {
    pub pid: u32,
    pub agent: String,
    pub started_at: SystemTime,
    pub started: Instant,
    pub state: WorkerState,
    pub pidfd: Arc<OwnedFd>,
    /// The last signal an operator sent through the API, to explain the outcome.
    pub operator_signal: Option<i32>,
    /// The execution that delegated to this one.
    pub parent: Option<String>,
    /// How it confined itself, as its Hello said (`SandboxReport::summary`).
    pub sandbox: Option<String>,
}

impl Entry {
    fn row(&self, execution_id: &str, now: Instant) -> LiveWorker {
        LiveWorker {
            pid: self.pid,
            agent: self.agent.clone(),
            execution_id: execution_id.to_owned(),
            started_at: self
                .started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            age_seconds: now.duration_since(self.started).as_secs_f64(),
            state: self.state,
            parent_execution_id: self.parent.clone(),
            sandbox: self.sandbox.clone(),
        }
    }
}

/// Shared table of live workers keyed by execution id.
#[derive(Default)]
pub struct LiveTable {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl LiveTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn insert(&self, execution_id: &str, entry: Entry) {
        self.lock().insert(execution_id.to_owned(), entry);
    }

    pub(super) fn set_state(&self, execution_id: &str, state: WorkerState) {
        if let Some(e) = self.lock().get_mut(execution_id) {
            e.state = state;
        }
    }

    pub(super) fn set_sandbox(&self, execution_id: &str, summary: String) {
        if let Some(e) = self.lock().get_mut(execution_id) {
            e.sandbox = Some(summary);
        }
    }

    /// Remove an entry; returns the operator's signal, if one was sent.
    pub(super) fn remove(&self, execution_id: &str) -> Option<i32> {
        self.lock()
            .remove(execution_id)
            .and_then(|e| e.operator_signal)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(super) fn snapshot(&self) -> Vec<LiveWorker> {
        let now = Instant::now();
        let mut rows: Vec<LiveWorker> = self.lock().iter().map(|(id, e)| e.row(id, now)).collect();
        rows.sort_by(|a, b| b.age_seconds.total_cmp(&a.age_seconds));
        rows
    }

    /// Signal one worker through its pidfd.
    pub(super) fn signal(&self, target: &KillTarget, signal: i32) -> Result<LiveWorker, KillError> {
        let (pidfd, row) = {
            let mut entries = self.lock();
            let found = entries.iter_mut().find(|(id, e)| match target {
                KillTarget::Pid(pid) => e.pid == *pid,
                KillTarget::Execution(exec) => *id == exec,
            });
            let Some((id, entry)) = found else {
                return Err(KillError::NotFound(match target {
                    KillTarget::Pid(pid) => format!("PID {pid}"),
                    KillTarget::Execution(id) => format!("execution id {id}"),
                }));
            };
            entry.operator_signal = Some(signal);
            let row = entry.row(id, Instant::now());
            (entry.pidfd.clone(), row)
        };
        match os::pidfd_send_signal(&pidfd, signal) {
            Ok(()) => {
                tracing::info!(pid = row.pid, execution_id = %row.execution_id, signal, "operator signalled worker");
                Ok(row)
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(KillError::AlreadyExited(row.pid))
            }
            Err(error) => Err(KillError::Os {
                pid: row.pid,
                error,
            }),
        }
    }
}

/// A worker's row in the live table and its share of the `live_workers` gauge, removed on the
/// normal path by [`remove`](Self::remove) and otherwise when the execution is dropped.
pub(super) struct LiveEntry<'a> {
    pool: &'a WorkerPool,
    execution_id: &'a str,
    present: bool,
}

impl<'a> LiveEntry<'a> {
    pub(super) fn insert(pool: &'a WorkerPool, execution_id: &'a str, entry: Entry) -> Self {
        pool.live.insert(execution_id, entry);
        pool.metrics.live_workers.inc();
        Self {
            pool,
            execution_id,
            present: true,
        }
    }

    /// Remove the row; returns the signal an operator sent the worker, if any.
    pub(super) fn remove(mut self) -> Option<i32> {
        self.present = false;
        self.pool.metrics.live_workers.dec();
        self.pool.live.remove(self.execution_id)
    }
}

impl Drop for LiveEntry<'_> {
    fn drop(&mut self) {
        if self.present {
            self.pool.metrics.live_workers.dec();
            self.pool.live.remove(self.execution_id);
        }
    }
}
