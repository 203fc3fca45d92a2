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

use common::metadata::{printable_user_agent, request_id_or_fresh};

use crate::client_ip::ProxyRules;

/// The request id header, as clients send it and as we answer it.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
    let request_id = request_id_or_fresh(headers.get(&X_REQUEST_ID).map(|v| v.as_bytes()));
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let client_ip = peer.map(|peer| rules.resolve(peer, headers));
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| printable_user_agent(v.as_bytes()));

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

#[cfg(test)]
mod tests {
    use super::*;

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
