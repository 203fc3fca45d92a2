//! `JWT_ALGORITHM` seen from outside (issue #15, item 5): with ES256 or
//! RS256 the whole flow works through the real gateway, the JWKS carries the
//! members of each key's type, verifiers that are not our code (PyJWT's
//! `PyJWKClient`, simplejwt's `AccessToken` with `JWK_URL`) accept the
//! tokens, and a switch from EdDSA logs nobody out.

use std::time::{Duration, Instant};

use auth_service::tokens::KeyAlgorithm;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use system_tests::{Backend, TestSystem, pyjwt::PyJwt, simplejwt};

on_every_backend!(
    es256_serves_every_endpoint_and_outside_verifiers_accept_its_tokens,
    rs256_serves_every_endpoint_and_outside_verifiers_accept_its_tokens,
    switching_from_eddsa_to_es256_logs_nobody_out,
);

const LOGS: &str = "/api/accounts/logs/login/attemps/";

fn header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// `token` with its header replaced by `header` (claims and signature kept,
/// or the signature replaced when given).
fn reheader(token: &str, header: &Value, signature: Option<&str>) -> String {
    let mut parts = token.splitn(3, '.').skip(1);
    let (claims, original) = (parts.next().unwrap(), parts.next().unwrap());
    format!(
        "{}.{claims}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        signature.unwrap_or(original)
    )
}

fn hs256(token: &str, kid: &str, secret: &[u8]) -> String {
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn jwks(sys: &TestSystem) -> Vec<Value> {
    let (status, body) = sys.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200, "{body}");
    body["keys"].as_array().unwrap().clone()
}

/// Asserts `jwk` has exactly the members RFC 7517/7518/8037 give its type,
/// of the right sizes, and returns its algorithm.
fn assert_jwk_shape(jwk: &Value) -> KeyAlgorithm {
    let bytes = |member: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[member].as_str().unwrap())
            .unwrap()
    };
    let mut members: Vec<&str> = jwk
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(jwk["use"], "sig", "{jwk}");
    assert!(!jwk["kid"].as_str().unwrap().is_empty(), "{jwk}");
    match jwk["kty"].as_str().unwrap() {
        "OKP" => {
            assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"], "{jwk}");
            assert_eq!(
                (&jwk["crv"], &jwk["alg"]),
                (&json!("Ed25519"), &json!("EdDSA"))
            );
            assert_eq!(bytes("x").len(), 32);
            KeyAlgorithm::EdDsa
        }
        "EC" => {
            assert_eq!(
                members,
                ["alg", "crv", "kid", "kty", "use", "x", "y"],
                "{jwk}"
            );
            assert_eq!(
                (&jwk["crv"], &jwk["alg"]),
                (&json!("P-256"), &json!("ES256"))
            );
            assert_eq!((bytes("x").len(), bytes("y").len()), (32, 32));
            KeyAlgorithm::Es256
        }
        "RSA" => {
            assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"], "{jwk}");
            assert_eq!(jwk["alg"], "RS256");
            let n = bytes("n");
            assert!(n.len() * 8 >= 2048 && n[0] != 0, "{jwk}");
            assert_eq!(jwk["e"], "AQAB");
            KeyAlgorithm::Rs256
        }
        other => panic!("unexpected kty {other}: {jwk}"),
    }
}

/// PyJWT's verdicts on `tokens`, each asserted to be accepted.
async fn pyjwt_accepts(sys: &TestSystem, algorithms: &[&str], tokens: &[&str]) {
    let Some(mut verifier) = PyJwt::start_for(
        &sys.url("/.well-known/jwks.json"),
        "auth-service",
        Duration::from_secs(300),
        Duration::ZERO,
        algorithms,
    ) else {
        return;
    };
    for token in tokens {
        let (next, verdict) = verifier.verify(token).await;
        verifier = next;
        assert_eq!(verdict["ok"], true, "PyJWT refused {token}: {verdict}");
        assert_eq!(verdict["kid"], header(token)["kid"]);
        assert_eq!(verdict["claims"]["token_type"], "access");
    }
}

/// simplejwt's verdicts on `tokens`, configured for `algorithm`.
async fn simplejwt_verdicts(sys: &TestSystem, algorithm: &str, tokens: &[&str]) -> Vec<Value> {
    simplejwt::verify(
        &sys.url("/.well-known/jwks.json"),
        algorithm,
        "auth-service",
        tokens,
    )
    .await
    .unwrap_or_default()
}

