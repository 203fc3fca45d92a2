//! The signing algorithms `JWT_ALGORITHM` chooses from, and one key of each
//! as stored, loaded and published.
//!
//! Secrets as stored: Ed25519 its 32-byte seed (as before this module);
//! ES256 and RS256 a PKCS#8 DER document, which names its own algorithm, so
//! a row whose `alg` disagrees with its key fails to load instead of
//! signing under the wrong name. Every key is parsed once per load (and
//! reused across reloads, see `build_keys`); signing never re-parses.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use rsa::{
    pkcs1v15,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey},
    rand_core::OsRng,
    sha2::Sha256,
    signature::{RandomizedSigner, SignatureEncoding, Signer as _},
    traits::PublicKeyParts,
};
use sha2::Digest as _;

/// Modulus size of the RSA keys made here, and the least one loaded: 2048
/// bits is what RS256 verifiers expect (RFC 7518 section 3.3 requires at
/// least that) and signs ~5 times faster than 3072 (see SECURITY.md).
pub const RSA_BITS: usize = 2048;

/// A JWS algorithm this service signs with (`JWT_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8037): the default, fastest and with the smallest tokens.
    #[default]
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, [`RSA_BITS`]-bit keys.
    Rs256,
}

/// A name that is not one of [`KeyAlgorithm`]'s.
#[derive(Debug, thiserror::Error)]
#[error("unknown signing algorithm {0:?}: expected EdDSA, ES256 or RS256")]
pub struct UnknownAlgorithm(pub String);

impl KeyAlgorithm {
    /// Every algorithm, for tests and benchmarks.
    pub const ALL: [Self; 3] = [Self::EdDsa, Self::Es256, Self::Rs256];

    /// Its JWS `alg` name, as written in tokens, JWKs and the database.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// The same algorithm in jsonwebtoken's terms.
    pub const fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = UnknownAlgorithm;

    /// The JWS name; case is forgiven (`es256`), since an operator types it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// For the `alg` column.
impl TryFrom<String> for KeyAlgorithm {
    type Error = UnknownAlgorithm;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A public key's JWK members besides `kid`, `alg` and `use` (RFC 7518
/// section 6, RFC 8037 section 2), each base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicParams {
    /// `kty: OKP`, `crv: Ed25519`.
    Okp {
        /// The public key.
        x: String,
    },
    /// `kty: EC`, `crv: P-256`.
    Ec {
        /// The point's x coordinate (32 bytes).
        x: String,
        /// Its y coordinate (32 bytes).
        y: String,
    },
    /// `kty: RSA`.
    Rsa {
        /// The modulus, big-endian without leading zeros.
        n: String,
        /// The public exponent, likewise.
        e: String,
    },
}

impl PublicParams {
    /// The JWK `kty`.
    pub const fn kty(&self) -> &'static str {
        match self {
            Self::Okp { .. } => "OKP",
            Self::Ec { .. } => "EC",
            Self::Rsa { .. } => "RSA",
        }
    }

    /// The JWK `crv`, for the key types that have one.
    pub const fn crv(&self) -> Option<&'static str> {
        match self {
            Self::Okp { .. } => Some("Ed25519"),
            Self::Ec { .. } => Some("P-256"),
            Self::Rsa { .. } => None,
        }
    }
}

/// A new key's secret as stored and the public key its `kid` is derived from.
pub(super) struct NewSecret {
    pub secret: Vec<u8>,
    pub public: Vec<u8>,
}

/// Makes a random key for `algorithm`. RSA takes tens of milliseconds in a
/// release build (and seconds in a debug one): call it off the async
/// workers.
pub(super) fn generate(algorithm: KeyAlgorithm) -> anyhow::Result<NewSecret> {
    Ok(match algorithm {
        KeyAlgorithm::EdDsa => {
            let mut seed = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
            let public = ed25519_dalek::SigningKey::from_bytes(&seed)
                .verifying_key()
                .to_bytes()
                .to_vec();
            NewSecret {
                secret: seed.to_vec(),
                public,
            }
        }
        KeyAlgorithm::Es256 => {
            let key = p256::ecdsa::SigningKey::random(&mut OsRng);
            NewSecret {
                secret: key.to_pkcs8_der()?.as_bytes().to_vec(),
                public: key.verifying_key().to_public_key_der()?.into_vec(),
            }
        }
        KeyAlgorithm::Rs256 => {
            let key = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)?;
            NewSecret {
                secret: key.to_pkcs8_der()?.as_bytes().to_vec(),
                public: key.to_public_key().to_public_key_der()?.into_vec(),
            }
        }
    })
}

/// The `kid` of a key: 16 base64url characters of the SHA-256 of its
/// public key (the raw 32 bytes for Ed25519, SPKI DER for the others).
pub(super) fn kid_of(public: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(public)[..12])
}

