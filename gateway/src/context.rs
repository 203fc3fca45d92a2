//! The edge's view of one request — request id, client IP, User-Agent — worked
//! out once by a middleware and carried to every gRPC call as metadata, so
//! the backends log and rate-limit against the real client, and one id ties
//! the gateway's log lines to auth-service's and audit-service's.

use std::{convert::Infallible, net::IpAddr, net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderName, HeaderValue, header, request::Parts},
    middleware::Next,
    response::Response,
};
use tonic::metadata::MetadataValue;
use tracing::Instrument;

use crate::client_ip::ProxyRules;

/// The request id header, as clients send it and as we answer it.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen request id we keep; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;
/// Longest User-Agent passed on; the rest is cut so one client cannot bloat
/// every log row.
const MAX_USER_AGENT_LEN: usize = 512;

/// What we know about the client of the current request.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The client's `X-Request-Id` when it was a sane token, else a fresh
    /// UUIDv4.
    pub request_id: String,
    /// The client address after applying trusted proxies; `None` only when
    /// the server was started without connection info (some unit tests).
    pub client_ip: Option<IpAddr>,
    /// The client's User-Agent, reduced to printable ASCII; `None` when the
    /// client sent no such header.
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// A context for a request that did not pass through [`layer`]: a fresh
    /// id and no client details.
    pub fn detached() -> Self {
        Self {
            request_id: uuid::Uuid::new_v4().to_string(),
            client_ip: None,
            user_agent: None,
        }
    }

    /// Wraps `message` in a gRPC request carrying this context as metadata
    /// (`x-request-id`, `x-client-ip`, and `x-client-user-agent` only when the
    /// client sent one).
    pub fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let md = request.metadata_mut();
        // All three values are ASCII by construction, so these parses only
        // fail on a bug; dropping the entry then is better than failing the
        // call.
        if let Ok(v) = MetadataValue::try_from(self.request_id.as_str()) {
            md.insert(common::metadata::REQUEST_ID, v);
        }
        if let Some(ip) = self.client_ip
            && let Ok(v) = MetadataValue::try_from(ip.to_string())
        {
            md.insert(common::metadata::CLIENT_IP, v);
        }
        if let Some(ua) = &self.user_agent
            && let Ok(v) = MetadataValue::try_from(ua.as_str())
        {
            md.insert(common::metadata::CLIENT_USER_AGENT, v);
        }
        request
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(RequestContext::detached))
    }
}

/// Middleware run on every request (including 404s and 405s): settles the
/// request id, resolves the client, opens the request's tracing span, and
/// echoes the id as `X-Request-Id` on the response.
pub async fn layer(
    State(rules): State<Arc<ProxyRules>>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let request_id = headers
        .get(&X_REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let client_ip = peer.map(|peer| rules.resolve(peer, headers));
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| printable_ascii(v.as_bytes(), MAX_USER_AGENT_LEN));

    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        client_ip = client_ip.map(tracing::field::display),
        user_id = tracing::field::Empty,
    );
    let echoed = HeaderValue::from_str(&request_id).ok();
    request.extensions_mut().insert(RequestContext {
        request_id,
        client_ip,
        user_agent,
    });

    async move {
        let started = Instant::now();
        let mut response = next.run(request).await;
        if let Some(id) = echoed {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}

/// The client's request id when it is 1..=128 visible ASCII characters; any
/// other value could smuggle junk into logs and is replaced.
fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic());
    // `is_ascii_graphic` makes the bytes valid UTF-8.
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// `bytes` as printable ASCII (other bytes become `?`), cut to `max` bytes,
/// so any header can travel as gRPC ASCII metadata.
fn printable_ascii(bytes: &[u8], max: usize) -> String {
    bytes
        .iter()
        .take(max)
        .map(|&b| match b {
            b'\t' => ' ',
            0x20..=0x7e => char::from(b),
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_kept() {
        let v = HeaderValue::from_static("abc-123_XYZ.:/");
        assert_eq!(sane_request_id(&v).as_deref(), Some("abc-123_XYZ.:/"));
        let max = "a".repeat(128);
        assert!(sane_request_id(&HeaderValue::from_str(&max).unwrap()).is_some());
    }

    #[test]
    fn odd_request_ids_are_refused() {
        for bad in ["", "has space", "tab\there"] {
            assert!(
                sane_request_id(&HeaderValue::from_str(bad).unwrap()).is_none(),
                "{bad:?}"
            );
        }
        let long = "a".repeat(129);
        assert!(sane_request_id(&HeaderValue::from_str(&long).unwrap()).is_none());
        let binary = HeaderValue::from_bytes(b"id\xc3\xa9").unwrap();
        assert!(sane_request_id(&binary).is_none());
    }

    #[test]
    fn user_agents_become_printable_ascii() {
        assert_eq!(
            printable_ascii(b"curl/8.0\t(x)\xc3\xa9", 100),
            "curl/8.0 (x)??"
        );
        assert_eq!(printable_ascii(b"abcdef", 3), "abc");
    }

    #[test]
    fn grpc_requests_carry_the_context_as_metadata() {
        let ctx = RequestContext {
            request_id: "rid-1".into(),
            client_ip: Some("198.51.100.7".parse().unwrap()),
            user_agent: Some("curl/8.0".into()),
        };
        let req = ctx.grpc_request(());
        let md = req.metadata();
        assert_eq!(
            common::metadata::get(md, common::metadata::REQUEST_ID),
            Some("rid-1")
        );
        assert_eq!(
            common::metadata::get(md, common::metadata::CLIENT_IP),
            Some("198.51.100.7")
        );
        assert_eq!(
            common::metadata::get(md, common::metadata::CLIENT_USER_AGENT),
            Some("curl/8.0")
        );
    }

    #[test]
    fn a_missing_user_agent_is_not_invented() {
        let ctx = RequestContext {
            user_agent: None,
            ..RequestContext::detached()
        };
        let req = ctx.grpc_request(());
        assert!(
            req.metadata()
                .get(common::metadata::CLIENT_USER_AGENT)
                .is_none()
        );
        assert!(req.metadata().get(common::metadata::CLIENT_IP).is_none());
        assert!(req.metadata().get(common::metadata::REQUEST_ID).is_some());
    }
}
