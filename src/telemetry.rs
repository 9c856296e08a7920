//! OpenTelemetry traces: one trace per event, from the ingest request to each delivery
//! attempt, exported over OTLP (`telemetry.otlp`; off by default).
//!
//! In: the settings (and `OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER_ARG`
//! as the SDKs read them); the moments ingest and delivery report. Out: spans to the
//! collector. Guarantees: off, every call is one branch on `None` and nothing is exported; a
//! request continues the sender's `traceparent`; the staging span's context is stored with each
//! card ([`crate::store::OutboxRecord::trace`]), so that an attempt hours later, after a restart,
//! joins the event's trace; spans carry names, ids, counts and statuses, never a webhook URL, a
//! token, a query string or a header's value; the exporter runs on the runtime's tasks and
//! never blocks ingest or delivery (spans are dropped when its queue is full).

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::config::{OtlpProtocol, TelemetryConfig};

/// The tracer, when telemetry is on.
#[derive(Default)]
pub struct Telemetry {
    on: Option<On>,
}

struct On {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// What the settings and the environment say, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The collector's URL, as configured (`None`: the exporter reads the environment).
    pub endpoint: Option<String>,
    /// How spans go.
    pub protocol: OtlpProtocol,
    /// Headers sent with every export (a collector's token).
    pub headers: HashMap<String, String>,
    /// The share of traces kept, 0 to 1 (a trace a sender sampled follows the sender).
    pub sample_ratio: f64,
    /// `service.name`.
    pub service_name: String,
}

/// Whether telemetry is on and how, from the settings and `env` (a variable's value by name):
/// on when `telemetry.otlp` is set or `OTEL_EXPORTER_OTLP_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is; the settings win over the environment.
pub fn resolve(
    config: Option<&TelemetryConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Resolved> {
    let otlp = config.and_then(|t| t.otlp.clone());
    let env_endpoint =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if otlp.is_none() && env_endpoint.is_none() {
        return None;
    }
    let otlp = otlp.unwrap_or_default();
    let protocol = otlp.protocol.unwrap_or_else(|| {
        match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            Some("grpc") => OtlpProtocol::Grpc,
            _ => OtlpProtocol::HttpProtobuf,
        }
    });
    let endpoint = otlp.endpoint.map(|e| match protocol {
        // As OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL, the signal's path added.
        OtlpProtocol::HttpProtobuf
            if url::Url::parse(&e).is_ok_and(|u| u.path() == "/" || u.path().is_empty()) =>
        {
            format!("{}/v1/traces", e.trim_end_matches('/'))
        }
        _ => e,
    });
    Some(Resolved {
        endpoint,
        protocol,
        headers: otlp.headers,
        sample_ratio: otlp
            .sample_ratio
            .or_else(|| env("OTEL_TRACES_SAMPLER_ARG").and_then(|r| r.parse().ok()))
            .unwrap_or(1.0)
            .clamp(0.0, 1.0),
        service_name: otlp
            .service_name
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "cardwire".into()),
    })
}

/// The exporter's HTTP client: the gateway's own reqwest (rustls), on the runtime's tasks.
#[derive(Debug)]
struct Client(reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let (parts, body) = request.into_parts();
        let mut req = self
            .0
            .request(parts.method, parts.uri.to_string())
            .body(body);
        for (name, value) in &parts.headers {
            req = req.header(name, value);
        }
        let res = req.send().await?;
        let mut out = opentelemetry_http::Response::builder().status(res.status().as_u16());
        for (name, value) in res.headers() {
            out = out.header(name, value);
        }
        Ok(out.body(res.bytes().await?)?)
    }
}

impl Telemetry {
    /// No telemetry.
    pub fn off() -> Telemetry {
        Telemetry::default()
    }

