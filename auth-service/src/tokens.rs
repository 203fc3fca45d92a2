//! JWTs signed with the algorithm `JWT_ALGORITHM` names (EdDSA by default,
//! or ES256 / RS256 for verifiers that lack EdDSA): signing keys persisted
//! in the auth database, so restarts and replicas share them.
//!
//! Key rollover, as Keycloak and Zitadel do it: `rotate-keys` adds a key that
//! is published at once but signs only from its `not_before`, after
//! `AUTH_KEY_PUBLISH_DELAY`, so every verifier that caches the key set (the
//! gateway, HTTP caches honouring `max-age`, PyJWT, jose) has it before the
//! first token it signs. A superseded key stays published and accepted until
//! every token it can have signed has expired ([`TokenPolicy::retention`]).
//! A changed `JWT_ALGORITHM` is a rollover like any other
//! ([`ensure_signing_key`]): nobody is logged out.
//!
//! Each key signs and verifies with its own algorithm only: a token is
//! checked with the algorithm of the key its `kid` names, never the one
//! its header claims (the header must agree, or the token is refused).

mod algorithm;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use jsonwebtoken::Validation;

pub use algorithm::{KeyAlgorithm, PublicParams, RSA_BITS, UnknownAlgorithm};
use algorithm::{KeyMaterial, generate, kid_of};

use crate::{
    error::Error,
    store::{AuthStore, SigningKeyRow, TokenOwner},
};

/// The claims and token types, shared with the gateway that verifies them.
pub use common::claims::{ACCESS, Claims, REFRESH};

/// A public key in JWK form (RFC 7517).
#[derive(Debug, Clone)]
pub struct PublicJwk {
    /// Key id.
    pub kid: String,
    /// The one algorithm it signs and verifies with.
    pub alg: KeyAlgorithm,
    /// The key itself.
    pub params: PublicParams,
}

/// One key as loaded, with the times that decide what it does.
struct LoadedKey {
    /// Signs tokens from this time on (Unix seconds), until a later key does.
    not_before: i64,
    /// When every token it can have signed has expired (Unix seconds):
    /// from then on it is neither published nor accepted. `None` while no
    /// later key has been added.
    retired_at: Option<i64>,
    kid: String,
    /// Parsed once; shared with the next load when the key is still there.
    material: Arc<KeyMaterial>,
}

impl LoadedKey {
    fn live(&self, now: i64) -> bool {
        self.retired_at.is_none_or(|at| now < at)
    }

    fn jwk(&self) -> PublicJwk {
        PublicJwk {
            kid: self.kid.clone(),
            alg: self.material.algorithm,
            params: self.material.params.clone(),
        }
    }
}

/// One loaded generation of keys, latest `not_before` first. Which key
/// signs and which are published depend on the time, so they are decided
/// at each use, never at load: a key becomes the signer at its exact
/// `not_before` whenever the keys were last read.
struct Keys {
    keys: Vec<LoadedKey>,
    by_kid: HashMap<String, usize>,
}

impl Keys {
    /// The key that signs at `now`: the latest whose `not_before` has
    /// passed. Were none active yet (a clock behind the one that added
    /// them), the earliest: tokens are still signed with a published key.
    fn signer(&self, now: i64) -> Option<&LoadedKey> {
        self.keys
            .iter()
            .find(|k| k.not_before <= now)
            .or_else(|| self.keys.last())
    }

    /// A key that verifies at `now`.
    fn verifying(&self, kid: &str, now: i64) -> Option<&LoadedKey> {
        self.by_kid
            .get(kid)
            .map(|&i| &self.keys[i])
            .filter(|k| k.live(now))
    }
}

/// Least time between two reloads caused by tokens with unknown `kid`s, so
/// a flood of forged kids cannot turn into a flood of database reads.
const MIN_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The loaded keys plus token policy. Keys are swapped whole on reload
/// (periodically, and when a token names a key not loaded yet), so a key
/// added by `auth-service rotate-keys` signs without a restart.
pub struct TokenService {
    keys: RwLock<Arc<Keys>>,
    last_reload: Mutex<std::time::Instant>,
    issuer: String,
    access_ttl: i64,
    refresh_ttl: i64,
    /// Seconds a superseded key stays published ([`TokenPolicy::retention`]).
    retention: i64,
    /// What a token must satisfy, one per algorithm: the algorithm list of
    /// each holds that algorithm alone, so jsonwebtoken refuses a header
    /// naming any other.
    validations: HashMap<KeyAlgorithm, Validation>,
}

