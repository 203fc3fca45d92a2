//! Key rollover seen from outside: third-party verifiers (PyJWT's
//! `PyJWKClient`, and jsonwebtoken's JWK support) check our tokens against
//! `/.well-known/jwks.json` across `rotate-keys`, with the delays made short.

use std::time::{Duration, Instant};

use auth_service::admin::{Rollover, rotate_keys};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;
use system_tests::{Backend, TestSystem, pyjwt::PyJwt};

on_every_backend!(
    a_scheduled_rotation_is_published_before_it_signs_and_verifiers_never_fail,
    an_emergency_rotation_is_published_at_the_first_token_it_signs,
);

/// How long a rotated key is published before it signs, in these tests.
const PUBLISH_DELAY: Duration = Duration::from_secs(4);
/// The gateway's key cache lifetime, in these tests (within the delay).
const GATEWAY_CACHE: Duration = Duration::from_secs(1);

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn access_token(sys: &TestSystem, username: &str, password: &str) -> String {
    sys.login(username, password).await["access"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn published_kids(sys: &TestSystem) -> Vec<String> {
    let (status, body) = sys.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200, "{body}");
    body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Verifies `token` as a Rust service would: jsonwebtoken with the key of
/// its `kid` from the JWKS the gateway serves right now.
async fn verify_with_jsonwebtoken(sys: &TestSystem, token: &str) -> Result<Value, String> {
    let (_, body) = sys.get("/.well-known/jwks.json", None).await;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(body).unwrap();
    let jwk = set
        .find(&kid(token))
        .ok_or_else(|| format!("kid {} is not published", kid(token)))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["auth-service"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

/// PyJWT's verdict, asserting it accepted `token` as signed by `kid`;
/// `None` verifier (no PyJWT outside CI) checks nothing.
async fn pyjwt_accepts(verifier: Option<PyJwt>, token: &str, what: &str) -> Option<PyJwt> {
    let verifier = verifier?;
    let (verifier, verdict) = verifier.verify(token).await;
    assert_eq!(verdict["ok"], true, "PyJWT refused {what}: {verdict}");
    assert_eq!(verdict["kid"].as_str(), Some(kid(token).as_str()));
    assert_eq!(verdict["claims"]["token_type"], "access");
    Some(verifier)
}

async fn a_scheduled_rotation_is_published_before_it_signs_and_verifiers_never_fail(
    backend: Backend,
) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gateway| {
        auth.key_publish_delay = PUBLISH_DELAY;
        gateway.jwks_cache_ttl = GATEWAY_CACHE;
    })
    .await
    else {
        return;
    };
    sys.active_user("kira", "kira@example.com", "kira-pass-12")
        .await;
    let old = access_token(&sys, "kira", "kira-pass-12").await;
    let old_kid = kid(&old);
    // PyJWT's defaults, but its key set cached for as long as the
    // gateway's: the publish delay covers both caches, so PyJWT never has to
    // refetch on an unknown kid (which its 30 s cooldown would refuse, the
    // failure this fixes).
    let verifier = PyJwt::start(
        &sys.url("/.well-known/jwks.json"),
        "auth-service",
        GATEWAY_CACHE,
        Duration::from_secs(30),
    );
    let verifier = pyjwt_accepts(verifier, &old, "a token from before the rotation").await;
    assert_eq!(published_kids(&sys).await, std::slice::from_ref(&old_kid));

    let rotated = rotate_keys(&sys.auth_config, Rollover::Scheduled)
        .await
        .unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    assert!(
        rotated.not_before >= now + 3,
        "{} vs {now}",
        rotated.not_before
    );
    let starts =
        Instant::now() + Duration::from_secs(u64::try_from(rotated.not_before - now).unwrap());

    // Published (once the gateway's cache has turned over) while the old
    // key still signs every token.
    let deadline = Instant::now() + GATEWAY_CACHE + Duration::from_millis(1500);
    loop {
        let kids = published_kids(&sys).await;
        if kids.contains(&rotated.kid) {
            assert!(kids.contains(&old_kid), "{kids:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the new key was never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = access_token(&sys, "kira", "kira-pass-12").await;
    assert!(
        Instant::now() < starts,
        "the delay ran out before the check; raise PUBLISH_DELAY"
    );
    assert_eq!(kid(&before), old_kid, "the new key signed before its time");

    // From its start the new key signs, and both verifiers accept the
    // fresh token and the old ones.
    tokio::time::sleep(starts.saturating_duration_since(Instant::now()) + Duration::from_secs(1))
        .await;
    let fresh = access_token(&sys, "kira", "kira-pass-12").await;
    assert_eq!(kid(&fresh), rotated.kid);
    let verifier = pyjwt_accepts(verifier, &fresh, "a token signed by the new key").await;
    let _ = pyjwt_accepts(verifier, &old, "a token signed by the old key").await;
    for token in [&fresh, &old, &before] {
        let claims = verify_with_jsonwebtoken(&sys, token).await.unwrap();
        assert_eq!(claims["username"], "kira");
    }
    sys.shutdown().await;
}

async fn an_emergency_rotation_is_published_at_the_first_token_it_signs(backend: Backend) {
    // The gateway's default cache lifetime: without the signer check, the
    // set cached below would be served for another minute. auth-service
    // re-reads its keys every second here (every minute by default).
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.key_reload_interval = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    sys.active_user("lars", "lars@example.com", "lars-pass-12")
        .await;
    let old = access_token(&sys, "lars", "lars-pass-12").await;
    // A client that caches the set for PyJWT's default 5 minutes and
    // refetches on every unknown kid (no cooldown). With PyJWT's default
    // 30 s cooldown it would refuse the new tokens for up to 30 s: an
    // emergency rotation breaks cached verifiers, as documented.
    let verifier = PyJwt::start(
        &sys.url("/.well-known/jwks.json"),
        "auth-service",
        Duration::from_secs(300),
        Duration::ZERO,
    );
    let verifier = pyjwt_accepts(verifier, &old, "a token from before the rotation").await;

    let rotated = rotate_keys(&sys.auth_config, Rollover::Immediate)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = loop {
        let token = access_token(&sys, "lars", "lars-pass-12").await;
        if kid(&token) == rotated.kid {
            break token;
        }
        assert!(Instant::now() < deadline, "the emergency key never signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(published_kids(&sys).await.contains(&rotated.kid));
    let _ = pyjwt_accepts(verifier, &fresh, "a token signed by the emergency key").await;
    verify_with_jsonwebtoken(&sys, &fresh).await.unwrap();
    sys.shutdown().await;
}