    /// Telemetry as `config` and the environment say (off when neither asks for it). Must be
    /// called on the runtime that will export.
    pub fn start(config: Option<&TelemetryConfig>) -> anyhow::Result<Telemetry> {
        let Some(r) = resolve(config, |k| std::env::var(k).ok()) else {
            return Ok(Telemetry::off());
        };
        use anyhow::Context as _;
        let exporter = match r.protocol {
            OtlpProtocol::HttpProtobuf => {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .context("telemetry: the exporter's HTTP client")?;
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(Client(client))
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                if let Some(e) = &r.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                if !r.headers.is_empty() {
                    b = b.with_headers(r.headers.clone());
                }
                b.build()
            }
            OtlpProtocol::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
                if let Some(e) = &r.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                if !r.headers.is_empty() {
                    let mut headers = axum::http::HeaderMap::new();
                    for (k, v) in &r.headers {
                        let name =
                            axum::http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                                .with_context(|| {
                                format!("telemetry.otlp.headers: {k:?} is not a header name")
                            })?;
                        let value = axum::http::HeaderValue::from_str(v).with_context(|| {
                            format!("telemetry.otlp.headers.{k}: not a header value")
                        })?;
                        headers.insert(name, value);
                    }
                    b = b.with_metadata(
                        opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(
                            headers,
                        ),
                    );
                }
                b.build()
            }
        }
        .context("telemetry: cannot build the OTLP exporter")?;
        let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                r.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(r.service_name.clone())
                    .build(),
            )
            .build();
        use opentelemetry::trace::TracerProvider as _;
        let tracer = provider.tracer("cardwire");
        tracing::info!(protocol = ?r.protocol, sample_ratio = r.sample_ratio, service = %r.service_name, "traces exported over OTLP");
        Ok(Telemetry {
            on: Some(On { provider, tracer }),
        })
    }

    /// Whether spans are made.
    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// Exports what is left; at a clean stop.
    pub fn shutdown(&self) {
        if let Some(on) = &self.on {
            let _ = on.provider.force_flush();
            let _ = on.provider.shutdown();
        }
    }

    /// The server span of `POST /hooks/{source}`, continuing the sender's `traceparent`.
    pub fn request(&self, source: &str, headers: &axum::http::HeaderMap) -> Request {
        let Some(on) = &self.on else {
            return Request(None);
        };
        let parent =
            TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
        let span = on
            .tracer
            .span_builder("POST /hooks/{source}")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("http.route", "/hooks/{source}"),
                KeyValue::new("cardwire.source", source.to_string()),
            ])
            .start_with_context(&on.tracer, &parent);
        let cx = parent.with_span(span);
        Request(Some((cx, on.tracer.clone())))
    }

    /// The span of one delivery attempt of a card, in its event's trace (`trace`: the context
    /// staging stored with it), after `resends` earlier attempts.
    pub fn attempt(
        &self,
        trace: Option<&str>,
        connection: &str,
        delivery: &str,
        resends: u32,
    ) -> Attempt {
        let Some(on) = &self.on else {
            return Attempt(None);
        };
        let parent = trace.map(context_of).unwrap_or_default();
        let mut attributes = vec![
            KeyValue::new("messaging.system", "cardwire"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.destination.name", connection.to_string()),
            KeyValue::new("messaging.message.id", delivery.to_string()),
            KeyValue::new("http.request.method", "POST"),
        ];
        if resends > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(resends),
            ));
        }
        let span = on
            .tracer
            .span_builder(format!("send {connection}"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&on.tracer, &parent);
        Attempt(Some(span))
    }
}

