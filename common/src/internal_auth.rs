//! The shared-secret gate on internal gRPC. When `INTERNAL_TOKEN` is set,
//! servers refuse calls that do not present it and clients attach it.

use subtle::ConstantTimeEq;
use tonic::{Request, Status, metadata::MetadataValue, service::Interceptor};

use crate::config::Secret;

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
