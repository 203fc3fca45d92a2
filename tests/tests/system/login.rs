//! Login outcomes, and that every attempt reaches the audit log.

use proto::auth::v1::{
    GetJwksRequest, IntrospectTokenRequest, auth_service_client::AuthServiceClient,
};
use serde_json::json;
use system_tests::{Backend, TestSystem};

on_every_backend!(
    every_login_failure_gets_the_same_401_and_its_own_log_reason,
    malformed_and_agentless_logins_are_logged_too,
    internal_callers_can_introspect_tokens_and_read_jwks,
    signing_keys_survive_a_restart,
);

const DENIED: &str = "No active account found with the given credentials";

async fn every_login_failure_gets_the_same_401_and_its_own_log_reason(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("ivy", "ivy@example.com", "ivy-pass-12")
        .await;
    let inactive =
        json!({"username": "jack", "email": "jack@example.com", "password": "jack-pass-1"});
    assert_eq!(
        sys.post_json("/api/accounts/register/", inactive).await.0,
        201
    );

    let tries = [
        ("nobody", "whatever-1", "unknown_user"),
        ("ivy", "wrong-pass", "bad_password"),
        ("jack", "jack-pass-1", "inactive"),
    ];
    for (username, password, _) in tries {
        let resp = sys
            .http
            .post(sys.url("/api/accounts/login/"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(resp.headers().get("www-authenticate").is_some());
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["detail"], DENIED);
    }
    sys.login("ivy@example.com", "ivy-pass-12").await;

    let log = sys.wait_for_attempts(4).await;
    assert_eq!(log.len(), 4);
    for (username, _, reason) in tries {
        let rec = log
            .iter()
            .map(|r| r.attempt.as_ref().unwrap())
            .find(|a| a.identifier == username)
            .unwrap_or_else(|| panic!("no attempt for {username}"));
        assert_eq!(rec.reason().code(), reason);
        assert!(!rec.successful);
    }
    let ok = log
        .iter()
        .map(|r| r.attempt.as_ref().unwrap())
        .find(|a| a.successful)
        .unwrap();
    assert_eq!(ok.identifier, "ivy@example.com");
    assert_eq!(ok.username.as_deref(), Some("ivy"));
    assert!(ok.user_id.is_some());
    assert_eq!(ok.ip, "127.0.0.1");
    sys.shutdown().await;
}

async fn malformed_and_agentless_logins_are_logged_too(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    // Missing password.
    let (status, body) = sys
        .post_json("/api/accounts/login/", json!({"username": "kim"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["password"], json!(["This field is required."]));
    // Unparsable JSON.
    let resp = sys
        .http
        .post(sys.url("/api/accounts/login/"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Unsupported media type.
    let resp = sys
        .http
        .post(sys.url("/api/accounts/login/"))
        .header("content-type", "text/plain")
        .body("username=kim")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    // No User-Agent at all (the old system answered 500 and logged nothing).
    let bare = reqwest::Client::builder().build().unwrap();
    let resp = bare
        .post(sys.url("/api/accounts/login/"))
        .form(&[("username", "kim"), ("password", "kim-pass-12")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    let log = sys.wait_for_attempts(4).await;
    assert_eq!(log.len(), 4);
    let malformed = log
        .iter()
        .filter(|r| r.attempt.as_ref().unwrap().reason().code() == "malformed_request")
        .count();
    assert_eq!(malformed, 3);
    let agentless = log
        .iter()
        .map(|r| r.attempt.as_ref().unwrap())
        .find(|a| a.reason().code() == "unknown_user")
        .unwrap();
    assert_eq!(agentless.user_agent, None);
    sys.shutdown().await;
}

async fn internal_callers_can_introspect_tokens_and_read_jwks(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("lena", "lena@example.com", "lena-pass-1")
        .await;
    let pair = sys.login("lena", "lena-pass-1").await;
    let mut client = AuthServiceClient::connect(sys.auth_url.clone())
        .await
        .unwrap();

    let info = client
        .introspect_token(IntrospectTokenRequest {
            token: pair["access"].as_str().unwrap().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(info.active);
    assert_eq!(info.username, "lena");
    assert!(!info.is_staff);

    let refresh_as_access = client
        .introspect_token(IntrospectTokenRequest {
            token: pair["refresh"].as_str().unwrap().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!refresh_as_access.active);

    let jwks = client
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].alg, "EdDSA");
    let (status, body) = sys.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"][0]["kid"], jwks.keys[0].kid.as_str());
    assert_eq!(body["keys"][0]["x"], jwks.keys[0].x.as_str());
    sys.shutdown().await;
}

async fn signing_keys_survive_a_restart(backend: Backend) {
    let Some(mut sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("mona", "mona@example.com", "mona-pass-1")
        .await;
    let pair = sys.login("mona", "mona-pass-1").await;
    sys.restart_auth().await;
    let (status, body) = sys
        .post_json(
            "/api/accounts/login/refresh/",
            json!({"refresh": pair["refresh"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sys.shutdown().await;
}
