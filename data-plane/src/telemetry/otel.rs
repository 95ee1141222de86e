//! OpenTelemetry tracing, shared by both planes: OTLP export (gRPC or HTTP/protobuf)
//! configured by the standard
//! `OTEL_*` environment variables (off when no endpoint is set), W3C `traceparent`
//! extraction from callers and injection into provider requests, and the GenAI
//! semantic-convention attributes of a generation.
//!
//! Spans come from `tracing`: the OTel layer turns the spans of Switchyard's own crates into
//! OTel spans, so the same `request` / `gen_ai` spans show in logs and traces. Export runs on
//! the SDK's batch processor thread and never blocks a request; a dead collector costs
//! dropped spans, never latency.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use switchyard_proto::pb;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Why tracing could not be set up from the environment.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("building the OTLP exporter: {0}")]
    Exporter(String),
}

/// Tracing settings, from the standard OpenTelemetry environment variables.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    pub protocol: OtlpProtocol,
    /// Where spans are sent: the collector itself for gRPC (`http://otel-collector:4317`),
    /// the full traces URL for HTTP (`http://otel-collector:4318/v1/traces`).
    pub endpoint: String,
    pub service_name: String,
    pub sampler: SamplerChoice,
    /// How long the batch processor waits before exporting (`OTEL_BSP_SCHEDULE_DELAY`, ms).
    pub schedule_delay: Duration,
    /// Bound on one export call (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` / `_TIMEOUT`, ms).
    pub export_timeout: Duration,
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `grpc`, the default here (the spec's default is `http/protobuf`, but gRPC is what
    /// Switchyard shipped with, and changing it would silently break deployments).
    Grpc,
    /// `http/protobuf`.
    HttpProtobuf,
}

/// `OTEL_TRACES_SAMPLER` (+ `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerChoice {
    fn sampler(self) -> Sampler {
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerChoice::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerChoice::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerChoice::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

impl OtelConfig {
    /// From the process environment; `Ok(None)` when tracing is not configured.
    pub fn from_env(default_service: &str) -> Result<Option<Self>, OtelError> {
        Self::from_lookup(default_service, |name| std::env::var(name).ok())
    }

    /// From any variable lookup, so tests configure tracing exactly as the environment does
    /// without mutating the (process-global) environment.
    pub fn from_lookup(
        default_service: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, OtelError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(exporter) = get("OTEL_TRACES_EXPORTER") {
            match exporter.as_str() {
                "none" => return Ok(None),
                "otlp" => {}
                other => {
                    return Err(OtelError::Invalid {
                        var: "OTEL_TRACES_EXPORTER",
                        message: format!("`{other}` is not supported; use `otlp` or `none`"),
                    });
                }
            }
        }
        let (protocol_var, protocol) = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(p) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(p)),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                get("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ),
        };
        let protocol = match protocol.as_deref() {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => {
                return Err(OtelError::Invalid {
                    var: protocol_var,
                    message: format!("`{other}` is not supported; use `grpc` or `http/protobuf`"),
                });
            }
        };
        // The signal-specific variable is used as is; the general one names the collector,
        // to which HTTP appends the signal's path (gRPC needs none).
        let endpoint = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => traces,
            (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, Some(base)) => base,
            (None, None) => return Ok(None),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(OtelError::Invalid {
                var: "OTEL_EXPORTER_OTLP_ENDPOINT",
                message: format!("`{endpoint}` must start with http:// or https://"),
            });
        }
        let ratio = |var: &'static str| -> Result<f64, OtelError> {
            match get(var) {
                None => Ok(1.0),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| OtelError::Invalid {
                        var,
                        message: format!("`{v}` is not a ratio between 0 and 1"),
                    }),
            }
        };
        let sampler = match get("OTEL_TRACES_SAMPLER").as_deref() {
            None | Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
            Some("always_on") => SamplerChoice::AlwaysOn,
            Some("always_off") => SamplerChoice::AlwaysOff,
            Some("traceidratio") => SamplerChoice::TraceIdRatio(ratio("OTEL_TRACES_SAMPLER_ARG")?),
            Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => {
                SamplerChoice::ParentBasedTraceIdRatio(ratio("OTEL_TRACES_SAMPLER_ARG")?)
            }
            Some(other) => {
                return Err(OtelError::Invalid {
                    var: "OTEL_TRACES_SAMPLER",
                    message: format!(
                        "`{other}` is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                    ),
                });
            }
        };
        let millis =
            |var: &'static str, default: u64| -> Result<Duration, OtelError> {
                match get(var) {
                    None => Ok(Duration::from_millis(default)),
                    Some(v) => v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                        OtelError::Invalid {
                            var,
                            message: format!("`{v}` is not a whole number of milliseconds"),
                        }
                    }),
                }
            };
        let export_timeout = match get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            Some(_) => millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", 10_000)?,
            None => millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        };
        Ok(Some(OtelConfig {
            protocol,
            endpoint,
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_owned()),
            sampler,
            schedule_delay: millis("OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
            export_timeout,
        }))
    }

    /// Builds the tracer provider. Must run inside a Tokio runtime: the gRPC channel's
    /// connection task, or each HTTP export, runs there.
    pub fn build_provider(&self) -> Result<SdkTracerProvider, OtelError> {
        let exporter = match self.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(self.endpoint.clone())
                .with_timeout(self.export_timeout)
                .build(),
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(
                    super::otlp_http::RuntimeReqwest::current(self.export_timeout)
                        .map_err(OtelError::Exporter)?,
                )
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(self.endpoint.clone())
                .with_timeout(self.export_timeout)
                .build(),
        }
        .map_err(|e| OtelError::Exporter(e.to_string()))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(self.schedule_delay)
                    .build(),
            )
            .build();
        Ok(SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(self.sampler.sampler())
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(self.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build())
    }
}

