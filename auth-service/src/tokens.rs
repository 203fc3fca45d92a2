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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::User;
    use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
    use jsonwebtoken::{Algorithm, Header};

    const RETENTION: i64 = 90_000;

    fn policy(algorithm: KeyAlgorithm) -> TokenPolicy {
        TokenPolicy {
            issuer: "issuer".into(),
            access_ttl: std::time::Duration::from_secs(300),
            refresh_ttl: std::time::Duration::from_secs(86_400),
            // With the slack, RETENTION in all.
            key_reload_interval: std::time::Duration::from_secs(3_300),
            algorithm,
            publish_delay: std::time::Duration::from_secs(600),
        }
    }

    fn service(rows: &[SigningKeyRow]) -> TokenService {
        let tokens = TokenService::from_rows(rows, &policy(KeyAlgorithm::EdDsa)).unwrap();
        assert_eq!(tokens.retention, RETENTION);
        tokens
    }

    /// An Ed25519 key added at `now`, signing from `not_before`.
    fn generate_key(now: i64, not_before: i64) -> SigningKeyRow {
        super::generate_key(KeyAlgorithm::EdDsa, now, not_before).unwrap()
    }

    fn kid_of(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    fn user() -> User {
        User {
            id: 7,
            username: "alice \"quoted\" é".into(),
            email: "a@example.com".into(),
            password_hash: String::new(),
            is_active: true,
            is_staff: true,
            sessions_revoked_at: None,
            password_nfkc: true,
            created_at: 0,
            verified_at: Some(0),
        }
    }

    #[test]
    fn cached_signer_matches_jsonwebtoken_encode_byte_for_byte() {
        // Ed25519 signatures are deterministic, so the hand-built token must
        // equal what `jsonwebtoken::encode` makes from the same key.
        let row = generate_key(1_700_000_000, 1_700_000_000);
        let tokens = service(std::slice::from_ref(&row));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let pair = tokens.issue(&user(), now, "jti-1".into()).unwrap();

        let claims = tokens.verify(&pair.refresh, REFRESH).unwrap();
        let seed: [u8; 32] = row.secret.as_slice().try_into().unwrap();
        let der = SigningKey::from_bytes(&seed).to_pkcs8_der().unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(row.kid.clone());
        let expected = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap();
        assert_eq!(pair.refresh, expected);
    }

    #[test]
    fn a_reissued_refresh_token_is_the_one_first_issued_with_a_fresh_access_token() {
        // A key that signed, then a later one that signs now: the reissued
        // refresh token is signed by the key that signed at its `iat`.
        let tokens = service(&[generate_key(1_000, 1_502), generate_key(1, 1)]);
        let first = tokens.issue(&user(), 1_500, "jti-r".into()).unwrap();

        let again = tokens
            .reissue(
                TokenOwner::from(&user()),
                1_503,
                "jti-r".into(),
                1_500,
                first.refresh_exp,
            )
            .unwrap();

        assert_eq!(again.refresh, first.refresh);
        assert_ne!(again.access, first.access);
        assert_ne!(kid_of(&again.access), kid_of(&first.refresh));
        let other = tokens
            .reissue(
                TokenOwner::from(&user()),
                1_503,
                "jti-r".into(),
                1_501,
                first.refresh_exp,
            )
            .unwrap();
        assert_ne!(other.refresh, first.refresh);
    }

    #[test]
    fn issued_tokens_verify_with_their_claims_and_type() {
        let tokens = service(&[generate_key(2, 2), generate_key(1, 1)]);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let pair = tokens.issue(&user(), now, "jti-2".into()).unwrap();

        let refresh = tokens.verify(&pair.refresh, REFRESH).unwrap();
        assert_eq!(refresh.jti, "jti-2");
        assert_eq!(refresh.user_id, 7);
        assert_eq!(refresh.username, "alice \"quoted\" é");
        assert!(refresh.is_staff);
        assert_eq!(refresh.exp, now + 86_400);
        assert_eq!(pair.refresh_exp, now + 86_400);
        let access = tokens.verify(&pair.access, ACCESS).unwrap();
        assert_eq!(access.exp, now + 300);
        assert_ne!(access.jti, refresh.jti);

        // Wrong type, a flipped signature byte, or an unknown key: refused.
        assert!(tokens.verify(&pair.access, REFRESH).is_err());
        let mut forged = pair.refresh.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(
            tokens
                .verify(&String::from_utf8(forged).unwrap(), REFRESH)
                .is_err()
        );
        assert!(
            service(&[generate_key(3, 3)])
                .verify(&pair.refresh, REFRESH)
                .is_err()
        );
    }

    #[test]
    fn a_rotated_key_is_published_first_then_signs_and_the_old_one_retires() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let old = generate_key(now - 1_000, now - 1_000);
        let new = generate_key(now, now + 600);
        let tokens = service(&[new.clone(), old.clone()]);
        let published =
            |at: i64| -> Vec<String> { tokens.jwks(at).into_iter().map(|k| k.kid).collect() };

        // Before its not_before: published, but the old key still signs.
        assert_eq!(published(now), vec![new.kid.clone(), old.kid.clone()]);
        assert_eq!(tokens.signing_kid(now + 599), old.kid);
        let before = tokens.issue(&user(), now, "jti-a".into()).unwrap();
        assert_eq!(kid_of(&before.access), old.kid);
        assert_eq!(kid_of(&before.refresh), old.kid);

        // From its not_before it signs; the old key keeps verifying.
        assert_eq!(tokens.signing_kid(now + 600), new.kid);
        let after = tokens.issue(&user(), now + 600, "jti-b".into()).unwrap();
        assert_eq!(kid_of(&after.access), new.kid);
        assert!(tokens.verify(&before.refresh, REFRESH).is_ok());

        // The old key is published until every token it signed has expired.
        assert_eq!(published(now + 600 + RETENTION - 1).len(), 2);
        assert_eq!(published(now + 600 + RETENTION), vec![new.kid.clone()]);
    }

    #[test]
    fn a_retired_key_no_longer_verifies() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let old = generate_key(now - 2 * RETENTION, now - 2 * RETENTION);
        let newer = generate_key(now - RETENTION - 10, now - RETENTION - 10);
        let signed_by_old = service(std::slice::from_ref(&old))
            .issue(&user(), now, "jti-c".into())
            .unwrap();
        let tokens = service(&[newer.clone(), old]);
        assert!(tokens.verify(&signed_by_old.refresh, REFRESH).is_err());
        assert_eq!(tokens.signing_kid(now), newer.kid);
    }

    #[test]
    fn with_no_key_active_yet_the_earliest_signs() {
        // A clock behind the one that added the keys: still a published key.
        let first = generate_key(100, 100);
        let second = generate_key(100, 700);
        let tokens = service(&[second, first.clone()]);
        assert_eq!(tokens.signing_kid(50), first.kid);
    }

    /// A key of `algorithm` added at `now`, signing from `not_before`. RSA
    /// keys are slow to make in a debug build: one is made per test binary.
    fn key_of(algorithm: KeyAlgorithm, now: i64, not_before: i64) -> SigningKeyRow {
        static RSA: std::sync::OnceLock<SigningKeyRow> = std::sync::OnceLock::new();
        let mut row = match algorithm {
            KeyAlgorithm::Rs256 => RSA
                .get_or_init(|| super::generate_key(KeyAlgorithm::Rs256, 0, 0).unwrap())
                .clone(),
            other => super::generate_key(other, now, not_before).unwrap(),
        };
        row.created_at = now;
        row.not_before = not_before;
        row
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn header_of(token: &str) -> serde_json::Value {
        use base64::Engine as _;
        let header = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap()
    }

    /// The key as a third party reads it from the JWKS: jsonwebtoken's own
    /// JWK parser over the JSON members we publish.
    fn third_party_key(jwk: &PublicJwk) -> jsonwebtoken::DecodingKey {
        let mut json = serde_json::json!({
            "kty": jwk.params.kty(), "kid": jwk.kid, "alg": jwk.alg.name(), "use": "sig",
        });
        match &jwk.params {
            PublicParams::Okp { x } => {
                json["crv"] = "Ed25519".into();
                json["x"] = x.as_str().into();
            }
            PublicParams::Ec { x, y } => {
                json["crv"] = "P-256".into();
                json["x"] = x.as_str().into();
                json["y"] = y.as_str().into();
            }
            PublicParams::Rsa { n, e } => {
                json["n"] = n.as_str().into();
                json["e"] = e.as_str().into();
            }
        }
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json).unwrap();
        jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap()
    }

    #[test]
    fn each_algorithm_signs_tokens_its_published_key_verifies() {
        for algorithm in KeyAlgorithm::ALL {
            let row = key_of(algorithm, 1, 1);
            let tokens = service(std::slice::from_ref(&row));
            let now = now();
            let pair = tokens.issue(&user(), now, "jti-alg".into()).unwrap();

            let header = header_of(&pair.access);
            assert_eq!(header["alg"], algorithm.name());
            assert_eq!(header["kid"], row.kid.as_str());
            let claims = tokens.verify(&pair.access, ACCESS).unwrap();
            assert_eq!(claims.username, "alice \"quoted\" é");
            assert_eq!(
                tokens.verify(&pair.refresh, REFRESH).unwrap().jti,
                "jti-alg"
            );

            // A third party with only the published key agrees.
            let [jwk] = <[PublicJwk; 1]>::try_from(tokens.jwks(now)).unwrap();
            assert_eq!(jwk.alg, algorithm);
            let mut validation = Validation::new(algorithm.jwt());
            validation.set_issuer(&["issuer"]);
            let theirs =
                jsonwebtoken::decode::<Claims>(&pair.access, &third_party_key(&jwk), &validation)
                    .unwrap();
            assert_eq!(theirs.claims.jti, claims.jti);

            // A flipped signature byte is refused.
            let mut forged = pair.access.clone().into_bytes();
            let last = forged.len() - 3;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            assert!(
                tokens
                    .verify(&String::from_utf8(forged).unwrap(), ACCESS)
                    .is_err(),
                "{algorithm}"
            );
        }
    }

    #[test]
    fn published_keys_carry_the_members_of_their_type() {
        use base64::Engine as _;
        let bytes = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        for algorithm in KeyAlgorithm::ALL {
            let tokens = service(&[key_of(algorithm, 1, 1)]);
            let jwk = tokens.jwks(now()).remove(0);
            match (&jwk.params, algorithm) {
                (PublicParams::Okp { x }, KeyAlgorithm::EdDsa) => assert_eq!(bytes(x).len(), 32),
                (PublicParams::Ec { x, y }, KeyAlgorithm::Es256) => {
                    assert_eq!(bytes(x).len(), 32);
                    assert_eq!(bytes(y).len(), 32);
                }
                (PublicParams::Rsa { n, e }, KeyAlgorithm::Rs256) => {
                    assert_eq!(bytes(n).len() * 8, RSA_BITS);
                    assert_ne!(bytes(n)[0], 0, "no leading zero");
                    assert_eq!(e, "AQAB");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                (jwk.params.kty(), jwk.params.crv()),
                match algorithm {
                    KeyAlgorithm::EdDsa => ("OKP", Some("Ed25519")),
                    KeyAlgorithm::Es256 => ("EC", Some("P-256")),
                    KeyAlgorithm::Rs256 => ("RSA", None),
                }
            );
        }
    }

    #[test]
    fn ecdsa_and_rsa_signers_match_jsonwebtoken_encode_byte_for_byte() {
        // RFC 6979 nonces and PKCS#1 v1.5 padding are deterministic, so the
        // cached signers must make exactly what jsonwebtoken makes.
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        for algorithm in [KeyAlgorithm::Es256, KeyAlgorithm::Rs256] {
            let row = key_of(algorithm, 1, 1);
            let tokens = service(std::slice::from_ref(&row));
            let pair = tokens.issue(&user(), now(), "jti-b".into()).unwrap();
            let claims = tokens.verify(&pair.refresh, REFRESH).unwrap();
            let key = match algorithm {
                KeyAlgorithm::Es256 => jsonwebtoken::EncodingKey::from_ec_der(&row.secret),
                _ => {
                    let rsa = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(
                        &row.secret,
                    )
                    .unwrap();
                    jsonwebtoken::EncodingKey::from_rsa_der(rsa.to_pkcs1_der().unwrap().as_bytes())
                }
            };
            let mut header = Header::new(algorithm.jwt());
            header.kid = Some(row.kid.clone());
            let expected = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            assert_eq!(pair.refresh, expected, "{algorithm}");
        }
    }

    /// `header.claims.signature` with `header` as given, claims valid for a
    /// minute, and `sign` over `header.claims`.
    fn forge(header: serde_json::Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let claims = Claims {
            token_type: ACCESS.into(),
            exp: now() + 60,
            iat: now(),
            jti: "forged".into(),
            user_id: 1,
            iss: "issuer".into(),
            is_staff: true,
            username: "mallory".into(),
        };
        let message = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(&claims).unwrap())
        );
        let signature = sign(message.as_bytes());
        format!("{message}.{}", b64(&signature))
    }

    fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        let signature = jsonwebtoken::crypto::sign(message, &key, Algorithm::HS256).unwrap();
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap()
    }

    #[test]
    fn the_algorithm_is_the_keys_never_the_headers() {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        // Both live: the EdDSA key was superseded a moment ago.
        let ed = key_of(KeyAlgorithm::EdDsa, now() - 20, now() - 20);
        let rs = key_of(KeyAlgorithm::Rs256, now() - 10, now() - 10);
        let tokens = service(&[rs.clone(), ed.clone()]);
        let jwks = tokens.jwks(now());
        let public = |kid: &str| jwks.iter().find(|k| k.kid == kid).unwrap().params.clone();

        // HS256 with the RSA public key (its PKCS#1 DER, its PEM, its JWK
        // modulus) as the HMAC secret: the classic key confusion.
        let rsa = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(&rs.secret)
            .unwrap()
            .to_public_key();
        let PublicParams::Rsa { n, .. } = public(&rs.kid) else {
            panic!()
        };
        let secrets: Vec<Vec<u8>> = vec![
            rsa.to_pkcs1_der().unwrap().into_vec(),
            rsa.to_pkcs1_pem(Default::default()).unwrap().into_bytes(),
            n.into_bytes(),
        ];
        for secret in &secrets {
            let token = forge(
                serde_json::json!({"typ": "JWT", "alg": "HS256", "kid": rs.kid}),
                |m| hmac_sha256(secret, m),
            );
            assert!(tokens.verify(&token, ACCESS).is_err());
        }
        // The same over the Ed25519 key's public bytes.
        let PublicParams::Okp { x } = public(&ed.kid) else {
            panic!()
        };
        let token = forge(
            serde_json::json!({"typ": "JWT", "alg": "HS256", "kid": ed.kid}),
            |m| hmac_sha256(x.as_bytes(), m),
        );
        assert!(tokens.verify(&token, ACCESS).is_err());

        // An ES256 header over the EdDSA kid, validly signed by an ES256
        // key (whose public key an attacker cannot plant in our set).
        let es = key_of(KeyAlgorithm::Es256, 3, 3);
        let es_signer = KeyMaterial::load(&ed.kid, KeyAlgorithm::Es256, &es.secret).unwrap();
        let claims = Claims {
            token_type: ACCESS.into(),
            exp: now() + 60,
            iat: now(),
            jti: "forged".into(),
            user_id: 1,
            iss: "issuer".into(),
            is_staff: true,
            username: "mallory".into(),
        };
        let token = es_signer.signer.sign(&claims).unwrap();
        assert_eq!(header_of(&token)["kid"], ed.kid.as_str());
        assert!(tokens.verify(&token, ACCESS).is_err());

        // A genuine EdDSA token relabelled as ES256, and one as RS256 over
        // the RSA kid: the signature is the right key's, the name is not.
        let genuine = service(std::slice::from_ref(&ed))
            .issue(&user(), now(), "jti-g".into())
            .unwrap()
            .access;
        let (_, rest) = genuine.split_once('.').unwrap();
        for (alg, kid) in [("ES256", &ed.kid), ("RS256", &rs.kid), ("EdDSA", &rs.kid)] {
            use base64::Engine as _;
            let header = serde_json::json!({"typ": "JWT", "alg": alg, "kid": kid});
            let relabelled = format!(
                "{}.{rest}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(serde_json::to_vec(&header).unwrap())
            );
            assert!(tokens.verify(&relabelled, ACCESS).is_err(), "{alg} {kid}");
        }
        assert!(tokens.verify(&genuine, ACCESS).is_ok());

        // `alg: none`, with and without a signature.
        for signature in [Vec::new(), b"x".to_vec()] {
            let token = forge(
                serde_json::json!({"typ": "JWT", "alg": "none", "kid": ed.kid}),
                |_| signature.clone(),
            );
            assert!(tokens.verify(&token, ACCESS).is_err());
        }
    }

    #[test]
    fn a_key_that_is_not_of_its_rows_algorithm_does_not_load() {
        let ed = key_of(KeyAlgorithm::EdDsa, 1, 1);
        let es = key_of(KeyAlgorithm::Es256, 1, 1);
        let rs = key_of(KeyAlgorithm::Rs256, 1, 1);
        for (row, claimed) in [
            (&ed, KeyAlgorithm::Es256),
            (&ed, KeyAlgorithm::Rs256),
            (&es, KeyAlgorithm::Rs256),
            (&es, KeyAlgorithm::EdDsa),
            (&rs, KeyAlgorithm::Es256),
            (&rs, KeyAlgorithm::EdDsa),
        ] {
            let row = SigningKeyRow {
                alg: claimed,
                ..row.clone()
            };
            let error = TokenService::from_rows(&[row], &policy(claimed))
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(claimed.name()), "{error}");
        }
    }

    #[test]
    fn rsa_keys_under_2048_bits_do_not_load() {
        use rsa::pkcs8::EncodePrivateKey as _;
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let row = SigningKeyRow {
            secret: small.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            ..key_of(KeyAlgorithm::Rs256, 1, 1)
        };
        let error = TokenService::from_rows(&[row], &policy(KeyAlgorithm::Rs256))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("1024 bits"), "{error}");
    }

    #[test]
    fn a_reload_reuses_the_keys_it_has_parsed() {
        let old = key_of(KeyAlgorithm::Rs256, 1, 1);
        let first = build_keys(std::slice::from_ref(&old), RETENTION, None).unwrap();
        let new = key_of(KeyAlgorithm::Es256, 2, 2);
        let second = build_keys(&[new, old], RETENTION, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(
            &first.keys[0].material,
            &second.keys[second.by_kid[&first.keys[0].kid]].material
        ));
    }

    #[test]
    fn algorithm_names_parse_as_operators_type_them() {
        for (raw, algorithm) in [
            ("EdDSA", KeyAlgorithm::EdDsa),
            ("eddsa", KeyAlgorithm::EdDsa),
            ("ES256", KeyAlgorithm::Es256),
            (" rs256 ", KeyAlgorithm::Rs256),
        ] {
            assert_eq!(raw.parse::<KeyAlgorithm>().unwrap(), algorithm);
        }
        for raw in ["", "HS256", "none", "ES384", "PS256", "RS256\0", "ЕS256"] {
            assert!(raw.parse::<KeyAlgorithm>().is_err(), "{raw:?}");
        }
    }

    /// Not an assertion on time: prints what signing and verifying cost
    /// with each algorithm on one core, for BENCHMARKS.md. Run in release:
    /// `cargo test --release -p auth-service --lib signing_costs -- --ignored --nocapture`.
    /// Beside each, what the same costs through jsonwebtoken alone (the
    /// key parsed per token), which the cached signers avoid.
    #[test]
    #[ignore = "a measurement, not a test: it asserts nothing about the times it prints"]
    fn signing_costs_per_algorithm_are_printed() {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        const ROUNDS: u32 = 2_000;
        let per_op =
            |started: std::time::Instant| started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
        eprintln!(
            "| JWT_ALGORITHM | sign µs (cached key) | sign µs (jsonwebtoken::encode) | verify µs (jsonwebtoken::decode) | signature check alone µs (parsed key) | access token bytes |"
        );
        eprintln!("|---|---:|---:|---:|---:|---:|");
        for algorithm in KeyAlgorithm::ALL {
            let row = super::generate_key(algorithm, 1, 1).unwrap();
            let tokens = service(std::slice::from_ref(&row));
            let now = now();
            let material = &tokens.current().keys[0].material;
            let claims = Claims {
                token_type: ACCESS.into(),
                exp: now + 300,
                iat: now,
                jti: "0123456789abcdef0123456789abcdef".into(),
                user_id: 42,
                iss: "issuer".into(),
                is_staff: false,
                username: "bench-user".into(),
            };
            let started = std::time::Instant::now();
            let mut token = String::new();
            for _ in 0..ROUNDS {
                token = material.signer.sign(&claims).unwrap();
            }
            let sign = per_op(started);
            let key = match algorithm {
                KeyAlgorithm::EdDsa => {
                    let seed: [u8; 32] = row.secret.as_slice().try_into().unwrap();
                    let der = SigningKey::from_bytes(&seed).to_pkcs8_der().unwrap();
                    jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes())
                }
                KeyAlgorithm::Es256 => jsonwebtoken::EncodingKey::from_ec_der(&row.secret),
                KeyAlgorithm::Rs256 => {
                    let rsa = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(
                        &row.secret,
                    )
                    .unwrap();
                    jsonwebtoken::EncodingKey::from_rsa_der(rsa.to_pkcs1_der().unwrap().as_bytes())
                }
            };
            let mut header = Header::new(algorithm.jwt());
            header.kid = Some(row.kid.clone());
            let started = std::time::Instant::now();
            for _ in 0..ROUNDS {
                jsonwebtoken::encode(&header, &claims, &key).unwrap();
            }
            let encode = per_op(started);
            let started = std::time::Instant::now();
            for _ in 0..ROUNDS {
                tokens.verify(&token, ACCESS).unwrap();
            }
            let verify = per_op(started);
            // The signature check alone with a key parsed once: what
            // jsonwebtoken's per-token key parsing adds to `verify`.
            let (message, signature) = token.rsplit_once('.').unwrap();
            let signature = {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(signature)
                    .unwrap()
            };
            let check: Box<dyn Fn() -> bool + '_> = match algorithm {
                KeyAlgorithm::EdDsa => {
                    let seed: [u8; 32] = row.secret.as_slice().try_into().unwrap();
                    let key = SigningKey::from_bytes(&seed).verifying_key();
                    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
                    Box::new(move || key.verify_strict(message.as_bytes(), &signature).is_ok())
                }
                KeyAlgorithm::Es256 => {
                    use p256::ecdsa::signature::Verifier as _;
                    let key = *<p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(
                        &row.secret,
                    )
                    .unwrap()
                    .verifying_key();
                    let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
                    Box::new(move || key.verify(message.as_bytes(), &signature).is_ok())
                }
                KeyAlgorithm::Rs256 => {
                    use rsa::signature::Verifier as _;
                    let rsa = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(
                        &row.secret,
                    )
                    .unwrap();
                    let key =
                        rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(rsa.to_public_key());
                    let signature =
                        rsa::pkcs1v15::Signature::try_from(signature.as_slice()).unwrap();
                    Box::new(move || key.verify(message.as_bytes(), &signature).is_ok())
                }
            };
            let started = std::time::Instant::now();
            for _ in 0..ROUNDS {
                assert!(check());
            }
            let alone = per_op(started);
            eprintln!(
                "| {algorithm} | {sign:.1} | {encode:.1} | {verify:.1} | {alone:.1} | {} |",
                token.len()
            );
        }
    }
}
