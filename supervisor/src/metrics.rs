//! Prometheus metrics at `/metrics`, in the format the scraper asks for: OpenMetrics 1.0.0
//! (what `prometheus-client` encodes) when its `Accept` header offers it, else the Prometheus
//! text format 0.0.4 (what `promtool check metrics` and plain `curl` readers expect).

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

/// Labels of the messages counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// `request` or `notification`.
    pub message_type: String,
    /// `ok` (answered) or `error`.
    pub status: String,
}

/// Labels of the message-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageTypeLabels {
    /// `request` or `notification`.
    pub message_type: String,
}

/// Labels of the model-call duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The configured provider's name.
    pub provider: String,
    /// The model as configured (the agent's, else the provider's default), not as the server
    /// names it: the label set stays as small as the configuration.
    pub model: String,
}

/// Labels of the model-calls counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelCallLabels {
    /// The configured provider's name.
    pub provider: String,
    /// The model as configured.
    pub model: String,
    /// `ok` or `error`.
    pub outcome: String,
}

/// Labels of the token counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// The configured provider's name.
    pub provider: String,
    /// The model as configured.
    pub model: String,
    /// `input` (prompt) or `output` (completion).
    pub direction: String,
}

/// Labels of the tool-calls counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolCallLabels {
    /// A granted tool's name, or `(not granted)` for a name the model made up.
    pub tool: String,
    /// `ok`, `tool_error`, `refused`, `invalid` or `failed`.
    pub outcome: String,
}

/// Labels of the tool-call duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// As in [`ToolCallLabels`].
    pub tool: String,
}

