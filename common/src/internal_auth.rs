//! The shared-secret gate on internal gRPC. When `INTERNAL_TOKEN` is set,
//! servers refuse calls that do not present it and clients attach it.

use std::net::SocketAddr;

use subtle::ConstantTimeEq;
use tonic::{Request, Status, metadata::MetadataValue, service::Interceptor};

use crate::{
    config::{ConfigError, Secret, var},
    tls::ServerTls,
};

/// The explicit opt-out from [`require_gate`]: internal gRPC on a network
/// address with no token and no client certificates.
pub const ALLOW_OPEN: &str = "INTERNAL_ALLOW_OPEN";

/// Refuses to start an internal gRPC server that anyone who can reach it
/// could call: one listening on a non-loopback address (`addr_var`) with
/// neither `INTERNAL_TOKEN` nor mutual TLS, unless `INTERNAL_ALLOW_OPEN` is
/// `true`. Open internal gRPC lets a caller read the whole log, store
/// forged attempts and pick its own client address for every limit. The
/// token of the example manifests is refused too.
pub fn require_gate(
    addr_var: &str,
    addr: SocketAddr,
    token: Option<&Secret>,
    tls: Option<&ServerTls>,
) -> Result<(), ConfigError> {
    if let Some(token) = token
        && token.expose().starts_with("change-me")
    {
        return Err(ConfigError::new(
            "INTERNAL_TOKEN",
            "change-me…",
            "is the example placeholder: set a long random secret (e.g. `openssl rand -hex 32`)",
        ));
    }
    let mutual_tls = tls.is_some_and(|t| t.client_ca.is_some());
    if addr.ip().is_loopback() || token.is_some() || mutual_tls {
        return Ok(());
    }
    match var(ALLOW_OPEN).as_deref().map(str::trim) {
        Some("true") => {
            tracing::warn!(
                listen = %addr,
                "{ALLOW_OPEN}=true: internal gRPC on a network address accepts any caller"
            );
            Ok(())
        }
        Some(other) if other != "false" => Err(ConfigError::new(
            ALLOW_OPEN,
            other,
            "expected true or false",
        )),
        _ => Err(ConfigError::new(
            "INTERNAL_TOKEN",
            "",
            format!(
                "required when {addr_var} ({addr}) is not a loopback address: set a long random \
                 secret (e.g. `openssl rand -hex 32`), or require client certificates \
                 (mutual TLS), or set {ALLOW_OPEN}=true to accept any caller"
            ),
        )),
    }
}

/// Server side: checks `authorization: Bearer <token>` in constant time.
/// With no token configured every call passes (local development default).
#[derive(Clone, Debug)]
pub struct RequireToken(pub Option<Secret>);

impl Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else {
            return Ok(req);
        };
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong internal token"))
        }
    }
}

/// Client side: attaches the token, when one is configured, to every call,
/// and the caller's trace context (see [`crate::trace_context::inject`]):
/// this is the one interceptor every internal client runs.
#[derive(Clone, Debug)]
pub struct AttachToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl AttachToken {
    /// Prepares the header once; a token that is not valid header text is
    /// refused here rather than on every call.
    pub fn new(token: Option<&Secret>) -> Result<Self, crate::config::ConfigError> {
        let value = token
            .map(|t| {
                format!("Bearer {}", t.expose()).parse().map_err(|_| {
                    crate::config::ConfigError::new(
                        "INTERNAL_TOKEN",
                        "***",
                        "must be printable ASCII",
                    )
                })
            })
            .transpose()?;
        Ok(Self(value))
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        crate::trace_context::inject(req.metadata_mut());
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_listener_needs_a_token_or_client_certificates() {
        let token = Secret::new("a-long-random-secret-0123456789");
        // Loopback needs nothing.
        assert!(require_gate("X_ADDR", addr("127.0.0.1:1"), None, None).is_ok());
        assert!(require_gate("X_ADDR", addr("[::1]:1"), None, None).is_ok());
        // A network address needs the token...
        let err = require_gate("X_ADDR", addr("0.0.0.0:1"), None, None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("INTERNAL_TOKEN") && text.contains("X_ADDR"),
            "{text}"
        );
        assert!(require_gate("X_ADDR", addr("0.0.0.0:1"), Some(&token), None).is_ok());
        // ...or mutual TLS; server TLS alone is not a gate.
        let mut tls = ServerTls {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            client_ca: None,
        };
        assert!(require_gate("X_ADDR", addr("10.0.0.1:1"), None, Some(&tls)).is_err());
        tls.client_ca = Some("ca.pem".into());
        assert!(require_gate("X_ADDR", addr("10.0.0.1:1"), None, Some(&tls)).is_ok());
        // The example placeholder is no secret, even on loopback.
        let placeholder = Secret::new("change-me-to-a-long-random-string");
        assert!(require_gate("X_ADDR", addr("127.0.0.1:1"), Some(&placeholder), None).is_err());
    }
}
