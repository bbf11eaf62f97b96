//! The spawner thread. The kernel delivers a child's parent-death signal when the *thread* that
//! created it exits, and tokio retires idle blocking-pool threads; so every worker is created by
//! this one thread, which lives as long as the pool and does nothing else.

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::cgroup::{Cgroups, Detected, WorkerCgroup};
use super::os;
use crate::config::WorkerLimits;

/// A worker that has been started, with its pidfd and limits in force.
pub struct Spawned {
    /// The child, not yet reaped.
    pub child: Child,
    /// Refers to exactly this process even after its PID is recycled.
    pub pidfd: OwnedFd,
    /// How long spawn + pidfd + prlimit took.
    pub spawn_time: Duration,
}

enum Order {
    Spawn {
        /// Boxed: a `Command` is most of the order's size, which every other variant would carry.
        command: Box<Command>,
        limits: WorkerLimits,
        address_space: u64,
        reply: oneshot::Sender<io::Result<Spawned>>,
    },
    /// A worker has been reaped: forget its PID, end what it left behind, remove its cgroup.
    Retire {
        pid: u32,
        /// Whether it had a cgroup (whose members were killed at its end).
        contained: bool,
        /// That cgroup, when it could not be removed yet.
        leftover: Option<WorkerCgroup>,
    },
}

/// How often orphans are looked for when no worker ends: one that detaches after its worker's
/// last sweep is found within this time.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Handle to the spawner thread.
#[derive(Clone)]
pub struct Spawner {
    orders: mpsc::Sender<Order>,
    adopting: Arc<AtomicBool>,
    cgroups: Option<Arc<Cgroups>>,
    /// Which cgroups workers get, for `caxton status`.
    cgroup_summary: Arc<str>,
}

impl Spawner {
    /// Start the thread, with workers' cgroups where the host offers them.
    pub fn start() -> io::Result<Self> {
        Self::start_with(Cgroups::detect())
    }

    /// Start the thread, with workers' cgroups as `detected`.
    fn start_with(detected: Detected) -> io::Result<Self> {
        let (orders, rx) = mpsc::channel::<Order>();
        let adopting = Arc::new(AtomicBool::new(false));
        let adopt = adopting.clone();
        std::thread::Builder::new()
            .name("caxton-spawner".into())
            .spawn(move || run(&rx, &adopt))?;
        Ok(Self {
            orders,
            adopting,
            cgroups: detected.cgroups.map(Arc::new),
            cgroup_summary: detected.summary.into(),
        })
    }

    /// Where workers' cgroups are made, if they can be.
    pub fn cgroups(&self) -> Option<Arc<Cgroups>> {
        self.cgroups.clone()
    }

    /// Which cgroups workers get, and why no better kind: one line for `caxton status`.
    pub fn cgroup_summary(&self) -> &str {
        &self.cgroup_summary
    }

    /// Spawn `command` on the spawner thread and apply the limits.
    pub async fn spawn(
        &self,
        command: Command,
        limits: WorkerLimits,
        address_space: u64,
    ) -> io::Result<Spawned> {
        let (reply, answer) = oneshot::channel();
        self.orders
            .send(Order::Spawn {
                command: Box::new(command),
                limits,
                address_space,
                reply,
            })
            .map_err(|_| io::Error::other("the spawner thread has stopped"))?;
        answer
            .await
            .map_err(|_| io::Error::other("the spawner thread has stopped"))?
    }

    /// A worker has been reaped; what it left behind is ended on the spawner thread.
    pub fn retire(&self, pid: u32, cgroup: Option<WorkerCgroup>) {
        // Removed here, off the thread every spawn waits for; only a cgroup whose last member
        // is still exiting goes there to be retried.
        let contained = cgroup.is_some();
        let leftover = cgroup.filter(|c| c.remove().is_err());
        let _ = self.orders.send(Order::Retire {
            pid,
            contained,
            leftover,
        });
    }

