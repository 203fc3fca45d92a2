//! Counting and timing gRPC calls on the server side, for every service a
//! tonic server hosts: `grpc_server_requests_total{method,code}` and the
//! `grpc_server_request_duration_seconds{method,code}` histogram.
//!
//! A gRPC call's status is not where HTTP keeps it: an answer that fails
//! before any message carries `grpc-status` in its headers ("trailers
//! only"), every other answer in the trailers after the last message. So
//! the call is recorded when the status is seen — headers or trailers —
//! which makes a unary call's time its whole answer and a stream's time its
//! whole life. A call whose answer is dropped before a status (the client
//! went away) counts as `Canceled`.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};

/// Describes the two series [`GrpcMetrics`] records; gRPC services call
/// it once the recorder is installed.
pub fn describe() {
    ::metrics::describe_counter!(
        "grpc_server_requests_total",
        ::metrics::Unit::Count,
        "gRPC calls served (count), by method (/package.Service/Method, unmatched for \
         unknown paths) and gRPC status code (Canceled when the client left first)."
    );
    ::metrics::describe_histogram!(
        "grpc_server_request_duration_seconds",
        ::metrics::Unit::Seconds,
        "Seconds from a gRPC call's start to its status, by method and code: a unary \
         call's whole answer, a stream's whole life."
    );
}

/// Adds [`GrpcMetrics`] around a tonic server's routes
/// (`Server::builder().layer(GrpcMetricsLayer)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// Records each call's method, status and duration around `inner`.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let call = Call {
            method: req.uri().path().to_owned(),
            start: Instant::now(),
            done: false,
        };
        ResponseFuture {
            inner: self.inner.call(req),
            call: Some(call),
        }
    }
}

/// One call being timed; records itself exactly once.
#[derive(Debug)]
struct Call {
    /// The request path, `/package.Service/Method`.
    method: String,
    start: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        // Unknown paths are answered `Unimplemented` by tonic's router: one
        // label for all of them, or any client could mint new series.
        let method = if code == Code::Unimplemented {
            "unmatched".to_owned()
        } else {
            std::mem::take(&mut self.method)
        };
        let code = code_name(code);
        ::metrics::counter!("grpc_server_requests_total", "method" => method.clone(), "code" => code)
            .increment(1);
        ::metrics::histogram!("grpc_server_request_duration_seconds", "method" => method, "code" => code)
            .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

pin_project! {
    /// The answer's future; checks the headers for a trailers-only status.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let (Some(code), Some(c)) = (status_in(response.headers()), call.as_mut()) {
                    c.finish(code);
                }
                Ok(response.map(|inner| MeteredBody { inner, call }))
            }
            Err(e) => {
                if let Some(c) = call.as_mut() {
                    c.finish(Code::Internal);
                }
                Err(e)
            }
        })
    }
}

pin_project! {
    /// The answer's body; records the call when the trailers pass.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(call) = this.call.as_mut() {
            match &frame {
                Some(Ok(f)) => {
                    if let Some(code) = f.trailers_ref().and_then(status_in) {
                        call.finish(code);
                    }
                }
                Some(Err(_)) => call.finish(Code::Unknown),
                // Ended without a status: not a well-formed gRPC answer.
                None => call.finish(Code::Unknown),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in `headers`, if there is one.
fn status_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// The canonical status names (as gRPC's other implementations print them).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use http::uri::PathAndQuery;
    use tokio::net::TcpListener;
    use tonic::transport::{Channel, Server};
    use tonic_health::{
        ServingStatus,
        pb::{HealthCheckRequest, HealthCheckResponse, health_client::HealthClient},
    };

    use super::*;

    const CHECK: &str = "/grpc.health.v1.Health/Check";
    const WATCH: &str = "/grpc.health.v1.Health/Watch";

    /// The health service behind the layer, on a loopback port.
    async fn serve() -> Channel {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("svc", ServingStatus::Serving)
            .await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // Kept alive with the server: dropping it ends Watch streams.
            let _reporter = reporter;
            Server::builder()
                .layer(GrpcMetricsLayer)
                .add_service(health)
                .serve_with_incoming(crate::net::incoming_nodelay(listener))
                .await
        });
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// `grpc_server_requests_total{method,code}` as rendered now.
    fn count(method: &str, code: &str) -> u64 {
        let text = crate::metrics::render(&crate::metrics::install().unwrap());
        let (method, code) = (format!("method=\"{method}\""), format!("code=\"{code}\""));
        text.lines()
            .find(|l| {
                l.starts_with("grpc_server_requests_total{")
                    && l.contains(&method)
                    && l.contains(&code)
            })
            .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }

    // One test: the counters are process-wide, and tests run in parallel.
    #[tokio::test]
    async fn calls_are_counted_by_method_and_the_status_wherever_it_travels() {
        crate::metrics::install().unwrap();
        let channel = serve().await;
        let mut client = HealthClient::new(channel.clone());
        let check = |service: &str| HealthCheckRequest {
            service: service.into(),
        };

        // OK travels in the trailers, NotFound in the headers (trailers only).
        let (ok, not_found) = (count(CHECK, "OK"), count(CHECK, "NotFound"));
        client.check(check("svc")).await.unwrap();
        client.check(check("other")).await.unwrap_err();
        assert_eq!(count(CHECK, "OK"), ok + 1);
        assert_eq!(count(CHECK, "NotFound"), not_found + 1);

        // An unknown path is one `unmatched` series, whatever the path.
        let unmatched = count("unmatched", "Unimplemented");
        let mut raw = tonic::client::Grpc::new(channel);
        raw.ready().await.unwrap();
        let status = raw
            .unary::<HealthCheckRequest, HealthCheckResponse, _>(
                tonic::Request::new(check("svc")),
                PathAndQuery::from_static("/made.Up/Path123"),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(count("unmatched", "Unimplemented"), unmatched + 1);
        let text = crate::metrics::render(&crate::metrics::install().unwrap());
        assert!(!text.contains("Path123"));

        // A stream the client abandons counts when it ends, as Canceled.
        let canceled = count(WATCH, "Canceled");
        let mut updates = client.watch(check("svc")).await.unwrap().into_inner();
        updates.message().await.unwrap().unwrap();
        drop(updates);
        for _ in 0..100 {
            if count(WATCH, "Canceled") > canceled {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the abandoned Watch stream was never counted");
    }
}
