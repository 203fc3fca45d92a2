//! W3C trace context (`traceparent`, `tracestate`) across the internal gRPC
//! hops, so one client request is one trace from the gateway through
//! auth-service to audit-service. Both halves do nothing unless this
//! process exports spans (see [`crate::telemetry`]).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::{
    codegen::http,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::exporting;

/// Client side: writes the current span's context into outgoing metadata.
/// Called by [`crate::internal_auth::AttachToken`], which every internal
/// client already runs, so no client needs its own hook.
pub fn inject(metadata: &mut MetadataMap) {
    if !exporting() {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// Server side, for `tonic::transport::Server::trace_fn`: one span per
/// incoming call, named after the RPC path and made a child of the
/// caller's span when the call carries a `traceparent`. Without export it
/// is `Span::none()`, so logs look as they did.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let path = request.uri().path();
    let span = tracing::info_span!(
        "grpc",
        otel.name = path,
        otel.kind = "server",
        rpc.system = "grpc",
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    // Fails only when the span is disabled by the filter; it is then not
    // exported either, so there is nothing to link.
    let _ = span.set_parent(parent);
    span
}

/// The current span's `traceparent`, for work that leaves this process
/// other than as a call (the attempt outbox): `None` unless exporting.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut carrier = TraceParent(None);
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier.0
}

/// Makes `span` (not yet entered) a child of the span `traceparent` names,
/// so work done later on another service's behalf joins that trace. A
/// malformed value, or no export, leaves `span` as it was.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    if !exporting() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&TraceParent(Some(traceparent.to_owned())));
    let _ = span.set_parent(parent);
}

/// A carrier holding only `traceparent` (`tracestate` is not kept across
/// the outbox).
struct TraceParent(Option<String>);

impl Injector for TraceParent {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

impl Extractor for TraceParent {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent")
            .then_some(self.0.as_deref())
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Lets the propagator write into tonic metadata.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator only writes its own lowercase ASCII keys and
        // printable values, so these parses do not fail in practice; a value
        // that did would be dropped rather than fail the call.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Lets the propagator read raw HTTP/2 headers (what `trace_fn` sees).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::{
        Context,
        trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState},
    };

    use super::*;

    fn sampled_context() -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn a_context_survives_the_trip_through_grpc_metadata() {
        let mut metadata = MetadataMap::new();
        TraceContextPropagator::new()
            .inject_context(&sampled_context(), &mut MetadataInjector(&mut metadata));
        assert_eq!(
            crate::metadata::get(&metadata, "traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );

        let headers = metadata.into_headers();
        let extracted = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let span = extracted.span();
        let remote = span.span_context();
        assert!(remote.is_remote());
        assert_eq!(remote, sampled_context().span().span_context());
    }

    #[test]
    fn nothing_is_injected_while_not_exporting() {
        let mut metadata = MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.is_empty());
    }

    #[test]
    fn no_server_span_is_made_while_not_exporting() {
        let request = http::Request::builder()
            .uri("/auth.v1.AuthService/Login")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(())
            .unwrap();
        assert!(server_span(&request).is_none());
    }
}
