//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the executions counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutionLabels {
    /// Agent name.
    pub agent: String,
    /// Outcome label, e.g. `succeeded`, `killed`.
    pub outcome: String,
}

/// Labels of the execution-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    /// Agent name.
    pub agent: String,
}

/// Labels of the memory-operations counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    /// What was done: an API operation (`search`, `upsert`, ...), `prompt_search`,
    /// `auto_store` or a memory tool's name.
    pub op: String,
    /// `ok`, `refused` (the caller's input) or `failed`.
    pub outcome: String,
}

/// Labels of the memory-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryOpLabels {
    /// As in [`MemoryLabels`].
    pub op: String,
}

/// Every metric the supervisor exports.
pub struct Metrics {
    registry: Registry,
    /// Executions by agent and outcome.
    pub executions: Family<ExecutionLabels, Counter>,
    /// Execution duration by agent.
    pub execution_duration: Family<AgentLabels, Histogram>,
    /// Time to spawn a worker (fork/exec, pidfd, limits).
    pub worker_spawn_duration: Histogram,
    /// Time from spawn to completed handshake.
    pub worker_startup_duration: Histogram,
    /// Workers alive now.
    pub live_workers: Gauge,
    /// Agents deployed now.
    pub agents_deployed: Gauge,
    /// Memory operations by operation and outcome.
    pub memory_operations: Family<MemoryLabels, Counter>,
    /// Memory operation duration by operation.
    pub memory_duration: Family<MemoryOpLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("caxton");
        let executions = Family::<ExecutionLabels, Counter>::default();
        let execution_duration = Family::<AgentLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 18))
        });
        let worker_spawn_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 14));
        let worker_startup_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 14));
        let live_workers = Gauge::default();
        let agents_deployed = Gauge::default();
        let memory_operations = Family::<MemoryLabels, Counter>::default();
        // 0.1 ms (a cached read) to about 13 s (a large import).
        let memory_duration = Family::<MemoryOpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "memory_operations",
            "Memory operations by operation and outcome",
            memory_operations.clone(),
        );
        registry.register(
            "memory_operation_duration_seconds",
            "Memory operation duration, embedding included",
            memory_duration.clone(),
        );
        registry.register(
            "executions",
            "Agent executions by agent and outcome",
            executions.clone(),
        );
        registry.register(
            "execution_duration_seconds",
            "Agent execution duration",
            execution_duration.clone(),
        );
        registry.register(
            "worker_spawn_duration_seconds",
            "Time to spawn a worker process",
            worker_spawn_duration.clone(),
        );
        registry.register(
            "worker_startup_duration_seconds",
            "Time from spawning a worker to its completed handshake",
            worker_startup_duration.clone(),
        );
        registry.register(
            "live_workers",
            "Worker processes alive now",
            live_workers.clone(),
        );
        registry.register(
            "agents_deployed",
            "Agents deployed now",
            agents_deployed.clone(),
        );
        Self {
            registry,
            executions,
            execution_duration,
            worker_spawn_duration,
            worker_startup_duration,
            live_workers,
            agents_deployed,
            memory_operations,
            memory_duration,
        }
    }

    /// Count one memory operation.
    pub fn record_memory(&self, op: &str, outcome: &str, seconds: f64) {
        self.memory_operations
            .get_or_create(&MemoryLabels {
                op: op.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.memory_duration
            .get_or_create(&MemoryOpLabels { op: op.to_owned() })
            .observe(seconds);
    }

    /// Count one finished execution.
    pub fn record_execution(&self, agent: &str, outcome: &str, seconds: f64) {
        self.executions
            .get_or_create(&ExecutionLabels {
                agent: agent.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.execution_duration
            .get_or_create(&AgentLabels {
                agent: agent.to_owned(),
            })
            .observe(seconds);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
