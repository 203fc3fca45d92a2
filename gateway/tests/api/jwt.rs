//! The token extractors on their own, with a fixed key set (no auth-service):
//! a tiny router whose handler needs an `AdminUser` or `AuthUser`.

use std::sync::Arc;

use axum::{Router, body::Body, http::Request, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use gateway::auth::{AdminUser, AuthUser, KeyCache, StaticJwks, TokenVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{TestKey, claims, now};

fn router(key: &TestKey) -> Router {
    let cache = Arc::new(KeyCache::new(Arc::new(StaticJwks(vec![key.jwk.clone()]))));
    let verifier = Arc::new(TokenVerifier::new(cache, "auth-service"));
    Router::new()
        .route(
            "/admin",
            get(|AdminUser(c): AdminUser| async move { c.username }),
        )
        .route(
            "/user",
            get(|AuthUser(c): AuthUser| async move { c.user_id.to_string() }),
        )
        .with_state(verifier)
}

async fn call(router: Router, path: &str, authorization: Option<&str>) -> (u16, Value, bool) {
    let mut request = Request::get(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenged = response
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v == "Bearer realm=\"api\"");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body, challenged)
}

async fn admin(key: &TestKey, token: &str) -> (u16, Value, bool) {
    call(router(key), "/admin", Some(&format!("Bearer {token}"))).await
}

/// simplejwt's answer to a bearer token its `AccessToken` class refused
/// with `message`.
fn assert_refused(reply: (u16, Value, bool), message: &str) {
    let (status, body, challenged) = reply;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({
            "detail": "Given token not valid for any token type",
            "code": "token_not_valid",
            "messages": [{"token_class": "AccessToken", "token_type": "access", "message": message}],
        })
    );
    assert!(challenged, "401 without WWW-Authenticate");
}

fn assert_token_not_valid(reply: (u16, Value, bool)) {
    assert_refused(reply, "Token is invalid or expired");
}

#[tokio::test]
async fn a_valid_admin_token_passes() {
    let key = TestKey::generate("k1");
    let (status, body, _) = admin(&key, &key.access_token(true)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "admin");
}

#[tokio::test]
async fn a_valid_user_token_passes_auth_user() {
    let key = TestKey::generate("k1");
    let token = key.access_token(false);
    let (status, body, _) = call(router(&key), "/user", Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200);
    assert_eq!(body, 7);
}

#[tokio::test]
async fn a_non_admin_is_forbidden() {
    let key = TestKey::generate("k1");
    let (status, body, challenged) = admin(&key, &key.access_token(false)).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "permission_denied");
    assert!(!challenged);
}

#[tokio::test]
async fn a_missing_header_is_not_authenticated() {
    let key = TestKey::generate("k1");
    let (status, body, challenged) = call(router(&key), "/admin", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"detail": "Authentication credentials were not provided.", "code": "not_authenticated"})
    );
    assert!(challenged);
}

#[tokio::test]
async fn another_scheme_is_not_authenticated() {
    let key = TestKey::generate("k1");
    let (status, body, _) = call(router(&key), "/admin", Some("Basic YWxpY2U6cHc=")).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "not_authenticated");
}

#[tokio::test]
async fn a_bearer_without_a_single_token_is_a_bad_header() {
    let key = TestKey::generate("k1");
    for header in ["Bearer", "Bearer a b"] {
        let (status, body, challenged) = call(router(&key), "/admin", Some(header)).await;
        assert_eq!(status, 401, "{header}");
        assert_eq!(
            body,
            json!({"detail": "Authorization header must contain two space-delimited values",
                   "code": "bad_authorization_header"})
        );
        assert!(challenged);
    }
    assert_token_not_valid(call(router(&key), "/admin", Some("Bearer not.a.jwt")).await);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let key = TestKey::generate("k1");
    let mut c = claims("access", true);
    c["exp"] = json!(now() - 60);
    c["iat"] = json!(now() - 360);
    assert_token_not_valid(admin(&key, &key.sign(&c)).await);
}

#[tokio::test]
async fn a_refresh_token_is_refused() {
    let key = TestKey::generate("k1");
    assert_refused(
        admin(&key, &key.sign(&claims("refresh", true))).await,
        "Token has wrong type",
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let key = TestKey::generate("k1");
    let mut c = claims("access", true);
    c["iss"] = json!("someone-else");
    assert_token_not_valid(admin(&key, &key.sign(&c)).await);
    c.as_object_mut().unwrap().remove("iss");
    assert_token_not_valid(admin(&key, &key.sign(&c)).await);
}

#[tokio::test]
async fn a_token_without_expiry_is_refused() {
    let key = TestKey::generate("k1");
    let mut c = claims("access", true);
    c.as_object_mut().unwrap().remove("exp");
    assert_token_not_valid(admin(&key, &key.sign(&c)).await);
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let key = TestKey::generate("k1");
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "k1"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims("access", true).to_string());
    assert_token_not_valid(admin(&key, &format!("{header}.{payload}.")).await);
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    // The classic key-confusion attack: sign with HMAC using the public key
    // as the secret and hope the verifier follows the header's `alg`.
    let key = TestKey::generate("k1");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    for secret in [key.public.to_vec(), key.jwk.x.clone().into_bytes()] {
        let token = jsonwebtoken::encode(
            &header,
            &claims("access", true),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_token_not_valid(admin(&key, &token).await);
    }
}

#[tokio::test]
async fn a_token_from_an_unknown_key_is_refused() {
    let key = TestKey::generate("k1");
    let stranger = TestKey::generate("k2");
    assert_token_not_valid(admin(&key, &stranger.access_token(true)).await);
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_our_kid_is_refused() {
    let key = TestKey::generate("k1");
    let impostor = TestKey::generate("k1");
    assert_token_not_valid(admin(&key, &impostor.access_token(true)).await);
}

#[tokio::test]
async fn a_token_without_a_kid_is_refused() {
    let key = TestKey::generate("k1");
    // A correctly signed token whose header simply lacks `kid`.
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims("access", true),
        key.encoding_key(),
    )
    .unwrap();
    assert_token_not_valid(admin(&key, &token).await);
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let key = TestKey::generate("k1");
    let token = key.access_token(false);
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims("access", true).to_string());
    parts[1] = &forged;
    assert_token_not_valid(admin(&key, &parts.join(".")).await);
}
