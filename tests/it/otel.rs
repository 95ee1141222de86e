//! OpenTelemetry: a gateway configured through the standard `OTEL_*` variables exports
//! GenAI spans over OTLP/gRPC to an in-test collector on loopback; the client's W3C trace
//! context is adopted, and the provider receives a `traceparent` of the same trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use switchyard_gateway::telemetry::otel::{OtelConfig, OtlpProtocol, SamplerChoice};
use tokio_stream::wrappers::TcpListenerStream;
use tracing_subscriber::layer::SubscriberExt;

/// A span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<AnyValue> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    }

    fn str_attr(&self, key: &str) -> Option<String> {
        match self.attr(key)? {
            AnyValue::StringValue(s) => Some(s),
            other => Some(format!("{other:?}")),
        }
    }

    fn int_attr(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            AnyValue::IntValue(i) => Some(i),
            AnyValue::StringValue(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// The in-test OTLP collector: keeps every exported span and wakes waiters.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    changed: Arc<tokio::sync::Notify>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    fn push(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
                .map(|v| match v {
                    AnyValue::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        drop(spans);
        self.changed.notify_waiters();
    }

    /// Starts an OTLP/HTTP receiver (`POST /v1/traces`, binary protobuf) on a loopback
    /// port; returns its base URL.
    async fn start_http(&self) -> String {
        use axum::http::{StatusCode, header};
        use prost::Message as _;
        let collector = self.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let content_type = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if content_type != "application/x-protobuf" {
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(request) => {
                            collector.push(request);
                            let response = ExportTraceServiceResponse {
                                partial_success: None,
                            };
                            (StatusCode::OK, response.encode_to_vec())
                        }
                        Err(_) => (StatusCode::BAD_REQUEST, Vec::new()),
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// Starts the collector on a loopback port; returns its `http://` endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    /// Waits (bounded) until a received span satisfies `done`.
    /// The gateway's span for one provider call in `trace_id`.
    async fn attempt_in(&self, trace_id: &str) -> Received {
        self.wait_for("gen_ai.attempt", |s| {
            hex::encode(&s.span.trace_id) == trace_id && s.attr("switchyard.provider").is_some()
        })
        .await
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Received) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.changed.notified();
            if let Some(found) = self.spans.lock().unwrap().iter().find(|s| done(s)) {
                return found.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let names: Vec<String> = self
                    .spans
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| s.span.name.clone())
                    .collect();
                panic!("no exported span {what}; received: {names:?}");
            }
        }
    }

    fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

#[test]
fn otel_config_follows_the_standard_variables() {
    let env = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| map.get(k).cloned()
    };
    assert_eq!(OtelConfig::from_lookup("svc", env(&[])).unwrap(), None);
    let config = OtelConfig::from_lookup(
        "svc",
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(config.endpoint, "http://traces:4317");
    assert_eq!(config.service_name, "svc");
    assert_eq!(config.sampler, SamplerChoice::ParentBasedTraceIdRatio(0.25));
    assert_eq!(config.protocol, OtlpProtocol::Grpc);
    // HTTP: the general endpoint gets the signal path, the traces one is used as is, and the
    // traces protocol variable wins over the general one.
    let http = OtelConfig::from_lookup(
        "svc",
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(http.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(http.endpoint, "http://collector:4318/v1/traces");
    let http = OtelConfig::from_lookup(
        "svc",
        env(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(http.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(http.endpoint, "http://traces:4318/custom");
    let off = OtelConfig::from_lookup(
        "svc",
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(off, None);
    for bad in [
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
        ],
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ],
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
        ],
    ] {
        let err = OtelConfig::from_lookup("svc", env(&bad)).unwrap_err();
        assert!(err.to_string().contains("OTEL_"), "{err}");
    }
}

/// The tracing layer is this thread's default and the runtime is single-threaded, so every
/// task of the in-process system reports into it (as `ops::secrets_never_reach_logs…`).
/// The parent span id of the provider's last request, which must be in `trace_id`.
fn provider_parent(mock: &MockOpenAi, trace_id: &str) -> String {
    let upstream = mock.last_request().expect("the mock was called");
    let traceparent = upstream
        .header("traceparent")
        .expect("traceparent injected into the provider request")
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        parts[1], trace_id,
        "provider got another trace: {traceparent}"
    );
    parts[2].to_owned()
}

#[test]
fn gateway_exports_genai_spans_and_propagates_trace_context() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let collector = Collector::default();
        let endpoint = collector.start().await;
        let vars: HashMap<&str, String> = HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_SERVICE_NAME", "gateway-under-test".to_owned()),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        ]);
        let config = OtelConfig::from_lookup("switchyard-gateway", |k| vars.get(k).cloned())
            .unwrap()
            .expect("OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on");
        let (layer, guard) = switchyard_gateway::telemetry::otel::layer(&config).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        let _default = tracing::subscriber::set_default(subscriber);

        let system = System::start().await.unwrap();
        let mock = MockOpenAi::start(MockConfig {
            fixed_usage: Some((11, 7)),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        system
            .add_openai_model(&mock.base_url(), "acme/traced", "gpt-4o", "1", "2")
            .await
            .unwrap();

        for (stream, trace_id) in [
            (false, "4bf92f3577b34da6a3ce929d0e0e4736"),
            (true, "0af7651916cd43dd8448eb211c80319c"),
        ] {
            let client_span_id = "00f067aa0ba902b7";
            mock.clear_requests();
            let response = system
                .http
                .post(format!("{}/chat/completions", system.base_url()))
                .bearer_auth(system.api_key())
                .header("traceparent", format!("00-{trace_id}-{client_span_id}-01"))
                .json(&json!({"model": "acme/traced", "stream": stream,
                              "stream_options": {"include_usage": true},
                              "messages": [{"role": "user", "content": "hello there"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.text().await.unwrap();

            // The provider saw the same trace, parented on the gateway's attempt span.
            let provider_parent = provider_parent(&mock, trace_id);
            assert_ne!(
                provider_parent, client_span_id,
                "the gateway adds its own span"
            );

            let generation = collector
                .wait_for("gen_ai with usage", |s| {
                    hex::encode(&s.span.trace_id) == trace_id
                        && s.str_attr("gen_ai.operation.name").as_deref() == Some("chat")
                        && s.int_attr("gen_ai.usage.output_tokens").is_some()
                        && s.attr("switchyard.provider").is_none()
                })
                .await;
            assert_eq!(generation.service, "gateway-under-test");
            assert_eq!(generation.span.name, "chat acme/traced");
            assert_eq!(
                generation.str_attr("gen_ai.request.model").as_deref(),
                Some("acme/traced")
            );
            assert_eq!(
                generation.str_attr("gen_ai.response.model").as_deref(),
                Some("acme/traced")
            );
            assert!(generation.str_attr("gen_ai.provider.name").is_some());
            assert_eq!(
                generation.str_attr("gen_ai.system"),
                generation.str_attr("gen_ai.provider.name")
            );
            assert_eq!(generation.int_attr("gen_ai.usage.input_tokens"), Some(11));
            assert_eq!(generation.int_attr("gen_ai.usage.output_tokens"), Some(7));
            match generation.attr("gen_ai.response.finish_reasons") {
                Some(AnyValue::ArrayValue(array)) => {
                    assert_eq!(array.values.len(), 1);
                    assert_eq!(
                        array.values[0].value,
                        Some(AnyValue::StringValue("stop".into()))
                    );
                }
                other => panic!("finish_reasons is not a string array: {other:?}"),
            }
            let generation_id = generation.str_attr("switchyard.generation_id").unwrap();
            assert!(generation_id.len() >= 32, "{generation_id}");

            // One child span per upstream attempt; its id is the provider's parent id.
            let attempt = collector.attempt_in(trace_id).await;
            assert_eq!(attempt.span.parent_span_id, generation.span.span_id);
            assert_eq!(hex::encode(&attempt.span.span_id), provider_parent);
            assert_eq!(attempt.span.name, "chat gpt-4o");
            assert_eq!(
                attempt.str_attr("gen_ai.request.model").as_deref(),
                Some("gpt-4o")
            );

            // The HTTP request span is the client's child and the generation's parent.
            let request = collector
                .wait_for("HTTP request span", |s| {
                    s.span.span_id == generation.span.parent_span_id
                })
                .await;
            assert_eq!(hex::encode(&request.span.parent_span_id), client_span_id);
            assert_eq!(hex::encode(&request.span.trace_id), trace_id);
        }

        // Embeddings get a GenAI span like chat, in the client's trace.
        let embeddings_trace = "5b8aa5a2d2c872e8321cf37308d69df2";
        mock.clear_requests();
        let response = system
            .http
            .post(format!("{}/embeddings", system.base_url()))
            .bearer_auth(system.api_key())
            .header(
                "traceparent",
                format!("00-{embeddings_trace}-051581bf3cb55c13-01"),
            )
            .json(&json!({"model": "acme/traced", "input": ["one two three", "four"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        let prompt_tokens = body["usage"]["prompt_tokens"].as_i64().unwrap();
        assert!(prompt_tokens > 0, "{body}");
        let embeddings = collector
            .wait_for("gen_ai embeddings", |s| {
                hex::encode(&s.span.trace_id) == embeddings_trace
                    && s.str_attr("gen_ai.operation.name").as_deref() == Some("embeddings")
                    && s.int_attr("gen_ai.usage.input_tokens").is_some()
            })
            .await;
        assert_eq!(embeddings.span.name, "embeddings acme/traced");
        assert_eq!(
            embeddings.str_attr("gen_ai.request.model").as_deref(),
            Some("acme/traced")
        );
        assert_eq!(
            embeddings.str_attr("gen_ai.response.model").as_deref(),
            Some("acme/traced")
        );
        assert!(embeddings.str_attr("gen_ai.provider.name").is_some());
        assert_eq!(
            embeddings.int_attr("gen_ai.usage.input_tokens"),
            Some(prompt_tokens)
        );
        // The provider call is an attempt span of its own, as for chat, and the provider
        // is parented on it.
        let provider_parent = provider_parent(&mock, embeddings_trace);
        let attempt = collector.attempt_in(embeddings_trace).await;
        assert_eq!(attempt.span.parent_span_id, embeddings.span.span_id);
        assert_eq!(hex::encode(&attempt.span.span_id), provider_parent);
        assert_eq!(attempt.span.name, "embeddings gpt-4o");

        // A management request the gateway forwards to the control plane: the control
        // plane's server span is a child of the gateway's, not of the client's span.
        let forward_trace = "3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f";
        let client_span = "a1b2c3d4e5f60718";
        let response = system
            .http
            .get(format!("{}/key", system.base_url()))
            .bearer_auth(system.api_key())
            .header(
                "traceparent",
                format!("00-{forward_trace}-{client_span}-01"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let in_trace = |s: &Received| hex::encode(&s.span.trace_id) == forward_trace;
        let gateway = collector
            .wait_for("the gateway's span of the forwarded request", |s| {
                in_trace(s) && hex::encode(&s.span.parent_span_id) == client_span
            })
            .await;
        collector
            .wait_for("the control plane's span, the gateway's child", |s| {
                in_trace(s) && s.span.parent_span_id == gateway.span.span_id
            })
            .await;
        assert_eq!(
            collector
                .all()
                .iter()
                .filter(|s| in_trace(s) && hex::encode(&s.span.parent_span_id) == client_span)
                .count(),
            1,
            "only the gateway's span hangs off the client's"
        );

        // With an org budget the request's admission leases a slice from the control plane:
        // the gateway's Lease call carries the request's trace context, so the control
        // plane's server span for it is in the client's trace, a child of the gateway's
        // client span.
        let created = system
            .post(
                "/budgets",
                system.management_key(),
                &json!({ "scope": "org", "limit": 25, "window": "monthly", "name": "traced" }),
            )
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let version = system.store.config_version().await.unwrap();
        system.gateway.wait_for_config(version).await.unwrap();
        let lease_trace = "8f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let response = system
            .http
            .post(format!("{}/chat/completions", system.base_url()))
            .bearer_auth(system.api_key())
            .header(
                "traceparent",
                format!("00-{lease_trace}-1122334455667788-01"),
            )
            .json(&json!({"model": "acme/traced", "max_tokens": 5,
                          "messages": [{"role": "user", "content": "lease me"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.text().await.unwrap();
        let is_lease = |s: &Received| s.str_attr("rpc.method").as_deref() == Some("Lease");
        let server = collector
            .wait_for("control-plane Lease span in the client's trace", |s| {
                is_lease(s) && s.span.kind == 2 && hex::encode(&s.span.trace_id) == lease_trace
            })
            .await;
        let client = collector
            .wait_for("the gateway's Lease client span", |s| {
                is_lease(s) && s.span.kind == 3 && s.span.span_id == server.span.parent_span_id
            })
            .await;
        assert_eq!(hex::encode(&client.span.trace_id), lease_trace);
        assert_ne!(
            hex::encode(&client.span.parent_span_id),
            "1122334455667788",
            "the lease is made within the gateway's own request spans"
        );
        // The background config calls are traced to the control plane too.
        let ack = collector
            .wait_for("control-plane AckConfig span", |s| {
                s.str_attr("rpc.method").as_deref() == Some("AckConfig") && s.span.kind == 2
            })
            .await;
        assert!(
            collector.all().iter().any(|s| s.span.kind == 3
                && s.span.span_id == ack.span.parent_span_id
                && s.span.trace_id == ack.span.trace_id),
            "the AckConfig server span is not parented on the gateway's client span"
        );

        // The control plane's gRPC calls from the gateway are traced too.
        let grpc = collector
            .wait_for("control-plane gRPC span", |s| {
                s.str_attr("rpc.system").as_deref() == Some("grpc")
            })
            .await;
        assert!(
            grpc.str_attr("rpc.service")
                .is_some_and(|s| s.starts_with("switchyard.v1.")),
            "{:?}",
            grpc.span.attributes
        );
        assert!(collector.all().len() >= 6);
        // Flushing on drop needs the runtime to keep running the exporter's connection.
        tokio::task::spawn_blocking(move || drop(guard))
            .await
            .unwrap();
    });
}

/// OTLP over HTTP/protobuf (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`): spans of both planes
/// reach an in-test `POST /v1/traces` receiver that decodes the protobuf request.
#[test]
fn otlp_over_http_protobuf_exports_both_planes() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let collector = Collector::default();
        let base = collector.start_http().await;
        let vars: HashMap<&str, String> = HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", base),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            ("OTEL_SERVICE_NAME", "http-exporter-under-test".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        ]);
        let config = OtelConfig::from_lookup("switchyard", |k| vars.get(k).cloned())
            .unwrap()
            .unwrap();
        assert_eq!(config.protocol, OtlpProtocol::HttpProtobuf);
        let (layer, guard) = switchyard_gateway::telemetry::otel::layer(&config).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        let _default = tracing::subscriber::set_default(subscriber);

        let system = System::start().await.unwrap();
        let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
        system
            .add_openai_model(&mock.base_url(), "acme/http-traced", "gpt-4o", "1", "2")
            .await
            .unwrap();
        let trace_id = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
        let response = system
            .http
            .post(format!("{}/chat/completions", system.base_url()))
            .bearer_auth(system.api_key())
            .header("traceparent", format!("00-{trace_id}-0102030405060708-01"))
            .json(&json!({"model": "acme/http-traced",
                          "messages": [{"role": "user", "content": "over http"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.text().await.unwrap();

        // The gateway's generation span...
        let generation = collector
            .wait_for("gen_ai over OTLP/HTTP", |s| {
                hex::encode(&s.span.trace_id) == trace_id
                    && s.str_attr("gen_ai.operation.name").as_deref() == Some("chat")
                    && s.int_attr("gen_ai.usage.input_tokens").is_some()
            })
            .await;
        assert_eq!(generation.service, "http-exporter-under-test");
        assert_eq!(generation.span.name, "chat acme/http-traced");
        // ...and the control plane's server span for a gateway's gRPC call.
        let grpc = collector
            .wait_for("control-plane gRPC server span over OTLP/HTTP", |s| {
                s.str_attr("rpc.system").as_deref() == Some("grpc") && s.span.kind == 2
            })
            .await;
        assert!(
            grpc.str_attr("rpc.service")
                .is_some_and(|s| s.starts_with("switchyard.v1.")),
            "{:?}",
            grpc.span.attributes
        );
        tokio::task::spawn_blocking(move || drop(guard))
            .await
            .unwrap();
    });
}
