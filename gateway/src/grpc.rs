//! The gateway's gRPC clients. Channels connect lazily, so the gateway
//! starts (and answers 503) while a backend is still down, and reconnects
//! by itself when it comes back.

use std::time::Duration;

use anyhow::Context;
use common::{internal_auth::AttachToken, tls::ClientTls};
use proto::{
    audit::v1::audit_service_client::AuditServiceClient,
    auth::v1::{admin_service_client::AdminServiceClient, auth_service_client::AuthServiceClient},
};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::error::{ApiError, Rpc};

/// An auth-service client that presents `INTERNAL_TOKEN` on every call.
pub type AuthClient = AuthServiceClient<InterceptedService<Channel, AttachToken>>;
/// An auth-service administration client that presents `INTERNAL_TOKEN`
/// on every call (each call adds the administrator's access token).
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, AttachToken>>;
/// An audit-service client that presents `INTERNAL_TOKEN` on every call.
pub type AuditClient = AuditServiceClient<InterceptedService<Channel, AttachToken>>;

/// Longest wait for a TCP connection to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for any one call; login includes an argon2 hash that may
/// queue behind others, so this is generous.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A lazily connecting channel to `url`; `https://` URLs use `tls`.
pub fn channel(url: &str, tls: &ClientTls) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid gRPC URL {url:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if url.starts_with("https:") {
        endpoint = endpoint.tls_config(tls.load()?)?;
    }
    Ok(endpoint.connect_lazy())
}

/// An auth-service client on `channel`.
pub fn auth_client(channel: Channel, token: AttachToken) -> AuthClient {
    AuthServiceClient::with_interceptor(channel, token)
}

/// An auth-service administration client on `channel`.
pub fn admin_client(channel: Channel, token: AttachToken) -> AdminClient {
    AdminServiceClient::with_interceptor(channel, token)
}

/// An audit-service client on `channel`.
pub fn audit_client(channel: Channel, token: AttachToken) -> AuditClient {
    AuditServiceClient::with_interceptor(channel, token)
}

/// The reply of a gRPC call, or its failure translated for the client.
pub async fn call<T>(
    rpc: Rpc,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ApiError> {
    call.await
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::from_grpc(rpc, status))
}
