//! Access tokens, verified locally.
//!
//! auth-service signs EdDSA JWTs and publishes the public keys (`GetJwks`).
//! The gateway keeps those keys in a [`KeyCache`] and checks tokens itself,
//! so an admin request costs no round trip. A token naming a key we have not
//! seen triggers a refetch (key rotation), but at most once per interval, so
//! a stream of forged `kid`s cannot turn the gateway into a load generator
//! against auth-service.
//!
//! The same cache serves `/.well-known/jwks.json`, so it must never serve a
//! set that lacks the key signing right now. A scheduled rotation publishes
//! the new key `AUTH_KEY_PUBLISH_DELAY` before it signs, longer than this
//! cache lives (`GATEWAY_JWKS_CACHE_TTL`); and every token pair passing back
//! through the gateway is checked against the cached signer
//! ([`KeyCache::note_issued`]), so an immediate rotation is picked up at the
//! first login or refresh after it.
//!
//! The extractors: [`AuthUser`] (any valid access token), [`AdminUser`]
//! (one with `is_staff`) and [`AdminSession`] (that, with the token for
//! later re-checks). Their state needs an `Arc<TokenVerifier>`.
//!
//! Layout: [`keys`] (the cache and where keys come from), [`token`]
//! (verification, using the keys), [`extract`] (the extractors, using the
//! verifier). The names are re-exported here.

pub mod extract;
pub mod keys;
pub mod token;

pub(crate) use extract::bearer_token;
pub use extract::{AdminSession, AdminUser, AuthUser};
pub use keys::{DEFAULT_KEY_MAX_AGE, GrpcJwkSource, JwkSource, KeyCache, KeyError, StaticJwks};
pub use token::{Claims, TokenVerifier};
