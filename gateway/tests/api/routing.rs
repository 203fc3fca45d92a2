//! Paths, methods, request ids: the parts of the contract no handler owns.

use serde_json::json;

use crate::helpers::{md, parts, spawn_app};

#[tokio::test]
async fn unknown_paths_are_a_json_404() {
    let app = spawn_app().await;

    let (status, headers, body) = parts(app.get("/nope").await).await;

    assert_eq!(status, 404);
    assert_eq!(body, json!({"detail": "Not found."}));
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn paths_need_their_trailing_slash() {
    let app = spawn_app().await;

    let response = app.post_json("/api/accounts/login", &json!({})).await;

    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_wrong_method_on_a_known_path_is_a_json_405() {
    let app = spawn_app().await;

    let (status, headers, body) = parts(app.get("/api/accounts/register/").await).await;

    assert_eq!(status, 405);
    assert_eq!(body, json!({"detail": "Method \"GET\" not allowed."}));
    assert_eq!(headers["allow"], "POST");
}

#[tokio::test]
async fn posting_to_the_log_listing_is_a_405() {
    let app = spawn_app().await;

    let response = app
        .post_json("/api/accounts/logs/login/attemps/", &json!({}))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 405);
    assert_eq!(body, json!({"detail": "Method \"POST\" not allowed."}));
}

#[tokio::test]
async fn every_path_of_the_contract_exists() {
    let app = spawn_app().await;
    for path in [
        "/api/accounts/register/",
        "/api/accounts/verification/code/",
        "/api/accounts/verification/code/verify/",
        "/api/accounts/login/",
        "/api/accounts/login/refresh/",
    ] {
        let response = app.http.delete(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{path}");
    }
    let response = app.get("/api/accounts/logs/login/attemps/").await;
    assert_eq!(response.status(), 401);
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_sane_request_id_is_kept_echoed_and_forwarded() {
    let app = spawn_app().await;

    let response = app
        .http
        .post(app.url("/api/accounts/verification/code/"))
        .header("x-request-id", "client-id-42")
        .json(&json!({"email": "a@b.c"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()["x-request-id"], "client-id-42");
    let (_, metadata) = app.auth.request_code.only_call();
    assert_eq!(md(&metadata, "x-request-id"), Some("client-id-42"));
}

#[tokio::test]
async fn an_odd_request_id_is_replaced_by_a_fresh_uuid() {
    let app = spawn_app().await;

    let response = app
        .http
        .post(app.url("/api/accounts/verification/code/"))
        .header("x-request-id", "a".repeat(129))
        .json(&json!({"email": "a@b.c"}))
        .send()
        .await
        .unwrap();

    let echoed = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
    let (_, metadata) = app.auth.request_code.only_call();
    assert_eq!(md(&metadata, "x-request-id"), Some(echoed.as_str()));
}

#[tokio::test]
async fn requests_without_an_id_get_one() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
}

#[tokio::test]
async fn the_jwk_set_is_published_from_auth_service() {
    let app = spawn_app().await;

    let (status, headers, body) = parts(app.get("/.well-known/jwks.json").await).await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": app.key.jwk.x, "kid": "test-key-1",
            "alg": "EdDSA", "use": "sig",
        }]})
    );
    assert!(headers.contains_key("cache-control"));
    // A second request is served from the cache.
    app.get("/.well-known/jwks.json").await;
    let calls = app.auth.jwks.calls();
    assert_eq!(calls.len(), 1);
    assert!(md(&calls[0].1, "x-request-id").is_some());
}
