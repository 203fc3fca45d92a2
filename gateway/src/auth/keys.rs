//! auth-service's public keys, cached by `kid` (see the module docs of
//! [`crate::auth`] for the refetch and rotation rules).

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, decode_header};
use proto::auth::v1::{GetJwksRequest, GetJwksResponse, Jwk};
use tokio::sync::Mutex;

use crate::{context::RequestContext, grpc::AuthClient};

/// Default `GATEWAY_JWKS_CACHE_TTL`: how long fetched keys are trusted
/// before the next use refreshes them (so a key auth-service retired stops
/// being accepted). auth-service's default publish delay (10 minutes)
/// covers this plus the JWKS `max-age`.
pub const DEFAULT_KEY_MAX_AGE: Duration = Duration::from_secs(60);
/// The least time between two fetches of the key set.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Longest `kid` looked up; longer ones cannot be ours.
const MAX_KID_LEN: usize = 128;

/// Where the public keys come from. The real one asks auth-service; tests
/// and tools can supply a fixed set.
pub trait JwkSource: Send + Sync + 'static {
    /// Fetches the current key set and its signer. `ctx` is the request
    /// that needed it, so the call carries that request's id and client.
    fn fetch<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> BoxFuture<'a, Result<GetJwksResponse, tonic::Status>>;
}

/// Keys from auth-service's `GetJwks`.
#[derive(Clone, Debug)]
pub struct GrpcJwkSource(pub AuthClient);

impl JwkSource for GrpcJwkSource {
    fn fetch<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> BoxFuture<'a, Result<GetJwksResponse, tonic::Status>> {
        let mut client = self.0.clone();
        Box::pin(async move {
            let response = client.get_jwks(ctx.grpc_request(GetJwksRequest {})).await?;
            Ok(response.into_inner())
        })
    }
}

/// A fixed key set, for tests and for running without auth-service; the
/// first key is the signer.
#[derive(Clone, Debug, Default)]
pub struct StaticJwks(pub Vec<Jwk>);

impl JwkSource for StaticJwks {
    fn fetch<'a>(
        &'a self,
        _: &'a RequestContext,
    ) -> BoxFuture<'a, Result<GetJwksResponse, tonic::Status>> {
        let response = GetJwksResponse {
            signing_kid: self.0.first().map(|k| k.kid.clone()).unwrap_or_default(),
            keys: self.0.clone(),
        };
        Box::pin(async move { Ok(response) })
    }
}

/// One published key, ready to verify: it verifies tokens of its own
/// algorithm only, whatever a token's header says.
pub struct VerifyingKey {
    /// The key.
    pub key: DecodingKey,
    /// The one algorithm it signs with (the JWK's `alg`).
    pub alg: Algorithm,
}

/// Fewest bits of an RSA key trusted (RFC 7518 section 3.3).
const MIN_RSA_BITS: usize = 2048;

/// What the cache holds after a successful fetch.
#[derive(Default)]
struct KeySet {
    /// The keys as published, for `/.well-known/jwks.json`.
    published: Arc<Vec<Jwk>>,
    /// The usable keys by `kid`.
    by_kid: HashMap<String, Arc<VerifyingKey>>,
    /// The `kid` auth-service said signs, when fetched.
    signing_kid: String,
    /// When they were fetched; `None` before the first success.
    fetched_at: Option<Instant>,
}

/// Why the cache could not answer.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key set has ever been fetched and auth-service cannot be reached
    /// (or the last attempt was too recent to retry).
    #[error("no signing keys available")]
    Unavailable,
}

/// auth-service's public keys, cached by `kid`.
pub struct KeyCache {
    source: Arc<dyn JwkSource>,
    keys: RwLock<KeySet>,
    /// Held while fetching so concurrent misses share one fetch; holds the
    /// time of the last attempt, successful or not.
    refresh: Mutex<Option<Instant>>,
    /// Set when auth-service issued a token whose `kid` is not in the
    /// cached set: the next use refetches, however fresh the set and however
    /// recent the last fetch (this comes from auth-service, not a client,
    /// and a fetch clears it).
    signer_changed: std::sync::atomic::AtomicBool,
    min_interval: Duration,
    max_age: Duration,
}

impl KeyCache {
    /// A cache that fetches from `source` when first needed.
    pub fn new(source: Arc<dyn JwkSource>) -> Self {
        Self {
            source,
            keys: RwLock::new(KeySet::default()),
            refresh: Mutex::new(None),
            signer_changed: std::sync::atomic::AtomicBool::new(false),
            min_interval: MIN_REFRESH_INTERVAL,
            max_age: DEFAULT_KEY_MAX_AGE,
        }
    }