    /// Become the reaper of orphaned worker descendants and end them as they appear.
    pub fn adopt_orphans(&self) -> io::Result<()> {
        os::become_child_subreaper()?;
        self.adopting.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn run(rx: &mpsc::Receiver<Order>, adopting: &AtomicBool) {
    // Workers spawned and not yet reaped: every other child of this process is an orphan.
    let mut workers: HashSet<u32> = HashSet::new();
    // Cgroups whose last member had not finished exiting when they were retired.
    let mut leftovers: Vec<WorkerCgroup> = Vec::new();
    let mut last_sweep = Instant::now();
    loop {
        // Orphans are looked for once a second, and at once when a worker without a cgroup
        // ends; one with a cgroup had every descendant killed already, and the next tick reaps
        // them (reading every thread's children on each of hundreds of ends a second would
        // cost the spawner thread more than the spawns).
        let mut sweep = false;
        let next_sweep = last_sweep + SWEEP_INTERVAL;
        match rx.recv_timeout(next_sweep.saturating_duration_since(Instant::now())) {
            Ok(Order::Spawn {
                command,
                limits,
                address_space,
                reply,
            }) => {
                let result = spawn(*command, &limits, address_space);
                if let Ok(s) = &result {
                    workers.insert(s.child.id());
                }
                if let Err(Ok(s)) = reply.send(result) {
                    // Its request is gone already: the worker must not outlive it.
                    let mut child = s.child;
                    let _ = os::signal_group(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                    workers.remove(&child.id());
                }
            }
            Ok(Order::Retire {
                pid,
                contained,
                leftover,
            }) => {
                workers.remove(&pid);
                leftovers.extend(leftover);
                sweep = !contained;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => sweep = true,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // A steady stream of orders never lets the wait time out, so the tick is kept by time.
        if sweep || Instant::now() >= next_sweep {
            last_sweep = Instant::now();
            if adopting.load(Ordering::SeqCst) {
                end_orphans(&workers);
            }
        }
        leftovers.retain(|c| c.remove().is_err());
    }
}

/// Kill and reap every child that is not a live worker. Killing one re-parents its own
/// children here, so this repeats until a round finds none (bounded, in case of a fork bomb
/// without a pids cgroup: the next sweep goes on).
fn end_orphans(workers: &HashSet<u32>) {
    for _ in 0..16 {
        let orphans = os::adopted_children(|pid| workers.contains(&pid));
        if orphans.is_empty() {
            return;
        }
        tracing::warn!(
            count = orphans.len(),
            ?orphans,
            "ending processes a worker left behind"
        );
        for &pid in &orphans {
            os::kill_child(pid);
        }
        let limit = Instant::now() + Duration::from_millis(200);
        let mut unreaped = orphans;
        while !unreaped.is_empty() && Instant::now() < limit {
            unreaped.retain(|&pid| !os::try_reap(pid));
            if !unreaped.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn spawn(mut command: Command, limits: &WorkerLimits, address_space: u64) -> io::Result<Spawned> {
    let started = Instant::now();
    let mut child = command.spawn()?;
    let setup = os::pidfd_open(child.id()).and_then(|pidfd| {
        os::apply_limits(child.id(), limits, address_space)?;
        Ok(pidfd)
    });
    match setup {
        Ok(pidfd) => Ok(Spawned {
            child,
            pidfd,
            spawn_time: started.elapsed(),
        }),
        Err(e) => {
            // A worker without its limits must not run; it is still ours, so kill and reap it.
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    /// `sleep 30` with its parent-death signal armed, as the worker arms its own.
    fn armed_sleep() -> Command {
        let mut command = Command::new("/usr/bin/setpriv");
        command.args(["--pdeathsig", "KILL", "--", "sleep", "30"]);
        command
    }

    /// Whether `child` is still running after `wait`.
    fn alive_after(child: &mut Child, wait: Duration) -> bool {
        let give_up = Instant::now() + wait;
        while Instant::now() < give_up {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The kernel sends the parent-death signal when the *thread* that forked a child exits,
    /// and tokio retires idle blocking threads: a worker spawned from such a thread would die
    /// with it. Every worker comes from the spawner's own thread instead.
    #[test]
    fn a_worker_outlives_the_thread_that_asked_for_it() {
        if !std::path::Path::new("/usr/bin/setpriv").exists() {
            eprintln!("SKIPPED: no /usr/bin/setpriv to arm a parent-death signal with");
            return;
        }
        // The hazard is real: spawned by a thread that then exits, the child dies with it.
        let mut direct = std::thread::spawn(|| {
            let child = armed_sleep().spawn().unwrap();
            // Long enough for setpriv to arm the signal before this thread exits.
            std::thread::sleep(Duration::from_millis(300));
            child
        })
        .join()
        .unwrap();
        assert!(
            !alive_after(&mut direct, Duration::from_secs(5)),
            "the parent-death signal did not fire"
        );

        let spawner = Spawner::start_with(Detected {
            cgroups: None,
            summary: String::new(),
        })
        .unwrap();
        let limits = WorkerLimits {
            address_space: 1 << 30,
            cpu_seconds: 60,
            open_files: 64,
            processes: 32,
            cpu_quota_micros: 100_000,
        };
        // The pool holds its spawner for as long as the daemon runs.
        let pool = spawner.clone();
        let asking = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let spawned = runtime
                .block_on(spawner.spawn(armed_sleep(), limits, limits.address_space))
                .unwrap();
            // As above: had this thread forked it, the signal would be armed before it exits.
            std::thread::sleep(Duration::from_millis(300));
            spawned
        });
        let mut spawned = asking.join().unwrap();
        // The asking thread is gone; the worker is not.
        assert!(alive_after(&mut spawned.child, Duration::from_secs(1)));
        spawned.child.kill().unwrap();
        spawned.child.wait().unwrap();
        drop(pool);
    }
}