/// One stored key, parsed: it signs with its algorithm and only that one.
pub(super) struct KeyMaterial {
    /// The algorithm its row names (and its key is of).
    pub algorithm: KeyAlgorithm,
    /// What signs, with its encoded header.
    pub signer: KeySigner,
    /// What verifies tokens it signed.
    pub verifying: DecodingKey,
    /// The public key as published.
    pub params: PublicParams,
}

impl KeyMaterial {
    /// Parses `secret` as a key of `algorithm` with id `kid`; a secret of
    /// another kind or size is an error naming the key.
    pub fn load(kid: &str, algorithm: KeyAlgorithm, secret: &[u8]) -> anyhow::Result<Self> {
        let bad = |what: &dyn std::fmt::Display| {
            anyhow::anyhow!("signing key {kid} is not a valid {algorithm} key: {what}")
        };
        let (key, params) = match algorithm {
            KeyAlgorithm::EdDsa => {
                let seed: [u8; 32] = secret.try_into().map_err(|_| bad(&"not 32 bytes"))?;
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
                (SigningKey::Ed(key), PublicParams::Okp { x })
            }
            KeyAlgorithm::Es256 => {
                let key = p256::ecdsa::SigningKey::from_pkcs8_der(secret).map_err(|e| bad(&e))?;
                let point = key.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(bad(&"no affine coordinates"));
                };
                let params = PublicParams::Ec {
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: URL_SAFE_NO_PAD.encode(y),
                };
                (SigningKey::Es(key), params)
            }
            KeyAlgorithm::Rs256 => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(secret).map_err(|e| bad(&e))?;
                if key.n().bits() < RSA_BITS {
                    return Err(bad(&format_args!(
                        "{} bits, fewer than {RSA_BITS}",
                        key.n().bits()
                    )));
                }
                let params = PublicParams::Rsa {
                    n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                    e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
                };
                (SigningKey::Rs(pkcs1v15::SigningKey::new(key)), params)
            }
        };
        let verifying = match &params {
            PublicParams::Okp { x } => DecodingKey::from_ed_components(x)?,
            PublicParams::Ec { x, y } => DecodingKey::from_ec_components(x, y)?,
            PublicParams::Rsa { n, e } => DecodingKey::from_rsa_components(n, e)?,
        };
        Ok(Self {
            algorithm,
            signer: KeySigner::new(kid, algorithm, key)?,
            verifying,
            params,
        })
    }
}

/// A parsed private key.
enum SigningKey {
    Ed(ed25519_dalek::SigningKey),
    Es(p256::ecdsa::SigningKey),
    /// PKCS#1 v1.5 with SHA-256; the key's CRT values are computed once,
    /// at parse.
    Rs(pkcs1v15::SigningKey<Sha256>),
}

/// A key ready to sign: the parsed key and the encoded JWT header are made
/// once per load. (`jsonwebtoken::encode` re-parses a DER document on
/// every call, which doubled the cost of each Ed25519 signature and costs
/// RSA a full key validation per token.)
pub(super) struct KeySigner {
    key: SigningKey,
    /// `base64url({"typ":"JWT","alg":…,"kid":…})`, as jsonwebtoken writes it.
    header_b64: String,
}

impl KeySigner {
    fn new(kid: &str, algorithm: KeyAlgorithm, key: SigningKey) -> anyhow::Result<Self> {
        let mut header = Header::new(algorithm.jwt());
        header.kid = Some(kid.to_owned());
        Ok(Self {
            key,
            header_b64: URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        })
    }

    /// A compact JWS (RFC 7515) of `claims`: `header.claims.signature`,
    /// each base64url without padding, the signature over `header.claims`.
    /// All three algorithms sign deterministically (Ed25519 by design,
    /// ECDSA with RFC 6979 nonces, PKCS#1 v1.5 by construction; RSA's
    /// random blinding changes the computation, not the result), so the
    /// same claims and key give the same token.
    pub fn sign(&self, claims: &impl serde::Serialize) -> anyhow::Result<String> {
        let json = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(self.header_b64.len() + json.len() * 4 / 3 + 360);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let message = token.as_bytes();
        let signature: Box<[u8]> = match &self.key {
            SigningKey::Ed(key) => {
                let signature = ed25519_dalek::Signer::sign(key, message).to_bytes();
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(signature, &mut token);
                return Ok(token);
            }
            SigningKey::Es(key) => {
                let signature: p256::ecdsa::Signature = key.try_sign(message)?;
                // JWS wants `r || s`, 32 bytes each (RFC 7518 section 3.4).
                Box::from(&signature.to_bytes()[..])
            }
            // Blinded: the `rsa` crate's exponentiation is not constant
            // time (RUSTSEC-2023-0071), random blinding hides its timing.
            SigningKey::Rs(key) => key.try_sign_with_rng(&mut OsRng, message)?.to_bytes(),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}