    /// Overrides how long a fetched set is used (`GATEWAY_JWKS_CACHE_TTL`).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Notes the `kid` of a token auth-service has just issued (a login or
    /// refresh passing through): when the cached set lacks it, the keys
    /// rotated since the fetch (an immediate rotation), so the next use
    /// refetches before serving or verifying. Cheap: the header is decoded, nothing
    /// is verified, nothing is fetched here.
    pub fn note_issued(&self, token: &str) {
        let Some(kid) = decode_header(token).ok().and_then(|h| h.kid) else {
            return;
        };
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        if keys.fetched_at.is_some() && !keys.by_kid.contains_key(&kid) {
            tracing::debug!(%kid, cached_signer = %keys.signing_kid, "tokens signed by a key not cached; key set to be refetched");
            self.signer_changed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Overrides the least time between fetches (tests).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The key with id `kid`: from the cache when present and fresh, else
    /// after a refetch (at most one per interval). `Ok(None)` means the key
    /// is unknown: the token is not ours.
    pub async fn key(
        &self,
        kid: &str,
        ctx: &RequestContext,
    ) -> Result<Option<Arc<VerifyingKey>>, KeyError> {
        if kid.len() > MAX_KID_LEN {
            return Ok(None);
        }
        if !self.signer_changed()
            && let Some(key) = self.lookup(kid, true)
        {
            return Ok(Some(key));
        }
        self.refresh(ctx).await;
        match self.lookup(kid, false) {
            Some(key) => Ok(Some(key)),
            None if self.loaded() => Ok(None),
            None => Err(KeyError::Unavailable),
        }
    }

    /// The published key set (refreshed when stale; a stale set is served
    /// when auth-service cannot be reached).
    pub async fn published(&self, ctx: &RequestContext) -> Result<Arc<Vec<Jwk>>, KeyError> {
        if !self.fresh() || self.signer_changed() {
            self.refresh(ctx).await;
        }
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        match keys.fetched_at {
            Some(_) => Ok(keys.published.clone()),
            None => Err(KeyError::Unavailable),
        }
    }

    fn lookup(&self, kid: &str, only_fresh: bool) -> Option<Arc<VerifyingKey>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let fresh = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.max_age);
        if only_fresh && !fresh {
            return None;
        }
        keys.by_kid.get(kid).cloned()
    }

    fn signer_changed(&self) -> bool {
        self.signer_changed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn loaded(&self) -> bool {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.fetched_at.is_some()
    }

    fn fresh(&self) -> bool {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.fetched_at
            .is_some_and(|at| at.elapsed() < self.max_age)
    }

    /// Fetches the key set unless the last attempt was within the interval.
    /// Failures are logged and leave the old keys in place.
    async fn refresh(&self, ctx: &RequestContext) {
        let mut last = self.refresh.lock().await;
        // auth-service's own word that the set changed is acted on at once;
        // otherwise never more often than the interval, nor less often than
        // the cache lives.
        let interval = if self.signer_changed() {
            Duration::ZERO
        } else {
            self.min_interval.min(self.max_age)
        };
        if last.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        *last = Some(Instant::now());
        self.signer_changed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        match self.source.fetch(ctx).await {
            Ok(GetJwksResponse {
                keys: jwks,
                signing_kid,
            }) => {
                let by_kid: HashMap<_, _> = jwks
                    .iter()
                    .filter_map(|jwk| match usable_key(jwk) {
                        Some(key) => Some((jwk.kid.clone(), Arc::new(key))),
                        None => {
                            tracing::warn!(kid = %jwk.kid, kty = %jwk.kty, crv = %jwk.crv, alg = %jwk.alg, "ignoring a key that is not a usable EdDSA, ES256 or RS256 key");
                            None
                        }
                    })
                    .collect();
                tracing::debug!(keys = by_kid.len(), %signing_kid, "signing keys refreshed");
                let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                *keys = KeySet {
                    published: Arc::new(jwks),
                    by_kid,
                    signing_kid,
                    fetched_at: Some(Instant::now()),
                };
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "fetching signing keys failed");
            }
        }
    }
}