/// The context a stored `traceparent` names.
fn context_of(traceparent: &str) -> Context {
    let carrier: HashMap<String, String> =
        HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// An ingest request's span (and its context), or nothing when telemetry is off.
pub struct Request(Option<(Context, SdkTracer)>);

impl Request {
    /// The staging span, a child of the request's.
    pub fn stage(&self, event: &str) -> Stage {
        let Some((cx, tracer)) = &self.0 else {
            return Stage(None);
        };
        let span = tracer
            .span_builder("stage")
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("cardwire.event.id", event.to_string())])
            .start_with_context(tracer, cx);
        Stage(Some(cx.with_span(span)))
    }

    /// Ends the request's span with its answer's status.
    pub fn finish(self, status: u16) {
        if let Some((cx, _)) = self.0 {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(format!("{status}")));
            }
            span.end();
        }
    }
}

/// The staging span, or nothing.
pub struct Stage(Option<Context>);

impl Stage {
    /// Its context as a W3C `traceparent`, stored with each card the event makes.
    pub fn traceparent(&self) -> Option<String> {
        let cx = self.0.as_ref()?;
        if !cx.span().span_context().is_sampled() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(cx, &mut carrier);
        carrier.remove("traceparent")
    }

    /// Ends it: how many rules took the event, how many cards were queued.
    pub fn finish(self, rules: usize, cards: usize) {
        if let Some(cx) = self.0 {
            let span = cx.span();
            span.set_attribute(KeyValue::new("cardwire.rules.matched", rules as i64));
            span.set_attribute(KeyValue::new("messaging.batch.message_count", cards as i64));
            span.end();
        }
    }
}

/// A delivery attempt's span, or nothing.
pub struct Attempt(Option<opentelemetry_sdk::trace::Span>);

impl Attempt {
    /// Ends it: the answer's status, if any, and what came of the attempt (`delivered`,
    /// `retry`, `dead`, `broken`).
    pub fn finish(self, status: Option<u16>, outcome: &'static str) {
        if let Some(mut span) = self.0 {
            if let Some(s) = status {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
            }
            span.set_attribute(KeyValue::new("cardwire.delivery.outcome", outcome));
            if outcome != "delivered" {
                span.set_status(Status::error(outcome));
            }
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_by_the_settings_or_the_environment_the_settings_first() {
        let none = |_: &str| None;
        assert_eq!(resolve(None, none), None, "off by default");
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318".to_string()),
            "OTEL_SERVICE_NAME" => Some("gw".to_string()),
            "OTEL_TRACES_SAMPLER_ARG" => Some("0.25".to_string()),
            _ => None,
        };
        let r = resolve(None, env).unwrap();
        assert_eq!(r.endpoint, None, "the exporter reads the variable itself");
        assert_eq!((r.service_name.as_str(), r.sample_ratio), ("gw", 0.25));
        assert_eq!(r.protocol, OtlpProtocol::HttpProtobuf);
        let config = TelemetryConfig {
            otlp: Some(crate::config::OtlpConfig {
                endpoint: Some("http://127.0.0.1:4318".into()),
                protocol: None,
                headers: HashMap::from([("authorization".into(), "Bearer t".into())]),
                sample_ratio: Some(2.0),
                service_name: Some("cardwire-eu".into()),
            }),
        };
        let r = resolve(Some(&config), env).unwrap();
        assert_eq!(
            r.endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            (r.service_name.as_str(), r.sample_ratio),
            ("cardwire-eu", 1.0)
        );
        let mut grpc = config.clone();
        grpc.otlp.as_mut().unwrap().protocol = Some(OtlpProtocol::Grpc);
        let r = resolve(Some(&grpc), none).unwrap();
        assert_eq!(
            r.endpoint.as_deref(),
            Some("http://127.0.0.1:4318"),
            "gRPC's is the URL as given"
        );
    }

    #[test]
    fn off_makes_nothing() {
        let t = Telemetry::off();
        assert!(!t.is_on());
        let req = t.request("github", &axum::http::HeaderMap::new());
        let stage = req.stage("evt_1");
        assert_eq!(stage.traceparent(), None);
        stage.finish(1, 1);
        req.finish(202);
        t.attempt(
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            "c",
            "d",
            1,
        )
        .finish(Some(200), "delivered");
    }
}