/// Keeps the tracer provider alive; dropping it flushes the spans still queued.
#[must_use = "dropping the guard stops trace export"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

impl OtelGuard {
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::debug!(error = %err, "trace exporter shutdown");
        }
    }
}

/// The `tracing` layer that exports Switchyard's spans, and the guard that keeps it running.
/// Only spans of Switchyard's crates are exported (library internals would drown them),
/// independently of the log filter.
pub fn layer<S>(
    config: &OtelConfig,
) -> Result<
    (
        impl tracing_subscriber::Layer<S> + Send + Sync + 'static,
        OtelGuard,
    ),
    OtelError,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use tracing_subscriber::Layer as _;
    let provider = config.build_provider()?;
    let tracer = provider.tracer("switchyard");
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("switchyard_gateway", tracing::Level::INFO)
        .with_target("switchyard_control_plane", tracing::Level::INFO)
        .with_target("switchyard", tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter);
    Ok((layer, OtelGuard { provider }))
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The caller's W3C trace context (`traceparent` / `tracestate`), if any.
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes `span` a child of the caller's trace when the request carries a valid
/// `traceparent`. Call before the span is first entered.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    if !headers.contains_key(&TRACEPARENT) {
        return;
    }
    let cx = extract(headers);
    if let Err(err) = span.set_parent(cx) {
        tracing::trace!(error = ?err, "could not adopt the caller's trace context");
    }
}