/// A verification key from a JWK, with the algorithm it is pinned to: an
/// Ed25519 (EdDSA), P-256 (ES256) or RSA key of 2048 bits or more (RS256)
/// whose members have the sizes of its type; `None` for anything else. An
/// `alg` is required of RSA keys (RS256 and PS256 share them); an older
/// auth-service's OKP keys without one are EdDSA.
fn usable_key(jwk: &Jwk) -> Option<VerifyingKey> {
    if !(jwk.r#use.is_empty() || jwk.r#use == "sig") || jwk.kid.is_empty() {
        return None;
    }
    let len = |member: &str| URL_SAFE_NO_PAD.decode(member).ok().map(|b| b.len());
    let (alg, key) = match (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str()) {
        ("OKP", "Ed25519", "EdDSA" | "") if len(&jwk.x) == Some(32) => (
            Algorithm::EdDSA,
            DecodingKey::from_ed_components(&jwk.x).ok()?,
        ),
        ("EC", "P-256", "ES256" | "") if len(&jwk.x) == Some(32) && len(&jwk.y) == Some(32) => (
            Algorithm::ES256,
            DecodingKey::from_ec_components(&jwk.x, &jwk.y).ok()?,
        ),
        ("RSA", "", "RS256")
            if len(&jwk.n).is_some_and(|n| n * 8 >= MIN_RSA_BITS)
                && len(&jwk.e).is_some_and(|e| (1..=8).contains(&e)) =>
        {
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_components(&jwk.n, &jwk.e).ok()?,
            )
        }
        _ => return None,
    };
    Some(VerifyingKey { key, alg })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts fetches and serves whatever keys it holds (or fails).
    struct Counting {
        calls: AtomicUsize,
        keys: std::sync::Mutex<Result<Vec<Jwk>, ()>>,
    }

    impl JwkSource for Counting {
        fn fetch<'a>(
            &'a self,
            _: &'a RequestContext,
        ) -> BoxFuture<'a, Result<GetJwksResponse, tonic::Status>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let keys = self.keys.lock().unwrap().clone();
            // The first key signs, as with `StaticJwks`.
            let response = keys
                .map(|keys| GetJwksResponse {
                    signing_kid: keys.first().map(|k| k.kid.clone()).unwrap_or_default(),
                    keys,
                })
                .map_err(|()| tonic::Status::unavailable("down"));
            Box::pin(async move { response })
        }
    }

    fn jwk(kid: &str) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            // Any 32 bytes form a syntactically valid public key.
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            kid: kid.into(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
            ..Jwk::default()
        }
    }

    /// A P-256 key as auth-service publishes it (the curve's generator).
    fn ec_jwk(kid: &str) -> Jwk {
        Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY".into(),
            y: "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU".into(),
            kid: kid.into(),
            alg: "ES256".into(),
            r#use: "sig".into(),
            ..Jwk::default()
        }
    }

    /// An RSA key of `bits` bits (any odd modulus parses).
    fn rsa_jwk(kid: &str, bits: usize) -> Jwk {
        let mut n = vec![0xC5u8; bits / 8];
        n[bits / 8 - 1] = 0x01;
        Jwk {
            kty: "RSA".into(),
            n: URL_SAFE_NO_PAD.encode(n),
            e: "AQAB".into(),
            kid: kid.into(),
            alg: "RS256".into(),
            r#use: "sig".into(),
            ..Jwk::default()
        }
    }

    fn source(keys: Result<Vec<Jwk>, ()>) -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            keys: std::sync::Mutex::new(keys),
        })
    }

    #[tokio::test]
    async fn known_keys_are_served_from_the_cache() {
        let src = source(Ok(vec![jwk("k1")]));
        let cache = KeyCache::new(src.clone());
        let ctx = RequestContext::detached();
        for _ in 0..5 {
            assert!(cache.key("k1", &ctx).await.unwrap().is_some());
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let src = source(Ok(vec![jwk("k1")]));
        let cache = KeyCache::new(src.clone());
        let ctx = RequestContext::detached();
        for i in 0..20 {
            assert!(
                cache
                    .key(&format!("forged-{i}"), &ctx)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_after_the_interval() {
        let src = source(Ok(vec![jwk("k1")]));
        let cache = KeyCache::new(src.clone()).with_min_refresh_interval(Duration::ZERO);
        let ctx = RequestContext::detached();
        assert!(cache.key("k2", &ctx).await.unwrap().is_none());
        *src.keys.lock().unwrap() = Ok(vec![jwk("k1"), jwk("k2")]);
        assert!(cache.key("k2", &ctx).await.unwrap().is_some());
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    /// A token whose header names `kid` (nothing else is read of it).
    fn issued_by(kid: &str) -> String {
        use base64::Engine as _;
        let header = format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{kid}"}}"#);
        format!(
            "{}.e30.c2ln",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
        )
    }

    #[tokio::test]
    async fn a_token_issued_by_a_new_signer_makes_the_fresh_set_refetch() {
        let src = source(Ok(vec![jwk("k1")]));
        let cache = KeyCache::new(src.clone());
        let ctx = RequestContext::detached();
        assert_eq!(cache.published(&ctx).await.unwrap().len(), 1);
        // A cached key issued it: the fresh set is served as is.
        cache.note_issued(&issued_by("k1"));
        cache.note_issued("not a token");
        assert_eq!(cache.published(&ctx).await.unwrap().len(), 1);
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);

        // An immediate rotation: auth-service signs with k2 at once.
        *src.keys.lock().unwrap() = Ok(vec![jwk("k2"), jwk("k1")]);
        cache.note_issued(&issued_by("k2"));
        let kids: Vec<_> = cache
            .published(&ctx)
            .await
            .unwrap()
            .iter()
            .map(|k| k.kid.clone())
            .collect();
        assert_eq!(kids, ["k2", "k1"]);
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
        // Once: the new set holds k2.
        cache.note_issued(&issued_by("k2"));
        assert!(cache.key("k2", &ctx).await.unwrap().is_some());
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_set_is_refetched_after_its_max_age() {
        let src = source(Ok(vec![jwk("k1")]));
        let cache = KeyCache::new(src.clone())
            .with_max_age(Duration::from_millis(50))
            .with_min_refresh_interval(Duration::ZERO);
        let ctx = RequestContext::detached();
        cache.published(&ctx).await.unwrap();
        *src.keys.lock().unwrap() = Ok(vec![jwk("k2"), jwk("k1")]);
        assert_eq!(cache.published(&ctx).await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.published(&ctx).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn without_any_keys_a_failing_source_means_unavailable() {
        let src = source(Err(()));
        let cache = KeyCache::new(src.clone());
        let ctx = RequestContext::detached();
        assert!(matches!(
            cache.key("k1", &ctx).await,
            Err(KeyError::Unavailable)
        ));
        assert!(matches!(
            cache.published(&ctx).await,
            Err(KeyError::Unavailable)
        ));
        // The second miss was within the interval: no second fetch.
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn keys_survive_a_failed_refresh() {
        let src = source(Ok(vec![jwk("k1")]));
        let cache = KeyCache::new(src.clone()).with_min_refresh_interval(Duration::ZERO);
        let ctx = RequestContext::detached();
        assert!(cache.key("k1", &ctx).await.unwrap().is_some());
        *src.keys.lock().unwrap() = Err(());
        assert!(cache.key("other", &ctx).await.unwrap().is_none());
        assert!(cache.key("k1", &ctx).await.unwrap().is_some());
        assert_eq!(cache.published(&ctx).await.unwrap().len(), 1);
    }

    #[test]
    fn each_key_is_pinned_to_the_algorithm_of_its_type() {
        let alg = |jwk: &Jwk| usable_key(jwk).map(|k| k.alg);
        assert_eq!(alg(&jwk("k")), Some(Algorithm::EdDSA));
        assert_eq!(alg(&ec_jwk("k")), Some(Algorithm::ES256));
        assert_eq!(alg(&rsa_jwk("k", 2048)), Some(Algorithm::RS256));
        assert_eq!(alg(&rsa_jwk("k", 4096)), Some(Algorithm::RS256));
        // An older auth-service's OKP keys named no algorithm.
        assert_eq!(
            alg(&Jwk {
                alg: String::new(),
                ..jwk("k")
            }),
            Some(Algorithm::EdDSA)
        );
    }

    #[test]
    fn keys_of_another_type_algorithm_or_size_are_not_usable() {
        let unusable = [
            Jwk {
                kty: "RSA".into(),
                ..jwk("k")
            },
            Jwk {
                crv: "X25519".into(),
                ..jwk("k")
            },
            Jwk {
                alg: "HS256".into(),
                ..jwk("k")
            },
            Jwk {
                alg: "ES256".into(),
                ..jwk("k")
            },
            Jwk {
                r#use: "enc".into(),
                ..jwk("k")
            },
            Jwk {
                x: "!!".into(),
                ..jwk("k")
            },
            Jwk {
                x: "AAAA".into(),
                ..jwk("k")
            },
            Jwk {
                kid: String::new(),
                ..jwk("k")
            },
            Jwk {
                alg: "EdDSA".into(),
                ..ec_jwk("k")
            },
            Jwk {
                crv: "P-384".into(),
                alg: "ES384".into(),
                ..ec_jwk("k")
            },
            Jwk {
                y: String::new(),
                ..ec_jwk("k")
            },
            Jwk {
                alg: "PS256".into(),
                ..rsa_jwk("k", 2048)
            },
            Jwk {
                alg: String::new(),
                ..rsa_jwk("k", 2048)
            },
            Jwk {
                e: String::new(),
                ..rsa_jwk("k", 2048)
            },
            rsa_jwk("k", 1024),
            Jwk {
                crv: "P-256".into(),
                ..rsa_jwk("k", 2048)
            },
        ];
        for jwk in &unusable {
            assert!(usable_key(jwk).is_none(), "{jwk:?}");
        }
    }
}