/// A freshly issued pair.
pub struct IssuedPair {
    /// Access JWT.
    pub access: String,
    /// Refresh JWT.
    pub refresh: String,
    /// The refresh token's expiry, Unix seconds (to persist it).
    pub refresh_exp: i64,
    /// The access token's `jti` (a password change keeps it alive).
    pub access_jti: String,
}

/// Makes a new random signing key of `algorithm`, added at `now` and
/// signing from `not_before`; its id is derived from the public key. It
/// supersedes nothing: see [`next_key`] for a key added to a database.
/// RSA keys take a while to make: call it off the async workers.
pub fn generate_key(
    algorithm: KeyAlgorithm,
    now: i64,
    not_before: i64,
) -> anyhow::Result<SigningKeyRow> {
    let new = generate(algorithm)?;
    Ok(SigningKeyRow {
        kid: kid_of(&new.public),
        secret: new.secret,
        created_at: now,
        not_before,
        alg: algorithm,
        supersedes: None,
    })
}

/// The key to add to `rows` (as the store lists them) at `now`, signing
/// from `not_before`: added strictly after every existing key, even within
/// one second, and naming the key added last as the one it supersedes, so
/// that of two replicas adding a key on the same rows only one succeeds
/// (the store refuses a second key superseding the same one).
pub async fn next_key(
    rows: &[SigningKeyRow],
    algorithm: KeyAlgorithm,
    now: i64,
    not_before: i64,
) -> anyhow::Result<SigningKeyRow> {
    let last = rows
        .iter()
        .max_by(|a, b| (a.created_at, a.kid.as_str()).cmp(&(b.created_at, b.kid.as_str())));
    let created_at = now.max(last.map_or(0, |k| k.created_at + 1));
    let supersedes = last.map_or_else(String::new, |k| k.kid.clone());
    let mut key =
        tokio::task::spawn_blocking(move || generate_key(algorithm, created_at, not_before))
            .await??;
    key.supersedes = Some(supersedes);
    Ok(key)
}

/// Most times [`ensure_signing_key`] re-reads after losing a race, in case
/// replicas configured with different algorithms keep adding keys.
const ENSURE_TRIES: usize = 5;

/// Makes sure the newest key (the one that signs last) is of `algorithm`
/// and returns the keys. A fresh database gets its first key, signing at
/// once (no verifier can have cached an older set). A database whose
/// newest key is of another algorithm (`JWT_ALGORITHM` was changed) gets a
/// key of this one, published now and signing after `publish_delay`, as
/// `rotate-keys` adds it: tokens signed before keep verifying until they
/// expire, so nobody is logged out. Replicas starting together add one key
/// between them: the store takes the first key superseding a given key,
/// and the others re-read and find it.
pub async fn ensure_signing_key<S: AuthStore>(
    store: &S,
    algorithm: KeyAlgorithm,
    publish_delay: std::time::Duration,
    now: i64,
) -> anyhow::Result<Vec<SigningKeyRow>> {
    let delay = i64::try_from(publish_delay.as_secs())?;
    for _ in 0..ENSURE_TRIES {
        let rows = store.signing_keys().await?;
        let not_before = match rows.first() {
            Some(newest) if newest.alg == algorithm => return Ok(rows),
            Some(newest) => (now + delay).max(newest.not_before + 1),
            None => now,
        };
        let key = next_key(&rows, algorithm, now, not_before).await?;
        if store.add_signing_key(&key).await? {
            match rows.first() {
                Some(newest) => tracing::info!(
                    kid = %key.kid,
                    from = %newest.alg,
                    to = %algorithm,
                    not_before,
                    "JWT_ALGORITHM differs from the newest signing key's: added a key, \
                     published now, signing from not_before; older keys verify until \
                     their tokens expire"
                ),
                None => tracing::info!(kid = %key.kid, alg = %algorithm, "first signing key added"),
            }
        }
    }
    let rows = store.signing_keys().await?;
    if rows.first().is_some_and(|newest| newest.alg != algorithm) {
        tracing::warn!(
            configured = %algorithm,
            newest = ?rows.first().map(|k| k.alg),
            "other replicas keep adding keys of another algorithm: is JWT_ALGORITHM \
             the same on every replica? Signing with the newest key"
        );
    }
    Ok(rows)
}

