//! OpenTelemetry traces: the daemon's `tracing` spans exported over OTLP (HTTP/protobuf) when
//! an endpoint is configured, as OpenTelemetry SDKs do: `[telemetry] endpoint` in the config
//! file, or the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_TRACES_EXPORTER=otlp`; `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its argument, `OTEL_BSP_*`, read by the
//! SDK). Off by default, and `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
//!
//! Spans are named and attributed by the OpenTelemetry GenAI semantic conventions, v1.37 (see
//! `docs/decisions.md`): `invoke_agent {agent}` for each execution, `chat {model}` for each model
//! call, `execute_tool {tool}` for each tool call; a delegated execution is a child of the tool
//! call that asked for it, so a request's tree is one trace.
//!
//! Invariant: a collector that is down or slow never blocks a request. Spans go to the SDK's
//! bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048) and are exported by its own thread;
//! when the queue is full they are dropped. Every span that never reached the collector is
//! counted in `caxton_trace_spans_not_exported_total{reason}`: `queue_full` or `export_failed`.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanProcessor,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Why a span was not exported, the label of `caxton_trace_spans_not_exported_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct NotExportedLabels {
    /// `queue_full` (dropped before the queue, the collector being too slow) or `export_failed`
    /// (the collector refused the batch, was down, or timed out).
    pub reason: &'static str,
}

/// Spans that never reached the collector, by reason; `crate::metrics::Metrics` registers it.
pub static SPANS_NOT_EXPORTED: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        NotExportedLabels,
        prometheus_client::metrics::counter::Counter,
    >,
> = std::sync::LazyLock::new(Default::default);

fn not_exported(reason: &'static str, spans: u64) {
    SPANS_NOT_EXPORTED
        .get_or_create(&NotExportedLabels { reason })
        .inc_by(spans);
}

/// The OTLP exporter, counting what it could not deliver and handing back the queue places of
/// the spans it was given.
#[derive(Debug)]
struct Counting<E> {
    exporter: E,
    queued: Arc<AtomicUsize>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counting<E>
{
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let spans = batch.len();
        // The batch has left the processor's queue: its places are free from now on.
        self.queued.fetch_sub(spans, Ordering::AcqRel);
        let export = self.exporter.export(batch);
        async move {
            let result = export.await;
            if result.is_err() {
                not_exported("export_failed", spans as u64);
            }
            result
        }
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

/// The SDK's batch processor behind a gate that knows how full its queue is: a span that would
/// not fit is counted and dropped here, because the SDK drops it without telling anyone.
/// `queued` counts the spans handed on and not yet taken by an export, so it never exceeds
/// `capacity`, the queue's size, and the SDK's own queue never overflows.
#[derive(Debug)]
struct Gated {
    batch: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl SpanProcessor for Gated {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.batch.on_start(span, cx);
    }

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        let taken = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        if taken.is_ok() {
            self.batch.on_end(span);
        } else {
            not_exported("queue_full", 1);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.batch.force_flush()
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.batch.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.batch.set_resource(resource);
    }
}

/// The export queue's size: `OTEL_BSP_MAX_QUEUE_SIZE` as the SDK reads it, default 2048.
fn queue_capacity() -> usize {
    env("OTEL_BSP_MAX_QUEUE_SIZE")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2048)
}

/// Changes what the daemon logs while it runs; given by whoever built the log subscriber (the
/// `caxton` binary) and used by `PUT /api/v1/log-filter`.
pub trait LogControl: Send + Sync {
    /// The filter in force.
    fn current(&self) -> String;
    /// Put `filter` in force; the error says why it is not a valid filter.
    fn set(&self, filter: &str) -> Result<(), String>;
}

/// The GenAI semantic conventions release the span names and attributes follow.
pub const GENAI_SEMCONV_VERSION: &str = "1.37.0";

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The environment asks for an OTLP transport other than HTTP/protobuf.
    #[error(
        "{variable} = {value:?}: only \"http/protobuf\" is supported (send to the collector's HTTP port, 4318)"
    )]
    Protocol {
        /// The variable that asked.
        variable: &'static str,
        /// What it asked for.
        value: String,
    },
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("OpenTelemetry export to {endpoint}: {detail}")]
    Exporter {
        /// Where it was to send.
        endpoint: String,
        /// What failed.
        detail: String,
    },
}

/// `[telemetry]` as resolved from the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP endpoint (`http://host:4318`); the standard variables override it.
    pub endpoint: Option<String>,
    /// `service.name` unless `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) says.
    pub service_name: Option<String>,
}

