//! The spawner thread. The kernel delivers a child's parent-death signal when the *thread* that
//! created it exits, and tokio retires idle blocking-pool threads; so every worker is created by
//! this one thread, which lives as long as the pool and does nothing else.

use std::io;
use std::os::fd::OwnedFd;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

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

struct Order {
    command: Command,
    limits: WorkerLimits,
    address_space: u64,
    reply: oneshot::Sender<io::Result<Spawned>>,
}

/// Handle to the spawner thread.
pub struct Spawner {
    orders: mpsc::Sender<Order>,
}

impl Spawner {
    /// Start the thread.
    pub fn start() -> io::Result<Self> {
        let (orders, rx) = mpsc::channel::<Order>();
        std::thread::Builder::new()
            .name("caxton-spawner".into())
            .spawn(move || {
                for order in rx {
                    let result = spawn(order.command, &order.limits, order.address_space);
                    let _ = order.reply.send(result);
                }
            })?;
        Ok(Self { orders })
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
            .send(Order {
                command,
                limits,
                address_space,
                reply,
            })
            .map_err(|_| io::Error::other("the spawner thread has stopped"))?;
        answer
            .await
            .map_err(|_| io::Error::other("the spawner thread has stopped"))?
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