async fn each_endpoint_with(backend: Backend, algorithm: KeyAlgorithm) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.jwt_algorithm = algorithm;
    })
    .await
    else {
        return;
    };
    let name = algorithm.name();

    // The JWKS: one key, of the configured type, with exactly its members.
    let keys = jwks(&sys).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(assert_jwk_shape(&keys[0]), algorithm);
    let kid = keys[0]["kid"].as_str().unwrap().to_owned();

    // Login, refresh and the admin listing, through the gateway.
    let admin = sys.admin_token().await;
    assert_eq!(header(&admin)["alg"], name);
    assert_eq!(header(&admin)["kid"], kid.as_str());
    sys.active_user("nina", "nina@example.com", "nina-pass-12")
        .await;
    let pair = sys.login("nina", "nina-pass-12").await;
    let refresh = pair["refresh"].as_str().unwrap();
    assert_eq!(header(refresh)["alg"], name);
    let (status, body) = sys
        .post_json(
            "/api/accounts/login/refresh/",
            json!({ "refresh": refresh }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refreshed = body["access"].as_str().unwrap().to_owned();
    assert_eq!(header(&refreshed)["alg"], name);
    let (status, body) = sys.get(LOGS, Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["results"].as_array().unwrap().is_empty(), "{body}");
    let (status, _) = sys.get(LOGS, Some(&refreshed)).await;
    assert_eq!(status, 403, "nina is no admin, but her token is valid");

    // Verifiers that are not our code.
    pyjwt_accepts(&sys, &[name], &[&admin, &refreshed]).await;
    for verdict in simplejwt_verdicts(&sys, name, &[&admin, &refreshed]).await {
        assert_eq!(verdict["ok"], true, "simplejwt refused: {verdict}");
        assert_eq!(verdict["claims"]["iss"], "auth-service");
    }

    // Tokens naming another algorithm than the key's are refused, by the
    // gateway (the listing) and by auth-service (refresh): HMAC keyed with
    // the published key, `alg: none`, and the other asymmetric names.
    let new_refresh = body_refresh(&sys).await;
    let public = serde_json::to_vec(&keys[0]).unwrap();
    for (token, what) in [
        (admin.as_str(), "access"),
        (new_refresh.as_str(), "refresh"),
    ] {
        let mut forged = vec![
            hs256(token, &kid, &public),
            hs256(token, &kid, keys[0]["n"].as_str().unwrap_or("x").as_bytes()),
            hs256(token, &kid, keys[0]["x"].as_str().unwrap_or("x").as_bytes()),
            reheader(token, &json!({"alg": "none", "kid": kid}), Some("")),
            reheader(token, &json!({"alg": "none", "typ": "JWT"}), Some("")),
        ];
        for other in ["EdDSA", "ES256", "RS256", "PS256", "ES384"] {
            if other != name {
                forged.push(reheader(
                    token,
                    &json!({"typ": "JWT", "alg": other, "kid": kid}),
                    None,
                ));
            }
        }
        for forged in &forged {
            let status = if what == "access" {
                sys.get(LOGS, Some(forged)).await.0
            } else {
                sys.post_json("/api/accounts/login/refresh/", json!({ "refresh": forged }))
                    .await
                    .0
            };
            assert_eq!(status, 401, "{what} {:?} was accepted", header(forged));
        }
    }
    // The genuine ones still pass.
    let (status, _) = sys.get(LOGS, Some(&admin)).await;
    assert_eq!(status, 200);
    sys.shutdown().await;
}

/// A refresh token of a fresh login of `nina`.
async fn body_refresh(sys: &TestSystem) -> String {
    sys.login("nina", "nina-pass-12").await["refresh"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn es256_serves_every_endpoint_and_outside_verifiers_accept_its_tokens(backend: Backend) {
    each_endpoint_with(backend, KeyAlgorithm::Es256).await;
}

async fn rs256_serves_every_endpoint_and_outside_verifiers_accept_its_tokens(backend: Backend) {
    each_endpoint_with(backend, KeyAlgorithm::Rs256).await;
}

/// How long the ES256 key is published before it signs, in this test.
const PUBLISH_DELAY: Duration = Duration::from_secs(4);

async fn switching_from_eddsa_to_es256_logs_nobody_out(backend: Backend) {
    let Some(mut sys) = TestSystem::start_with(backend, |auth, gateway| {
        auth.key_publish_delay = PUBLISH_DELAY;
        gateway.jwks_cache_ttl = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let admin = sys.admin_token().await;
    sys.active_user("olga", "olga@example.com", "olga-pass-12")
        .await;
    let before = sys.login("olga", "olga-pass-12").await;
    let old_refresh = before["refresh"].as_str().unwrap().to_owned();
    assert_eq!(header(&admin)["alg"], "EdDSA");
    let old_kid = header(&admin)["kid"].as_str().unwrap().to_owned();

    // Restarted with JWT_ALGORITHM=ES256.
    sys.auth_config.jwt_algorithm = KeyAlgorithm::Es256;
    sys.restart_auth().await;
    let switched = Instant::now();

    // The ES256 key is published at once (once the gateway's cache has
    // turned over) beside the EdDSA key, which still signs.
    let deadline = Instant::now() + Duration::from_secs(3);
    let keys = loop {
        let keys = jwks(&sys).await;
        if keys.len() == 2 {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "the ES256 key was never published: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let algorithms: Vec<_> = keys.iter().map(assert_jwk_shape).collect();
    assert_eq!(algorithms, [KeyAlgorithm::Es256, KeyAlgorithm::EdDsa]);
    let new_kid = keys[0]["kid"].as_str().unwrap().to_owned();
    let during = sys.login("olga", "olga-pass-12").await;
    assert!(
        switched.elapsed() < PUBLISH_DELAY,
        "the delay ran out before the check; raise PUBLISH_DELAY"
    );
    assert_eq!(
        header(during["access"].as_str().unwrap())["kid"],
        old_kid.as_str()
    );
    let (status, _) = sys.get(LOGS, Some(&admin)).await;
    assert_eq!(
        status, 200,
        "the admin's EdDSA token works during the switch"
    );

    // From its not_before the ES256 key signs; the tokens issued before
    // keep working: the access token at the gateway, the refresh token at
    // auth-service (which answers with ES256 tokens).
    tokio::time::sleep(PUBLISH_DELAY.saturating_sub(switched.elapsed()) + Duration::from_secs(1))
        .await;
    let after = sys.login("olga", "olga-pass-12").await;
    let fresh = after["access"].as_str().unwrap().to_owned();
    assert_eq!(header(&fresh)["alg"], "ES256");
    assert_eq!(header(&fresh)["kid"], new_kid.as_str());
    let (status, body) = sys.get(LOGS, Some(&admin)).await;
    assert_eq!(
        status, 200,
        "the admin's EdDSA token after the switch: {body}"
    );
    let (status, body) = sys
        .post_json(
            "/api/accounts/login/refresh/",
            json!({ "refresh": old_refresh }),
        )
        .await;
    assert_eq!(
        status, 200,
        "the EdDSA refresh token after the switch: {body}"
    );
    let rotated = body["access"].as_str().unwrap();
    assert_eq!(header(rotated)["alg"], "ES256");
    let admin_after = sys.login("root", "admin-pass-123").await["access"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = sys.get(LOGS, Some(&admin_after)).await;
    assert_eq!(status, 200);

    // Outside verifiers: PyJWT with both algorithms accepts old and new;
    // simplejwt, configured for ES256, accepts the new tokens.
    pyjwt_accepts(&sys, &["EdDSA", "ES256"], &[&admin, &fresh, rotated]).await;
    for verdict in simplejwt_verdicts(&sys, "ES256", &[&fresh, rotated]).await {
        assert_eq!(verdict["ok"], true, "simplejwt refused: {verdict}");
    }

    // An ES256 header over the EdDSA kid, and an EdDSA header over the
    // ES256 kid: refused.
    for (token, kid, alg) in [(&admin, &old_kid, "ES256"), (&fresh, &new_kid, "EdDSA")] {
        let forged = reheader(token, &json!({"typ": "JWT", "alg": alg, "kid": kid}), None);
        let (status, _) = sys.get(LOGS, Some(&forged)).await;
        assert_eq!(status, 401, "{alg} over {kid}");
    }
    sys.shutdown().await;
}
