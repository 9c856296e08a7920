//! Traces over OTLP, received by an OTLP endpoint in the test that decodes what the exporter
//! sends (`opentelemetry-proto`): one trace per event, continuing the sender's `traceparent`,
//! from the ingest request through staging to every delivery attempt, across a restart; no
//! span carries a secret; sampling at 0 exports nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;

use crate::utils::*;

/// One span as exported.
#[derive(Debug, Clone)]
struct Got {
    name: String,
    trace: String,
    id: String,
    parent: String,
    kind: i32,
    attributes: HashMap<String, String>,
    service: String,
}

/// An OTLP/HTTP endpoint on 127.0.0.1: every span it was sent.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Got>>>,
}

impl Collector {
    async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector {
            url: format!("http://{addr}"),
            spans,
        }
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Got>>>>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    keep(&spans, req);
    "{}"
}

/// The same endpoint over gRPC (OTLP's `TraceService/Export`).
struct GrpcCollector(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for GrpcCollector
{
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

impl Collector {
    async fn start_grpc() -> Collector {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(GrpcCollector(spans.clone()));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap()
        });
        Collector {
            url: format!("http://{addr}"),
            spans,
        }
    }
}

fn keep(spans: &Mutex<Vec<Got>>, req: ExportTraceServiceRequest) {
    let mut out = spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Got {
                    name: s.name,
                    trace: hex::encode(s.trace_id),
                    id: hex::encode(s.span_id),
                    parent: hex::encode(s.parent_span_id),
                    kind: s.kind,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| {
                            (
                                a.key.clone(),
                                text(a.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn traced(dir: &std::path::Path, collector: &Collector, ratio: f64) -> cardwire::config::Config {
    traced_over(dir, collector, ratio, None)
}

fn traced_over(
    dir: &std::path::Path,
    collector: &Collector,
    ratio: f64,
    protocol: Option<cardwire::config::OtlpProtocol>,
) -> cardwire::config::Config {
    let mut config = test_config(dir);
    config.telemetry = Some(cardwire::config::TelemetryConfig {
        otlp: Some(cardwire::config::OtlpConfig {
            endpoint: Some(collector.url.clone()),
            protocol,
            headers: HashMap::from([(
                "x-collector-key".to_string(),
                "collector-secret".to_string(),
            )]),
            sample_ratio: Some(ratio),
            service_name: Some("cardwire-test".into()),
        }),
    });
    config
}

const INBOUND_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INBOUND_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_from_the_request_to_each_attempt_across_a_restart() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = traced(dir.path(), &collector, 1.0);
    // Attempts a second apart, so that a restart fits between them.
    config.delivery.retry_schedule = vec![Duration::from_secs(1); 3];
    let mut g = Gateway::start_with(config).await;
    let rx = Receiver::start().await;
    rx.script(&[(500, "down"), (500, "down")]);
    // A webhook URL with a secret in it: never in a span.
    g.connect(&rx.url("teams?sig=url-secret-value"), "teams", &[])
        .await;
    let body = fixture("github/push.event.4.json");
    let res = g
        .client
        .post(g.url("/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            cardwire::ingest::verify::sign(GITHUB_SECRET, &body),
        )
        .header(
            "traceparent",
            format!("00-{INBOUND_TRACE}-{INBOUND_SPAN}-01"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // The first attempt failed: restart before the others.
    g.admin_get_until("/api/deliveries", |v| {
        v["deliveries"][0]["attempts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    g.restart().await;
    rx.wait_for(3).await;
    g.wait_settled().await;
    g.stop().await;

    let spans = collector.spans();
    let in_trace: Vec<&Got> = spans.iter().filter(|s| s.trace == INBOUND_TRACE).collect();
    assert!(
        spans.iter().all(|s| s.trace == INBOUND_TRACE),
        "one trace, the sender's: {spans:#?}"
    );
    let server = in_trace
        .iter()
        .find(|s| s.name == "POST /hooks/{source}")
        .expect("the request's span");
    assert_eq!(
        server.parent, INBOUND_SPAN,
        "continues the sender's traceparent"
    );
    assert_eq!(server.kind, 2, "server");
    assert_eq!(server.attributes["http.response.status_code"], "202");
    assert_eq!(server.attributes["cardwire.source"], "github");
    assert_eq!(server.service, "cardwire-test");
    let stage = in_trace
        .iter()
        .find(|s| s.name == "stage")
        .expect("staging");
    assert_eq!(stage.parent, server.id);
    assert_eq!(stage.attributes["messaging.batch.message_count"], "1");
    assert!(
        stage.attributes["cardwire.rules.matched"]
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    let mut attempts: Vec<&&Got> = in_trace
        .iter()
        .filter(|s| s.name.starts_with("send "))
        .collect();
    attempts.sort_by_key(|s| {
        s.attributes
            .get("http.request.resend_count")
            .cloned()
            .unwrap_or_default()
    });
    assert_eq!(attempts.len(), 3, "an attempt span each: {in_trace:#?}");
    let seen: Vec<(Option<&str>, &str, &str)> = attempts
        .iter()
        .map(|s| {
            (
                s.attributes
                    .get("http.request.resend_count")
                    .map(String::as_str),
                s.attributes["http.response.status_code"].as_str(),
                s.attributes["cardwire.delivery.outcome"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (None, "500", "retry"),
            (Some("1"), "500", "retry"),
            (Some("2"), "200", "delivered"),
        ]
    );
    for a in &attempts {
        assert_eq!(
            a.parent, stage.id,
            "in the event's trace, under its staging"
        );
        assert_eq!(a.kind, 3, "client");
        assert_eq!(a.attributes["messaging.operation.type"], "send");
        assert!(a.attributes.contains_key("messaging.destination.name"));
        assert_eq!(
            a.attributes["messaging.message.id"], attempts[0].attributes["messaging.message.id"],
            "the one card's delivery id"
        );
    }
    assert!(!attempts[0].attributes["messaging.message.id"].is_empty());
    // No span names a secret: the webhook URL's, the collector's key, the source's.
    let everything = format!("{spans:?}");
    for secret in [
        "url-secret-value",
        "collector-secret",
        GITHUB_SECRET,
        "127.0.0.1",
    ] {
        assert!(!everything.contains(secret), "a span carries {secret}");
    }
}

/// A gateway as `config` says: a signed push in, its card out, stopped (its spans flushed).
async fn one_push(config: cardwire::config::Config) {
    let mut g = Gateway::start_with(config).await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    let res = g
        .github("push", &fixture("github/push.event.4.json"), None)
        .await;
    assert_eq!(res.status(), 202);
    rx.wait_for(1).await;
    g.wait_settled().await;
    g.stop().await;
}

/// The same push and stop at ratio 1 and at ratio 0: the first collector gets the event's
/// spans (so the stop does flush), the second none.
#[tokio::test(flavor = "multi_thread")]
async fn sampling_at_zero_exports_nothing() {
    let mut got = Vec::new();
    for ratio in [1.0, 0.0] {
        let collector = Collector::start().await;
        let dir = tempfile::tempdir().unwrap();
        one_push(traced(dir.path(), &collector, ratio)).await;
        got.push(collector.spans().len());
    }
    assert_eq!(got[0], 3, "at 1: the request, staging and the attempt");
    assert_eq!(got[1], 0, "at 0: nothing");
}

/// `protocol: grpc`: the same trace over OTLP's gRPC service.
#[tokio::test(flavor = "multi_thread")]
async fn over_grpc_too() {
    let collector = Collector::start_grpc().await;
    let dir = tempfile::tempdir().unwrap();
    one_push(traced_over(
        dir.path(),
        &collector,
        1.0,
        Some(cardwire::config::OtlpProtocol::Grpc),
    ))
    .await;
    let spans = collector.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 3, "{names:?}");
    for want in ["POST /hooks/{source}", "stage"] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("send ")), "{names:?}");
    assert!(spans.iter().all(|s| s.trace == spans[0].trace), "one trace");
}
