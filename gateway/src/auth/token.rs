//! Access tokens verified locally against the cached keys.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};

use super::keys::{KeyCache, KeyError};
use crate::{context::RequestContext, error::ApiError};

/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims, as auth-service signs them.
pub use common::claims::Claims;

/// Checks access tokens against the cached keys.
pub struct TokenVerifier {
    keys: Arc<KeyCache>,
    validation: Validation,
}

impl TokenVerifier {
    /// A verifier accepting EdDSA tokens from `issuer` signed by a key in
    /// `keys`.
    pub fn new(keys: Arc<KeyCache>, issuer: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_exp = true;
        // Our tokens carry no audience; ignore one rather than reject it.
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        Self { keys, validation }
    }

    /// The key cache, shared with `/.well-known/jwks.json`.
    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    /// The claims of `token` if it is a valid access token.
    pub async fn verify(&self, token: &str, ctx: &RequestContext) -> Result<Claims, ApiError> {
        // The header is read before the signature is checked, so nothing in
        // it is trusted beyond choosing which of OUR keys to try.
        let header = decode_header(token).map_err(|_| ApiError::TokenNotValid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::TokenNotValid);
        }
        let kid = header.kid.ok_or(ApiError::TokenNotValid)?;
        let key = match self.keys.key(&kid, ctx).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                tracing::debug!(%kid, "token signed by an unknown key");
                return Err(ApiError::TokenNotValid);
            }
            Err(KeyError::Unavailable) => return Err(ApiError::Unavailable),
        };
        let data = decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            tracing::debug!(reason = ?e.kind(), "token refused");
            ApiError::TokenNotValid
        })?;
        if data.claims.token_type != common::claims::ACCESS {
            return Err(ApiError::AccessTokenWrongType);
        }
        Ok(data.claims)
    }
}
