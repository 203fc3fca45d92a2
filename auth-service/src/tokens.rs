//! Ed25519 JWTs: signing keys persisted in the auth database, so restarts and
//! replicas share them.
//!
//! Key rollover, as Keycloak and Zitadel do it: `rotate-keys` adds a key that
//! is published at once but signs only from its `not_before`, after
//! `AUTH_KEY_PUBLISH_DELAY`, so every verifier that caches the key set (the
//! gateway, HTTP caches honouring `max-age`, PyJWT, jose) has it before the
//! first token it signs. A superseded key stays published and accepted until
//! every token it can have signed has expired ([`TokenPolicy::retention`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    error::Error,
    store::{AuthStore, SigningKeyRow, TokenOwner},
};

/// The claims and token types, shared with the gateway that verifies them.
pub use common::claims::{ACCESS, Claims, REFRESH};

/// A public key in JWK form (RFC 8037).
#[derive(Debug, Clone)]
pub struct PublicJwk {
    /// Key id.
    pub kid: String,
    /// Public key, base64url.
    pub x: String,
}

/// One key as loaded, with the times that decide what it does.
struct LoadedKey {
    /// Signs tokens from this time on (Unix seconds), until a later key does.
    not_before: i64,
    /// When every token it can have signed has expired (Unix seconds):
    /// from then on it is neither published nor accepted. `None` while no
    /// later key has been added.
    retired_at: Option<i64>,
    signer: KeySigner,
    verifying: DecodingKey,
    jwk: PublicJwk,
}

impl LoadedKey {
    fn live(&self, now: i64) -> bool {
        self.retired_at.is_none_or(|at| now < at)
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

/// The newest key, ready to sign: the expanded key and the encoded JWT
/// header are computed once per load. (`jsonwebtoken::encode` re-parses a
/// PKCS#8 document and re-derives the public key on every call, which
/// doubled the cost of each signature.)
struct KeySigner {
    key: SigningKey,
    /// `base64url({"typ":"JWT","alg":"EdDSA","kid":…})`, as jsonwebtoken writes it.
    header_b64: String,
}

impl KeySigner {
    fn new(kid: &str, key: SigningKey) -> anyhow::Result<Self> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        Ok(Self {
            key,
            header_b64: URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        })
    }

    /// A compact JWS (RFC 7515): `header.claims.signature`, each base64url
    /// without padding, signed with Ed25519 over `header.claims`.
    fn sign(&self, claims: &Claims) -> Result<String, serde_json::Error> {
        let json = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(self.header_b64.len() + json.len() * 4 / 3 + 92);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
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

fn public_jwk(row: &SigningKeyRow) -> anyhow::Result<(SigningKey, PublicJwk)> {
    let seed: [u8; 32] = row
        .secret
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("signing key {} is not 32 bytes", row.kid))?;
    let key = SigningKey::from_bytes(&seed);
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
    Ok((
        key,
        PublicJwk {
            kid: row.kid.clone(),
            x,
        },
    ))
}

/// Makes a new random signing key, added at `now` and signing from
/// `not_before`; its id is derived from the public key.
pub fn generate_key(now: i64, not_before: i64) -> SigningKeyRow {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
    SigningKeyRow {
        kid,
        secret: seed.to_vec(),
        created_at: now,
        not_before,
    }
}

/// Loads `rows` (latest `not_before` first, as the store lists them). A key
/// stops signing when the key before it in that order starts; it retires
/// `retention` seconds later.
fn build_keys(rows: &[SigningKeyRow], retention: i64) -> anyhow::Result<Keys> {
    let mut keys = Vec::with_capacity(rows.len());
    let mut by_kid = HashMap::new();
    let mut successor_starts: Option<i64> = None;
    for row in rows {
        let (key, jwk) = public_jwk(row)?;
        by_kid.insert(jwk.kid.clone(), keys.len());
        keys.push(LoadedKey {
            not_before: row.not_before,
            retired_at: successor_starts.map(|at| at.saturating_add(retention)),
            signer: KeySigner::new(&row.kid, key)?,
            verifying: DecodingKey::from_ed_components(&jwk.x)?,
            jwk,
        });
        successor_starts = Some(row.not_before);
    }
    if keys.is_empty() {
        anyhow::bail!("no signing key in the database");
    }
    Ok(Keys { keys, by_kid })
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
    /// Loads the keys, creating the first one on a fresh database (it
    /// signs at once: no verifier can have cached an older set).
    pub async fn load<S: AuthStore>(
        store: &S,
        policy: &TokenPolicy,
        now: i64,
    ) -> anyhow::Result<Self> {
        let mut rows = store.signing_keys().await?;
        if rows.is_empty() {
            store.add_signing_key(&generate_key(now, now)).await?;
            // Re-read: a replica starting at the same moment may have added
            // its own key; everyone then signs with the same newest one.
            rows = store.signing_keys().await?;
        }
        let retention = policy.retention()?;
        Ok(Self {
            keys: RwLock::new(Arc::new(build_keys(&rows, retention)?)),
            last_reload: Mutex::new(std::time::Instant::now()),
            issuer: policy.issuer.clone(),
            access_ttl: i64::try_from(policy.access_ttl.as_secs())?,
            refresh_ttl: i64::try_from(policy.refresh_ttl.as_secs())?,
            retention,
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
        let keys = Arc::new(build_keys(&rows, self.retention)?);
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
            .map(|k| k.jwk.clone())
            .collect()
    }

    /// The `kid` that signs tokens issued at `now`.
    pub fn signing_kid(&self, now: i64) -> String {
        self.current()
            .signer(now)
            .map(|k| k.jwk.kid.clone())
            .unwrap_or_default()
    }

    fn sign(&self, claims: &Claims) -> Result<String, Error> {
        let keys = self.current();
        let key = keys
            .signer(claims.iat)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no signing key loaded")))?;
        key.signer
            .sign(claims)
            .map_err(|e| Error::Internal(anyhow::anyhow!("signing: {e}")))
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
    /// and Ed25519 signatures are deterministic, so while that key is
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

    /// Verifies signature (EdDSA only, known `kid`), issuer, expiry and
    /// `token_type`: a good token of the other type is
    /// [`Error::WrongTokenType`] (simplejwt tells that case apart), every
    /// other failure the same [`Error::InvalidToken`].
    pub fn verify(&self, token: &str, token_type: &str) -> Result<Claims, Error> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken)?;
        let keys = self.current();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.verifying(kid, now))
            .map(|k| &k.verifying)
            .ok_or(Error::InvalidToken)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
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
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    const RETENTION: i64 = 90_000;

    fn service(rows: &[SigningKeyRow]) -> TokenService {
        TokenService {
            keys: RwLock::new(Arc::new(build_keys(rows, RETENTION).unwrap())),
            last_reload: Mutex::new(std::time::Instant::now()),
            issuer: "issuer".into(),
            access_ttl: 300,
            refresh_ttl: 86_400,
            retention: RETENTION,
        }
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
}