/// Loads `rows` (latest `not_before` first, as the store lists them),
/// reusing the parsed keys of `previous` for keys still there (a key's row
/// never changes). A key stops signing when the key before it in that
/// order starts; it retires `retention` seconds later.
fn build_keys(
    rows: &[SigningKeyRow],
    retention: i64,
    previous: Option<&Keys>,
) -> anyhow::Result<Keys> {
    let mut keys = Vec::with_capacity(rows.len());
    let mut by_kid = HashMap::new();
    let mut successor_starts: Option<i64> = None;
    for row in rows {
        let known = previous
            .and_then(|p| p.by_kid.get(&row.kid).map(|&i| &p.keys[i].material))
            .filter(|m| m.algorithm == row.alg);
        let material = match known {
            Some(material) => material.clone(),
            None => Arc::new(KeyMaterial::load(&row.kid, row.alg, &row.secret)?),
        };
        by_kid.insert(row.kid.clone(), keys.len());
        keys.push(LoadedKey {
            not_before: row.not_before,
            retired_at: successor_starts.map(|at| at.saturating_add(retention)),
            kid: row.kid.clone(),
            material,
        });
        successor_starts = Some(row.not_before);
    }
    if keys.is_empty() {
        anyhow::bail!("no signing key in the database");
    }
    Ok(Keys { keys, by_kid })
}

/// The checks every token gets, for a key of `algorithm`.
fn validation(algorithm: KeyAlgorithm, issuer: &str) -> Validation {
    let mut validation = Validation::new(algorithm.jwt());
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.leeway = 5;
    validation
}

/// What the token service needs besides the keys.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// The `iss` written and required (`JWT_ISSUER`).
    pub issuer: String,
    /// `JWT_ACCESS_TTL`.
    pub access_ttl: std::time::Duration,
    /// `JWT_REFRESH_TTL`.
    pub refresh_ttl: std::time::Duration,
    /// `AUTH_KEY_RELOAD_INTERVAL`: a replica may sign with a superseded key
    /// for this long after its successor starts, until it re-reads the keys.
    pub key_reload_interval: std::time::Duration,
    /// `JWT_ALGORITHM`: what the newest key signs with.
    pub algorithm: KeyAlgorithm,
    /// `AUTH_KEY_PUBLISH_DELAY`: how long a key added for a changed
    /// algorithm is published before it signs.
    pub publish_delay: std::time::Duration,
}

/// Slack on top of the longest token lifetime before a superseded key is
/// retired: clock skew between replicas and the verifiers' leeway.
const RETIREMENT_SLACK_SECS: i64 = 300;

impl TokenPolicy {
    /// Seconds a superseded key stays published: until every token it can
    /// have signed has expired. Both token types are signed with the same
    /// key, so the longer lifetime counts.
    fn retention(&self) -> anyhow::Result<i64> {
        let longest = self.access_ttl.max(self.refresh_ttl) + self.key_reload_interval;
        Ok(i64::try_from(longest.as_secs())?.saturating_add(RETIREMENT_SLACK_SECS))
    }
}

impl TokenService {
    /// Loads the keys, first adding one of the configured algorithm when
    /// the database has none or its newest key is of another algorithm
    /// (see [`ensure_signing_key`]).
    pub async fn load<S: AuthStore>(
        store: &S,
        policy: &TokenPolicy,
        now: i64,
    ) -> anyhow::Result<Self> {
        let rows = ensure_signing_key(store, policy.algorithm, policy.publish_delay, now).await?;
        Self::from_rows(&rows, policy)
    }

    /// A service over `rows` as the store lists them (latest `not_before`
    /// first), for tools and benchmarks that hold keys without a database.
    pub fn from_rows(rows: &[SigningKeyRow], policy: &TokenPolicy) -> anyhow::Result<Self> {
        let retention = policy.retention()?;
        Ok(Self {
            keys: RwLock::new(Arc::new(build_keys(rows, retention, None)?)),
            last_reload: Mutex::new(std::time::Instant::now()),
            issuer: policy.issuer.clone(),
            access_ttl: i64::try_from(policy.access_ttl.as_secs())?,
            refresh_ttl: i64::try_from(policy.refresh_ttl.as_secs())?,
            retention,
            validations: KeyAlgorithm::ALL
                .into_iter()
                .map(|alg| (alg, validation(alg, &policy.issuer)))
                .collect(),
        })
    }