/// A running exporter; spans reach it through [`Tracing::layer`].
pub struct Tracing {
    provider: SdkTracerProvider,
    endpoint: String,
}

/// What the environment says about export.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Tracing {
    /// Start exporting if the config or the environment asks for it; `None` when tracing is off.
    pub fn start(config: &TelemetryConfig) -> Result<Option<Self>, TelemetryError> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let exporter_choice = env("OTEL_TRACES_EXPORTER");
        if exporter_choice
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let env_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let asked = exporter_choice
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("otlp"));
        if env_endpoint.is_none() && config.endpoint.is_none() && !asked {
            return Ok(None);
        }
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(value) = env(variable).filter(|v| v != "http/protobuf") {
                return Err(TelemetryError::Protocol { variable, value });
            }
        }
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        // The variables win over the file, as for every OpenTelemetry SDK; the exporter reads
        // them itself when no endpoint is given here.
        let endpoint = match (&env_endpoint, &config.endpoint) {
            (Some(from_env), _) => from_env.clone(),
            (None, Some(from_file)) => {
                let traces = format!("{}/v1/traces", from_file.trim_end_matches('/'));
                builder = builder.with_endpoint(traces.clone());
                traces
            }
            (None, None) => "http://localhost:4318/v1/traces".to_owned(),
        };
        let exporter = builder.build().map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            detail: e.to_string(),
        })?;
        let mut resource = Resource::builder();
        let named_by_env = env("OTEL_SERVICE_NAME").is_some()
            || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
        if !named_by_env {
            resource = resource.with_service_name(
                config
                    .service_name
                    .clone()
                    .unwrap_or_else(|| "caxton".into()),
            );
        }
        // The same size for the gate and the queue behind it (the builder reads the other
        // OTEL_BSP_* variables itself).
        let capacity = queue_capacity();
        let queued = Arc::new(AtomicUsize::new(0));
        let batch = BatchSpanProcessor::builder(Counting {
            exporter,
            queued: queued.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(capacity)
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Gated {
                batch,
                queued,
                capacity,
            })
            .with_resource(
                resource
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        Ok(Some(Self { provider, endpoint }))
    }

    /// Where spans go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans for this exporter.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("caxton"))
    }

    /// Export what is queued and stop; called once when the daemon exits.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "spans not exported at shutdown");
        }
    }
}

/// Reads W3C trace context from HTTP headers.
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Make a caller's W3C `traceparent` (and `tracestate`) header the parent of `span`, so the
/// request joins the caller's trace. A missing or malformed header changes nothing, and so does
/// tracing being off.
pub fn adopt_caller_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if headers.contains_key("traceparent") {
        adopt(span, &HeaderExtractor(headers));
    }
}

/// As [`adopt_caller_trace`], for a context carried in a message rather than in headers (MCP's
/// `params._meta.traceparent` and `tracestate`).
pub fn adopt_trace_context(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    let mut fields = std::collections::HashMap::new();
    fields.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        fields.insert("tracestate".to_owned(), state.to_owned());
    }
    adopt(span, &fields);
}

fn adopt(span: &tracing::Span, carrier: &dyn opentelemetry::propagation::Extractor) {
    use opentelemetry::propagation::TextMapPropagator;
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The W3C `traceparent` (and `tracestate`) headers of the current span, for an outgoing HTTP
/// call; none when it is not traced.
pub fn trace_headers() -> Vec<(String, String)> {
    use opentelemetry::propagation::TextMapPropagator;
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut headers = std::collections::HashMap::new();
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .inject_context(&context, &mut headers);
    headers.into_iter().collect()
}

/// The trace id of the current span, when it is being traced (lowercase hex, as W3C
/// `traceparent` writes it).
pub fn current_trace_id() -> Option<String> {
    trace_id_of(&tracing::Span::current())
}

/// The trace id of `span`, when it is being traced.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    ids.is_valid().then(|| ids.trace_id().to_string())
}

/// Record `span`'s trace and span ids in its `trace_id` and `span_id` fields, so every log line
/// inside it names them (JSON logs list the fields of the spans a line is in).
pub fn label_with_trace(span: &tracing::Span) {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", ids.trace_id().to_string().as_str());
        span.record("span_id", ids.span_id().to_string().as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_span_being_traced_there_is_no_trace_id() {
        assert_eq!(current_trace_id(), None);
    }
}
