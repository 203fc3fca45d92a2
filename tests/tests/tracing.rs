//! OpenTelemetry export end to end: a real OTLP/gRPC receiver on loopback,
//! the three real services exporting to it, and one login through the
//! gateway arriving as one trace whose auth-service spans hang under the
//! gateway's span and audit-service's recording of the attempt joins it;
//! an admin's read of the log does the same into
//! audit-service. Its own test binary: the subscriber and the exporter
//! are process-wide, and the other system tests run without them.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use serde_json::json;
use system_tests::{Backend, TestSystem};
use tonic::{Request, Response, Status};

/// One exported span with the service that reported it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

/// An OTLP trace collector that keeps everything it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| Received {
                    service: service.clone(),
                    span,
                }));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn attr(span: &Span, key: &str) -> Option<String> {
    string_attr(&span.attributes, key)
}

#[test]
fn each_request_is_one_trace_across_the_internal_grpc_hops() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // SAFETY: nothing else reads the environment concurrently: this binary
    // holds one test, and its runtime is built only below.
    unsafe { std::env::set_var(common::telemetry::OTLP_ENDPOINT, &endpoint) };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let collector = Collector::default();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(
            tokio::net::TcpListener::from_std(listener).unwrap(),
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(incoming),
        );
        let telemetry = common::telemetry::init("system-tests").unwrap();
        assert!(telemetry.is_exporting());

        let sys = TestSystem::start(Backend::Sqlite).await.unwrap();
        sys.active_user("otto", "otto@example.com", "otto-pass-12")
            .await;
        let resp = sys
            .http
            .post(sys.url("/api/accounts/login/"))
            .header("x-request-id", "trace-this-login")
            .json(&json!({"username": "otto", "password": "otto-pass-12"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let admin = sys.admin_token().await;
        let resp = sys
            .http
            .get(sys.url("/api/accounts/logs/login/attemps/"))
            .bearer_auth(admin)
            .header("x-request-id", "trace-this-read")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        sys.shutdown().await;
        // Flushes the batch still queued: the assertions below see every span.
        telemetry.shutdown().await;

        let spans = collector.spans.lock().unwrap().clone();
        assert!(spans.iter().all(|r| r.service == "system-tests"));
        let edge = spans
            .iter()
            .map(|r| &r.span)
            .find(|s| {
                s.name == "http" && attr(s, "request_id").as_deref() == Some("trace-this-login")
            })
            .unwrap_or_else(|| panic!("no gateway span for the login among {spans:#?}"));
        assert_eq!(attr(edge, "target").as_deref(), Some("gateway::context"));
        assert!(edge.parent_span_id.is_empty(), "the edge starts the trace");
        let trace: Vec<&Span> = spans
            .iter()
            .map(|r| &r.span)
            .filter(|s| s.trace_id == edge.trace_id)
            .collect();

        let rpc = trace
            .iter()
            .find(|s| s.name == "/auth.v1.AuthService/Login")
            .unwrap_or_else(|| panic!("auth-service's Login span not in the trace: {trace:#?}"));
        assert_eq!(rpc.parent_span_id, edge.span_id);
        assert_eq!(rpc.kind, SpanKind::Server as i32);

        let handler = trace
            .iter()
            .find(|s| s.name == "login")
            .unwrap_or_else(|| panic!("auth-service's login handler not in the trace: {trace:#?}"));
        assert_eq!(handler.parent_span_id, rpc.span_id);
        assert_eq!(
            attr(handler, "target").as_deref(),
            Some("auth_service::api::grpc")
        );

        // The attempt travelled through the outbox and the Ingest stream;
        // audit-service's commit of it still lands in the login's trace.
        let recorded = trace
            .iter()
            .find(|s| s.name == "record_attempt")
            .unwrap_or_else(|| panic!("audit-service's record span not in the trace: {trace:#?}"));
        assert_eq!(recorded.parent_span_id, handler.span_id);
        assert_eq!(
            attr(recorded, "target").as_deref(),
            Some("audit_service::ingest")
        );

        let read = spans
            .iter()
            .map(|r| &r.span)
            .find(|s| {
                s.name == "http" && attr(s, "request_id").as_deref() == Some("trace-this-read")
            })
            .unwrap_or_else(|| panic!("no gateway span for the log read among {spans:#?}"));
        let listing = spans
            .iter()
            .map(|r| &r.span)
            .find(|s| s.name == "/audit.v1.AuditService/ListAttempts")
            .unwrap_or_else(|| panic!("audit-service's ListAttempts span missing: {spans:#?}"));
        assert_eq!(listing.trace_id, read.trace_id);
        assert_eq!(listing.parent_span_id, read.span_id);

        // The registration before it was a trace of its own.
        let other_edges = spans
            .iter()
            .filter(|r| r.span.name == "http" && r.span.trace_id != edge.trace_id)
            .count();
        assert!(
            other_edges >= 3,
            "register, code, verify each start a trace"
        );
    });
}