/// Labels of the refused-delegations counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `cycle`, `depth`, `not_allowed`, `unknown_target`, `budget`, `deadline` or
    /// `unavailable`.
    pub reason: String,
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
    /// Messages (a caller's or an agent's request, a notification) processed, by type and how
    /// they ended.
    pub messages_processed: Family<MessageLabels, Counter>,
    /// From a message's arrival to its answer, by type.
    pub message_duration: Family<MessageTypeLabels, Histogram>,
    /// Delegations the supervisor refused, by reason.
    pub delegations_refused: Family<RefusalLabels, Counter>,
    /// Model calls by provider, model and outcome.
    pub model_calls: Family<ModelCallLabels, Counter>,
    /// Model call duration by provider and model.
    pub model_call_duration: Family<ModelLabels, Histogram>,
    /// Tokens in and out, as providers report them, by provider and model.
    pub model_tokens: Family<TokenLabels, Counter>,
    /// Tool calls by tool and outcome.
    pub tool_calls: Family<ToolCallLabels, Counter>,
    /// Tool call duration by tool.
    pub tool_call_duration: Family<ToolLabels, Histogram>,
    /// Time a request waited for a worker slot (`[worker] max_concurrent`).
    pub worker_slot_wait: Histogram,
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
        let messages_processed = Family::<MessageLabels, Counter>::default();
        let message_duration = Family::<MessageTypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 18))
        });
        let delegations_refused = Family::<RefusalLabels, Counter>::default();
        let model_calls = Family::<ModelCallLabels, Counter>::default();
        // 1 ms (a loopback server) to about 4 minutes (a long local generation).
        let model_call_duration = Family::<ModelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 18))
        });
        let model_tokens = Family::<TokenLabels, Counter>::default();
        let tool_calls = Family::<ToolCallLabels, Counter>::default();
        // 0.1 ms (a refusal) to about 26 s (a tool at its time limit).
        let tool_call_duration = Family::<ToolLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let worker_slot_wait = Histogram::new(exponential_buckets(0.0001, 2.0, 20));
        registry.register(
            "trace_spans_not_exported",
            "Spans that never reached the OpenTelemetry collector, by reason (queue_full, export_failed)",
            crate::telemetry::SPANS_NOT_EXPORTED.clone(),
        );
        registry.register(
            "model_calls",
            "Model calls by provider, configured model and outcome",
            model_calls.clone(),
        );
        registry.register(
            "model_call_duration_seconds",
            "Model call duration by provider and configured model",
            model_call_duration.clone(),
        );
        registry.register(
            "model_tokens",
            "Tokens providers reported, by provider, configured model and direction",
            model_tokens.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls agents made, by tool and outcome",
            tool_calls.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "Tool call duration by tool",
            tool_call_duration.clone(),
        );
        registry.register(
            "worker_slot_wait_seconds",
            "Time a request waited for a worker slot ([worker] max_concurrent)",
            worker_slot_wait.clone(),
        );
        registry.register(
            "messages_processed",
            "Messages processed (requests and notifications to agents), by type and status",
            messages_processed.clone(),
        );
        registry.register(
            "message_processing_duration_seconds",
            "Time from a message's arrival to its answer, by type",
            message_duration.clone(),
        );
        registry.register(
            "delegations_refused",
            "Delegations refused before any worker started, by reason",
            delegations_refused.clone(),
        );
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
            messages_processed,
            message_duration,
            delegations_refused,
            model_calls,
            model_call_duration,
            model_tokens,
            tool_calls,
            tool_call_duration,
            worker_slot_wait,
        }
    }

    /// Count one model call: its outcome, duration and the tokens the provider reported.
    pub fn record_model_call(
        &self,
        provider: &str,
        model: &str,
        ok: bool,
        seconds: f64,
        tokens: (Option<u32>, Option<u32>),
    ) {
        let labels = ModelLabels {
            provider: provider.to_owned(),
            model: model.to_owned(),
        };
        self.model_calls
            .get_or_create(&ModelCallLabels {
                provider: labels.provider.clone(),
                model: labels.model.clone(),
                outcome: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        self.model_call_duration
            .get_or_create(&labels)
            .observe(seconds);
        for (direction, count) in [("input", tokens.0), ("output", tokens.1)] {
            if let Some(n) = count {
                self.model_tokens
                    .get_or_create(&TokenLabels {
                        provider: labels.provider.clone(),
                        model: labels.model.clone(),
                        direction: direction.to_owned(),
                    })
                    .inc_by(u64::from(n));
            }
        }
    }

    /// Count one tool call.
    pub fn record_tool_call(&self, tool: &str, outcome: &str, seconds: f64) {
        self.tool_calls
            .get_or_create(&ToolCallLabels {
                tool: tool.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.tool_call_duration
            .get_or_create(&ToolLabels {
                tool: tool.to_owned(),
            })
            .observe(seconds);
    }

    /// Count one processed message.
    pub fn record_message(&self, message_type: &str, ok: bool, seconds: f64) {
        self.messages_processed
            .get_or_create(&MessageLabels {
                message_type: message_type.to_owned(),
                status: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        self.message_duration
            .get_or_create(&MessageTypeLabels {
                message_type: message_type.to_owned(),
            })
            .observe(seconds);
    }

    /// Count one refused delegation.
    pub fn record_refused_delegation(&self, reason: &str) {
        self.delegations_refused
            .get_or_create(&RefusalLabels {
                reason: reason.to_owned(),
            })
            .inc();
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

    /// The OpenMetrics 1.0.0 exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the format `accept` (an HTTP `Accept` header) prefers, and its content
    /// type.
    pub fn render_for(&self, accept: Option<&str>) -> (&'static str, String) {
        let openmetrics = self.render();
        if accept.is_some_and(prefers_openmetrics) {
            (OPENMETRICS_CONTENT_TYPE, openmetrics)
        } else {
            (TEXT_CONTENT_TYPE, openmetrics_to_text(&openmetrics))
        }
    }
}

/// The content type of [`Metrics::render`]'s body.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header ranks OpenMetrics at least as high as the plain text format, as
/// Prometheus's own scrapers send it (`application/openmetrics-text;version=1.0.0,...,
/// text/plain;version=0.0.4;q=0.5,*/*;q=0.1`).
fn prefers_openmetrics(accept: &str) -> bool {
    let mut openmetrics = 0.0f32;
    let mut text = 0.0f32;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// The same exposition in the Prometheus text format 0.0.4. The formats differ where this
/// supervisor's metrics reach: a counter family is named without `_total` in OpenMetrics and
/// with it in 0.0.4 (its samples carry `_total` in both), `unknown` is `untyped`, and `# UNIT`
/// and `# EOF` do not exist. Samples, labels and escaping are the same in both.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            // A counter's creation time is a sample of its own in OpenMetrics only.
            None if counters.iter().any(|c| {
                line.strip_prefix(c)
                    .is_some_and(|r| r.starts_with("_created"))
            }) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metrics {
        let m = Metrics::new();
        m.record_execution("echo", "succeeded", 0.2);
        m.record_memory("search", "ok", 0.01);
        m.live_workers.set(1);
        m
    }

    #[test]
    fn prometheus_scrapers_get_openmetrics_and_everyone_else_the_text_format() {
        let m = sample();
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (ct, body) = m.render_for(Some(prometheus));
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(body.ends_with("# EOF\n"), "{body}");
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4, application/openmetrics-text;q=0.5"),
        ] {
            let (ct, body) = m.render_for(accept);
            assert_eq!(ct, TEXT_CONTENT_TYPE, "{accept:?}");
            assert!(!body.contains("# EOF"), "{body}");
        }
    }

    #[test]
    fn the_text_format_names_counter_families_with_total() {
        let text = openmetrics_to_text(&sample().render());
        assert!(
            text.contains("# TYPE caxton_executions_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP caxton_executions_total Agent executions"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE caxton_memory_operations_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE caxton_live_workers gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("caxton_executions_total{agent=\"echo\",outcome=\"succeeded\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE caxton_execution_duration_seconds histogram\n"));
    }
}