/// `traceparent` / `tracestate` for an outgoing request made within `span`; empty when
/// tracing is off or the span is not sampled-in.
pub fn inject(span: &tracing::Span) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
    headers
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::AsciiMetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Adds `span`'s W3C trace context to the metadata of a gRPC call to the control plane, whose
/// server spans adopt it, so a lease or config ack shows in the trace that caused it.
pub fn inject_grpc(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// A client span for one gRPC call from the gateway to the control plane; a child of the
/// current span (the request that needed a lease), or a root for background calls.
pub fn grpc_client_span(service: &'static str, method: &'static str) -> tracing::Span {
    tracing::info_span!(
        "grpc.client",
        otel.name = %format_args!("switchyard.v1.{service}/{method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = %format_args!("switchyard.v1.{service}"),
        rpc.method = method,
    )
}

/// The span of one generation (one inference request through the pipeline). Its GenAI
/// attributes are filled in as they become known; it ends when the response (or stream)
/// is finished and metered.
pub fn generation_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "gen_ai",
        otel.name = operation,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = operation,
        gen_ai.request.model = tracing::field::Empty,
        gen_ai.request.stream = tracing::field::Empty,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.response.id = tracing::field::Empty,
        gen_ai.provider.name = tracing::field::Empty,
        gen_ai.system = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        switchyard.generation_id = tracing::field::Empty,
        switchyard.cost_usd_nanos = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Records what the parsed request asked for on the current generation span, which the
/// GenAI convention names `{operation} {model}`.
pub fn record_request(operation: &str, model: &str, stream: bool) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    // The OTel span already started when the pipeline entered it; rename it in place.
    span.context()
        .span()
        .update_name(format!("{operation} {model}"));
    span.record("gen_ai.request.model", model);
    span.record("gen_ai.request.stream", stream);
}

/// The GenAI operation name for a skin's `api` label.
pub fn operation_for_api(api: &str) -> &'static str {
    match api {
        "embeddings" => "embeddings",
        "completions" => "text_completion",
        _ => "chat",
    }
}

/// The `gen_ai.provider.name` well-known value for a provider slug's kind, falling back to
/// the slug itself.
fn provider_name(slug: &str) -> String {
    match slug {
        "google" | "gemini" | "google-ai-studio" => "gcp.gemini".to_owned(),
        "vertex" | "google-vertex" => "gcp.vertex_ai".to_owned(),
        "bedrock" | "amazon-bedrock" => "aws.bedrock".to_owned(),
        "azure" | "azure-openai" => "azure.ai.openai".to_owned(),
        other => other.to_owned(),
    }
}

/// Records a finished generation's outcome (from its usage record) on `span`: served model,
/// provider, token usage, finish reasons and, on failure, the error type.
pub fn record_usage(span: &tracing::Span, record: &pb::UsageRecord) {
    if span.is_disabled() {
        return;
    }
    let provider = provider_name(&record.provider_slug);
    span.record("gen_ai.response.model", record.model.as_str());
    span.record("gen_ai.response.id", record.request_id.as_str());
    span.record("gen_ai.provider.name", provider.as_str());
    span.record("gen_ai.system", provider.as_str());
    span.record("switchyard.generation_id", record.request_id.as_str());
    span.record("switchyard.cost_usd_nanos", record.cost_nanos);
    if let Some(usage) = &record.usage {
        span.record("gen_ai.usage.input_tokens", usage.input_tokens);
        span.record("gen_ai.usage.output_tokens", usage.output_tokens);
    }
    if !record.finish_reason.is_empty() {
        // A string array per the convention; `tracing` fields cannot carry arrays.
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            opentelemetry::Value::Array(
                vec![opentelemetry::StringValue::from(
                    record.finish_reason.clone(),
                )]
                .into(),
            ),
        );
    }
    if !record.error_type.is_empty() {
        span.record("error.type", record.error_type.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one upstream attempt: a client span to one provider endpoint.
pub fn attempt_span(
    operation: &'static str,
    provider_slug: &str,
    upstream_model: &str,
) -> tracing::Span {
    let provider = provider_name(provider_slug);
    tracing::info_span!(
        "gen_ai.attempt",
        otel.name = %format_args!("{operation} {upstream_model}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = operation,
        gen_ai.provider.name = %provider,
        gen_ai.system = %provider,
        gen_ai.request.model = upstream_model,
        switchyard.provider = provider_slug,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Records an attempt's failure on its span.
pub fn record_attempt_error(span: &tracing::Span, status: u16, error_type: &str) {
    span.record("http.response.status_code", status);
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}
