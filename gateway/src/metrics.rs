//! `http_requests_total{route,method,status}` and the
//! `http_request_duration_seconds{route,method,status}` histogram.
//!
//! `route` is the matched route template (`/api/accounts/login/`), never
//! the raw path: paths are client input, and one series per path typed by
//! a scanner would grow without bound. Anything no route matched is
//! `unmatched`. For a streamed answer (the export), the time is to its
//! headers.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};

/// Describes the gateway's metrics and registers its refusal counter at
/// zero (a healthy gateway shows `gateway_connections_refused_total 0`).
/// Called once the recorder is installed.
pub fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        metrics::Unit::Count,
        "HTTP requests the gateway answered (count), by matched route template \
         (unmatched for 404s), method and status."
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Seconds from a request's arrival to its response headers (for the export \
         stream: to its start), by route, method and status."
    );
    metrics::describe_counter!(
        "gateway_connections_refused_total",
        metrics::Unit::Count,
        "Connections answered 503 and closed because GATEWAY_MAX_CONNECTIONS were \
         already open (count)."
    );
    metrics::counter!("gateway_connections_refused_total").increment(0);
}

/// The middleware recording every request (see the module docs).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_str().to_owned();
    metrics::counter!(
        "http_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status.clone()
    )
    .increment(1);
    metrics::histogram!(
        "http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The method's name, or `other` for extension methods (client input too).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
