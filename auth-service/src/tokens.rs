//! Ed25519 JWTs: signing keys persisted in the auth database, so restarts and
//! replicas share them; the newest key signs and every key verifies.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    error::Error,
    store::{AuthStore, SigningKeyRow, TokenOwner},
};

/// `token_type` of access tokens (simplejwt's value).
pub const ACCESS: &str = "access";
/// `token_type` of refresh tokens (simplejwt's value).
pub const REFRESH: &str = "refresh";

/// Claims, with simplejwt's names so existing clients keep decoding them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// `access` or `refresh`.
    pub token_type: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issue time, Unix seconds.
    pub iat: i64,
    /// Unique token id.
    pub jti: String,
    /// The account.
    pub user_id: i64,
    /// The issuer (`JWT_ISSUER`).
    pub iss: String,
    /// Administrator.
    pub is_staff: bool,
    /// The account's username, for display.
    pub username: String,
}

/// A public key in JWK form (RFC 8037).
#[derive(Debug, Clone)]
pub struct PublicJwk {
    /// Key id.
    pub kid: String,
    /// Public key, base64url.
    pub x: String,
}

/// One loaded generation of keys: the newest signs, all verify.
struct Keys {
    signer: KeySigner,
    verifying: HashMap<String, DecodingKey>,
    jwks: Vec<PublicJwk>,
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
}

/// A freshly issued pair.
pub struct IssuedPair {
    /// Access JWT.
    pub access: String,
    /// Refresh JWT.
    pub refresh: String,
    /// The refresh token's expiry, Unix seconds (to persist it).
    pub refresh_exp: i64,
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

/// Makes a new random signing key; its id is derived from the public key.
pub fn generate_key(now: i64) -> SigningKeyRow {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
    SigningKeyRow {
        kid,
        secret: seed.to_vec(),
        created_at: now,
    }
}

fn build_keys(rows: &[SigningKeyRow]) -> anyhow::Result<Keys> {
    let mut verifying = HashMap::new();
    let mut jwks = Vec::new();
    let mut signer = None;
    for row in rows {
        let (key, jwk) = public_jwk(row)?;
        verifying.insert(jwk.kid.clone(), DecodingKey::from_ed_components(&jwk.x)?);
        if signer.is_none() {
            signer = Some(KeySigner::new(&row.kid, key)?);
        }
        jwks.push(jwk);
    }
    let signer = signer.ok_or_else(|| anyhow::anyhow!("no signing key in the database"))?;
    Ok(Keys {
        signer,
        verifying,
        jwks,
    })
}

impl TokenService {
    /// Loads the keys, creating the first one on a fresh database.
    pub async fn load<S: AuthStore>(
        store: &S,
        issuer: String,
        access_ttl: std::time::Duration,
        refresh_ttl: std::time::Duration,
        now: i64,
    ) -> anyhow::Result<Self> {
        let mut rows = store.signing_keys().await?;
        if rows.is_empty() {
            store.add_signing_key(&generate_key(now)).await?;
            // Re-read: a replica starting at the same moment may have added
            // its own key; everyone then signs with the same newest one.
            rows = store.signing_keys().await?;
        }
        Ok(Self {
            keys: RwLock::new(Arc::new(build_keys(&rows)?)),
            last_reload: Mutex::new(std::time::Instant::now()),
            issuer,
            access_ttl: i64::try_from(access_ttl.as_secs())?,
            refresh_ttl: i64::try_from(refresh_ttl.as_secs())?,
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
        let keys = Arc::new(build_keys(&rows)?);
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
        !self.current().verifying.contains_key(&kid)
            && self
                .last_reload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .elapsed()
                >= MIN_RELOAD_INTERVAL
    }

    /// Public keys for JWKS.
    pub fn jwks(&self) -> Vec<PublicJwk> {
        self.current().jwks.clone()
    }

    fn sign(&self, claims: &Claims) -> Result<String, Error> {
        self.current()
            .signer
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
        let user: TokenOwner = user.into();
        let claims = |token_type: &str, ttl: i64, jti: String| Claims {
            token_type: token_type.to_owned(),
            exp: now + ttl,
            iat: now,
            jti,
            user_id: user.id,
            iss: self.issuer.clone(),
            is_staff: user.is_staff,
            username: user.username.clone(),
        };
        let access = claims(
            ACCESS,
            self.access_ttl,
            uuid::Uuid::new_v4().simple().to_string(),
        );
        let refresh = claims(REFRESH, self.refresh_ttl, refresh_jti);
        Ok(IssuedPair {
            access: self.sign(&access)?,
            refresh: self.sign(&refresh)?,
            refresh_exp: refresh.exp,
        })
    }

    /// Verifies signature (EdDSA only, known `kid`), issuer, expiry and
    /// `token_type`; every failure is the same [`Error::InvalidToken`].
    pub fn verify(&self, token: &str, token_type: &str) -> Result<Claims, Error> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken)?;
        let keys = self.current();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.verifying.get(kid))
            .ok_or(Error::InvalidToken)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|_| Error::InvalidToken)?;
        if data.claims.token_type != token_type {
            return Err(Error::InvalidToken);
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

    fn service(rows: &[SigningKeyRow]) -> TokenService {
        TokenService {
            keys: RwLock::new(Arc::new(build_keys(rows).unwrap())),
            last_reload: Mutex::new(std::time::Instant::now()),
            issuer: "issuer".into(),
            access_ttl: 300,
            refresh_ttl: 86_400,
        }
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
        }
    }

    #[test]
    fn cached_signer_matches_jsonwebtoken_encode_byte_for_byte() {
        // Ed25519 signatures are deterministic, so the hand-built token must
        // equal what `jsonwebtoken::encode` makes from the same key.
        let row = generate_key(1_700_000_000);
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
    fn issued_tokens_verify_with_their_claims_and_type() {
        let tokens = service(&[generate_key(2), generate_key(1)]);
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
            service(&[generate_key(3)])
                .verify(&pair.refresh, REFRESH)
                .is_err()
        );
    }
}
