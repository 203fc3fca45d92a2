//! Access tokens verified locally against the cached keys.

use std::{collections::HashMap, sync::Arc};

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};

use super::keys::{KeyCache, KeyError};
use crate::{context::RequestContext, error::ApiError};

/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims, as auth-service signs them.
pub use common::claims::Claims;

/// The algorithms auth-service signs with (`JWT_ALGORITHM`); a token
/// naming any other is refused before any key is looked up.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// Checks access tokens against the cached keys.
pub struct TokenVerifier {
    keys: Arc<KeyCache>,
    /// One per algorithm, each allowing that algorithm alone.
    validations: HashMap<Algorithm, Validation>,
}

impl TokenVerifier {
    /// A verifier accepting tokens from `issuer` signed by a key in
    /// `keys`, each with that key's own algorithm.
    pub fn new(keys: Arc<KeyCache>, issuer: &str) -> Self {
        let validation = |alg| {
            let mut validation = Validation::new(alg);
            validation.set_issuer(&[issuer]);
            validation.set_required_spec_claims(&["exp", "iss"]);
            validation.validate_exp = true;
            // Our tokens carry no audience; ignore one rather than reject it.
            validation.validate_aud = false;
            validation.leeway = LEEWAY_SECS;
            validation
        };
        Self {
            keys,
            validations: ALGORITHMS.map(|alg| (alg, validation(alg))).into(),
        }
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
        if !ALGORITHMS.contains(&header.alg) {
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
        // The key's algorithm, never the header's: a header naming another
        // one than the key's (an HS256 token "signed" with our public key,
        // an ES256 header over an Ed25519 kid) is refused here.
        if header.alg != key.alg {
            tracing::debug!(%kid, header = ?header.alg, key = ?key.alg, "token names another algorithm than its key's");
            return Err(ApiError::TokenNotValid);
        }
        let validation = self
            .validations
            .get(&key.alg)
            .ok_or(ApiError::TokenNotValid)?;
        let data = decode::<Claims>(token, &key.key, validation).map_err(|e| {
            tracing::debug!(reason = ?e.kind(), "token refused");
            ApiError::TokenNotValid
        })?;
        if data.claims.token_type != common::claims::ACCESS {
            return Err(ApiError::AccessTokenWrongType);
        }
        Ok(data.claims)
    }
}
