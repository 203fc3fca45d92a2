//! [`AppState`]: what every handler can reach, built once from the
//! configuration. It lives apart from the crate root so that handlers and
//! the root that assembles them do not import each other.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRef;
use common::internal_auth::AttachToken;

use crate::{
    auth::{GrpcJwkSource, KeyCache, TokenVerifier},
    client_ip::ProxyRules,
    config::{self, Config},
    grpc::{self, AdminClient, AuditClient, AuthClient},
    readiness,
};

/// What every handler can reach. axum clones the state for every request,
/// so it is one `Arc`: one reference count per request instead of four
/// channel clones (each a buffer handle, a semaphore and a URI) and drops.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    /// auth-service.
    pub(crate) auth: AuthClient,
    /// auth-service's user administration (same channel).
    pub(crate) admin: AdminClient,
    /// audit-service.
    pub(crate) audit: AuditClient,
    /// Access-token verification on cached signing keys.
    pub(crate) verifier: Arc<TokenVerifier>,
    /// Proxies whose forwarding headers are believed, and which header.
    pub(crate) trusted: Arc<ProxyRules>,
    /// The backends' health, for `/readyz`.
    pub(crate) readiness: readiness::Readiness,
    /// Where clients reach us (`GATEWAY_PUBLIC_URL`), for absolute links;
    /// `None`: links are relative.
    pub(crate) public_url: Option<config::PublicUrl>,
    /// How often an open live tail re-checks its token
    /// (`GATEWAY_STREAM_RECHECK`).
    pub(crate) stream_recheck: std::time::Duration,
    /// The old service's answer shapes, where configured.
    pub(crate) shapes: crate::compat::Shapes,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Clients for the configured backends (connecting lazily, so this
    /// succeeds while they are down) and a key cache fed by auth-service.
    /// Must run inside a Tokio runtime.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let token = AttachToken::new(config.internal_token.as_ref())?;
        let auth_channel =
            grpc::channel(&config.auth_grpc_url, &config.internal_tls).context("AUTH_GRPC_URL")?;
        let audit_channel = grpc::channel(&config.audit_grpc_url, &config.internal_tls)
            .context("AUDIT_GRPC_URL")?;
        let auth = grpc::auth_client(auth_channel.clone(), token.clone());
        let admin = grpc::admin_client(auth_channel.clone(), token.clone());
        let audit = grpc::audit_client(audit_channel.clone(), token);
        let keys = Arc::new(
            KeyCache::new(Arc::new(GrpcJwkSource(auth.clone())))
                .with_max_age(config.jwks_cache_ttl),
        );
        Ok(Self(Arc::new(Shared {
            auth,
            admin,
            audit,
            verifier: Arc::new(TokenVerifier::new(keys, &config.jwt_issuer)),
            trusted: Arc::new(ProxyRules {
                trusted: config.trusted_proxies.clone(),
                header: config.forwarded_header,
            }),
            readiness: readiness::Readiness::new(auth_channel, audit_channel),
            public_url: config.public_url.clone(),
            stream_recheck: config.stream_recheck,
            shapes: config.shapes,
        })))
    }
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<AppState> for readiness::Readiness {
    fn from_ref(state: &AppState) -> Self {
        state.readiness.clone()
    }
}