    fn current(&self) -> Arc<Keys> {
        // A poisoned lock still holds a complete `Arc` (it is swapped whole).
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the keys from the store and swaps them in.
    pub async fn reload<S: AuthStore>(&self, store: &S) -> anyhow::Result<()> {
        let rows = store.signing_keys().await?;
        if rows.is_empty() {
            return Ok(());
        }
        let keys = Arc::new(build_keys(&rows, self.retention, Some(&self.current()))?);
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
        Ok(())
    }

    /// Whether `token` names a `kid` not loaded here and a reload is due
    /// (not more often than every [`MIN_RELOAD_INTERVAL`]).
    pub fn should_reload_for(&self, token: &str) -> bool {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        let Some(kid) = header.kid else {
            return false;
        };
        !self.current().by_kid.contains_key(&kid)
            && self
                .last_reload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .elapsed()
                >= MIN_RELOAD_INTERVAL
    }

    /// The public keys to publish at `now` (JWKS): the signer, keys added
    /// to sign later, and superseded keys until they retire.
    pub fn jwks(&self, now: i64) -> Vec<PublicJwk> {
        self.current()
            .keys
            .iter()
            .filter(|k| k.live(now))
            .map(LoadedKey::jwk)
            .collect()
    }

    /// The `kid` that signs tokens issued at `now`.
    pub fn signing_kid(&self, now: i64) -> String {
        self.current()
            .signer(now)
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    fn sign(&self, claims: &Claims) -> Result<String, Error> {
        let keys = self.current();
        let key = keys
            .signer(claims.iat)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no signing key loaded")))?;
        key.material
            .signer
            .sign(claims)
            .map_err(|e| Error::Internal(e.context("signing")))
    }

    /// Refresh token lifetime in seconds.
    pub fn refresh_ttl(&self) -> i64 {
        self.refresh_ttl
    }

    /// Issues an access + refresh pair for `user` (an account, or the owner
    /// read while rotating) at `now`; the refresh token gets `refresh_jti`,
    /// which the caller has persisted or will.
    pub fn issue(
        &self,
        user: impl Into<TokenOwner>,
        now: i64,
        refresh_jti: String,
    ) -> Result<IssuedPair, Error> {
        self.issue_with_refresh(user.into(), now, refresh_jti, now, now + self.refresh_ttl)
    }

    /// A fresh access token at `now` with the refresh token a rotation
    /// issued at `refresh_iat` (expiring at `refresh_exp`) as `refresh_jti`:
    /// the same claims signed by the key that signed at `refresh_iat`,
    /// and every algorithm here signs deterministically, so while that key is
    /// loaded this is byte for byte the token first issued (else one with
    /// the same claims under today's key, which the store treats alike:
    /// it knows tokens by `jti`).
    pub fn reissue(
        &self,
        user: TokenOwner,
        now: i64,
        refresh_jti: String,
        refresh_iat: i64,
        refresh_exp: i64,
    ) -> Result<IssuedPair, Error> {
        self.issue_with_refresh(user, now, refresh_jti, refresh_iat, refresh_exp)
    }

    /// A fresh access token alone for `user` at `now`: a refresh that does
    /// not rotate (`JWT_ROTATE_REFRESH_TOKENS=false`) keeps its refresh
    /// token, so signing another would be wasted work.
    pub fn issue_access(&self, user: &TokenOwner, now: i64) -> Result<String, Error> {
        self.sign(&self.access_claims(user, now))
    }

    fn claims(
        &self,
        user: &TokenOwner,
        token_type: &str,
        iat: i64,
        exp: i64,
        jti: String,
    ) -> Claims {
        Claims {
            token_type: token_type.to_owned(),
            exp,
            iat,
            jti,
            user_id: user.id,
            iss: self.issuer.clone(),
            is_staff: user.is_staff,
            username: user.username.clone(),
        }
    }

    fn access_claims(&self, user: &TokenOwner, now: i64) -> Claims {
        let jti = uuid::Uuid::new_v4().simple().to_string();
        self.claims(user, ACCESS, now, now + self.access_ttl, jti)
    }

    fn issue_with_refresh(
        &self,
        user: TokenOwner,
        now: i64,
        refresh_jti: String,
        refresh_iat: i64,
        refresh_exp: i64,
    ) -> Result<IssuedPair, Error> {
        let access = self.access_claims(&user, now);
        let refresh = self.claims(&user, REFRESH, refresh_iat, refresh_exp, refresh_jti);
        Ok(IssuedPair {
            access: self.sign(&access)?,
            refresh: self.sign(&refresh)?,
            refresh_exp: refresh.exp,
            access_jti: access.jti,
        })
    }

    /// Verifies signature (a known `kid`, with that key's algorithm, which
    /// the header must name), issuer, expiry and `token_type`: a good token
    /// of the other type is [`Error::WrongTokenType`] (simplejwt tells that
    /// case apart), every other failure the same [`Error::InvalidToken`].
    pub fn verify(&self, token: &str, token_type: &str) -> Result<Claims, Error> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken)?;
        let keys = self.current();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.verifying(kid, now))
            .map(|k| &k.material)
            .ok_or(Error::InvalidToken)?;
        let validation = self
            .validations
            .get(&key.algorithm)
            .ok_or(Error::InvalidToken)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.verifying, validation)
            .map_err(|_| Error::InvalidToken)?;
        if data.claims.token_type != token_type {
            return Err(Error::WrongTokenType);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests;
