//! Unit tests of [`super`]: signing, verification and rollover per algorithm.
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
                let key =
                    *<p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(
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
                let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice()).unwrap();
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
