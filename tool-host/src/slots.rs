//! Call slots: how many calls run at once, and how much of that one tool server or one caller
//! may hold, so slow calls of one agent or one tool cannot keep every other call waiting.
//!
//! A call takes a permit from its caller's share, then from its server's share, then from the
//! pool, always in that order (so waiting can never form a cycle); each share is a fair (FIFO)
//! semaphore, and a share nobody holds or waits for is forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many calls may run at once, in all and per tool server or caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Calls running at once (at most the instance pool's size).
    pub total: usize,
    /// Calls of one tool server running at once.
    pub per_server: usize,
    /// Calls of one caller (agent, or the MCP endpoint) running at once.
    pub per_caller: usize,
}

impl SlotLimits {
    /// The shares used for a pool of `total` slots: half of it for one tool server, a quarter
    /// for one caller, so that neither one busy tool nor one busy agent can take it all.
    pub fn for_pool(total: usize) -> Self {
        let total = total.max(1);
        Self {
            total,
            per_server: (total / 2).max(1),
            per_caller: (total / 4).max(1),
        }
    }
}

/// The slots were closed: the host is shutting down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the tool host is shutting down")]
pub struct SlotsClosed;

/// Keyed shares of one size.
struct Shares {
    size: usize,
    by_key: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Shares {
    fn new(size: usize) -> Self {
        Self {
            size: size.max(1),
            by_key: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, key: &str) -> Arc<Semaphore> {
        let mut map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.size)))
            .clone()
    }

    /// Forget `key`'s share when only the map still refers to it: no permit is out and nobody
    /// waits (both hold a reference, taken under this same lock).
    fn prune(&self, key: &str) {
        let mut map = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|s| Arc::strong_count(s) == 1) {
            map.remove(key);
        }
    }

    fn len(&self) -> usize {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The slots of one tool host.
pub struct CallSlots {
    limits: SlotLimits,
    pool: Arc<Semaphore>,
    servers: Arc<Shares>,
    callers: Arc<Shares>,
}

impl CallSlots {
    /// Slots with these limits.
    pub fn new(limits: SlotLimits) -> Self {
        Self {
            limits,
            pool: Arc::new(Semaphore::new(limits.total.max(1))),
            servers: Arc::new(Shares::new(limits.per_server)),
            callers: Arc::new(Shares::new(limits.per_caller)),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> SlotLimits {
        self.limits
    }

    /// Wait for a slot for a call of `server` made by `caller`; the call holds it until the
    /// returned guard is dropped.
    pub async fn acquire(&self, server: &str, caller: &str) -> Result<CallSlot, SlotsClosed> {
        let mut slot = CallSlot {
            permits: Vec::with_capacity(3),
            shares: vec![
                (self.callers.clone(), caller.to_owned()),
                (self.servers.clone(), server.to_owned()),
            ],
        };
        for semaphore in [
            self.callers.semaphore(caller),
            self.servers.semaphore(server),
        ] {
            // Dropping `slot` on an error gives back what was taken and prunes the shares.
            let permit = semaphore.acquire_owned().await.map_err(|_| SlotsClosed)?;
            slot.permits.push(permit);
        }
        let permit = self
            .pool
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SlotsClosed)?;
        slot.permits.push(permit);
        Ok(slot)
    }

    /// Calls running now.
    pub fn running(&self) -> usize {
        self.limits.total.max(1) - self.pool.available_permits()
    }

    /// Shares currently remembered (callers and servers with a call running or waiting).
    pub fn tracked_shares(&self) -> usize {
        self.servers.len() + self.callers.len()
    }

    /// Refuse every call from now on; waiting calls get [`SlotsClosed`].
    pub fn close(&self) {
        self.pool.close();
    }
}

/// A running call's slot; dropping it lets the next call in.
pub struct CallSlot {
    permits: Vec<OwnedSemaphorePermit>,
    shares: Vec<(Arc<Shares>, String)>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.permits.clear();
        for (shares, key) in &self.shares {
            shares.prune(key);
        }
    }
}
