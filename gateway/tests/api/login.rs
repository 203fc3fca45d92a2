//! Login: every attempt reaches auth-service, malformed ones included.

use serde_json::json;
use tonic::{Code, Status, metadata::MetadataMap};

use crate::helpers::{md, parts, spawn_app, spawn_app_with};

const LOGIN: &str = "/api/accounts/login/";

#[tokio::test]
async fn good_credentials_get_a_token_pair_in_simplejwt_order() {
    let app = spawn_app().await;

    let response = app
        .http
        .post(app.url(LOGIN))
        .header("user-agent", "test-agent/1")
        .json(&json!({"username": "alice", "password": "right-password"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"refresh":"the-refresh","access":"the-access"}"#
    );
    let (request, metadata) = app.auth.login.only_call();
    assert_eq!(request.username, "alice");
    assert_eq!(request.password, "right-password");
    assert!(request.malformed_fields.is_empty());
    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
    assert_eq!(md(&metadata, "x-client-user-agent"), Some("test-agent/1"));
    assert!(md(&metadata, "x-request-id").is_some());
}

#[tokio::test]
async fn bad_credentials_are_401_no_active_account() {
    let app = spawn_app().await;

    let response = app
        .post_json(LOGIN, &json!({"username": "alice", "password": "wrong"}))
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"detail": "No active account found with the given credentials", "code": "no_active_account"})
    );
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"api\"");
}

#[tokio::test]
async fn a_login_without_a_user_agent_still_works() {
    // The old service crashed on this and logged nothing.
    let app = spawn_app().await;

    let response = app
        .post_json(
            LOGIN,
            &json!({"username": "alice", "password": "right-password"}),
        )
        .await;

    assert_eq!(response.status(), 200);
    let (_, metadata) = app.auth.login.only_call();
    assert_eq!(md(&metadata, "x-client-user-agent"), None);
}

fn only_malformed_call(
    app: &crate::helpers::TestApp,
) -> (proto::auth::v1::LoginRequest, MetadataMap) {
    let (request, metadata) = app.auth.login.only_call();
    assert_eq!(
        request.password, "",
        "the password of a refused attempt is not sent"
    );
    (request, metadata)
}

#[tokio::test]
async fn unparsable_json_is_recorded_and_answered_400() {
    let app = spawn_app().await;

    let response = app
        .post_raw(
            LOGIN,
            Some("application/json"),
            "{\"username\": \"alice\", ",
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error - ")
    );
    let (request, metadata) = only_malformed_call(&app);
    assert_eq!(request.malformed_fields, ["body"]);
    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn an_unsupported_media_type_is_recorded_and_answered_415() {
    let app = spawn_app().await;

    let response = app.post_raw(LOGIN, Some("text/xml"), "<login/>").await;

    assert_eq!(response.status(), 415);
    assert_eq!(only_malformed_call(&app).0.malformed_fields, ["body"]);
}

#[tokio::test]
async fn an_oversized_body_is_recorded_and_answered_413() {
    let app = spawn_app().await;
    let big = format!("username=alice&password={}", "x".repeat(70_000));

    let response = app
        .post_raw(LOGIN, Some("application/x-www-form-urlencoded"), big)
        .await;

    assert_eq!(response.status(), 413);
    assert_eq!(only_malformed_call(&app).0.malformed_fields, ["body"]);
}

#[tokio::test]
async fn a_missing_password_is_recorded_with_the_username() {
    let app = spawn_app().await;

    let response = app.post_json(LOGIN, &json!({"username": "alice"})).await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"password": ["This field is required."]}));
    let (request, _) = only_malformed_call(&app);
    assert_eq!(request.username, "alice");
    assert_eq!(request.malformed_fields, ["password"]);
}

#[tokio::test]
async fn a_username_of_the_wrong_type_is_recorded_as_malformed() {
    let app = spawn_app().await;

    let response = app
        .post_json(LOGIN, &json!({"username": {"$ne": ""}, "password": "x"}))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"username": ["Not a valid string."]}));
    let (request, _) = only_malformed_call(&app);
    assert_eq!(request.username, "");
    assert_eq!(request.malformed_fields, ["username"]);
}

#[tokio::test]
async fn an_empty_login_names_both_fields() {
    let app = spawn_app().await;

    let response = app.post_raw(LOGIN, None, "").await;

    assert_eq!(response.status(), 400);
    assert_eq!(
        only_malformed_call(&app).0.malformed_fields,
        ["username", "password"]
    );
}

#[tokio::test]
async fn a_malformed_login_still_gets_its_400_when_auth_service_is_down() {
    let dead = crate::helpers::dead_url().await;
    let app = spawn_app_with(|c| c.auth_grpc_url = dead).await;

    let response = app.post_raw(LOGIN, Some("application/json"), "{").await;

    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn throttled_logins_are_429_with_retry_after() {
    let app = spawn_app().await;
    app.auth.login.reply_with(|_| {
        let mut md = MetadataMap::new();
        md.insert("retry-after", "30".parse().unwrap());
        Err(Status::with_metadata(Code::ResourceExhausted, "locked", md))
    });

    let response = app
        .post_json(LOGIN, &json!({"username": "alice", "password": "x"}))
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(
        body,
        json!({"detail": "Request was throttled.", "code": "throttled"})
    );
}

#[tokio::test]
async fn tokens_for_a_malformed_login_are_never_passed_on() {
    let app = spawn_app().await;
    app.auth.login.reply_with(|_| {
        Ok(proto::auth::v1::TokenPair {
            access: "leak".into(),
            refresh: "leak".into(),
        })
    });

    let response = app.post_json(LOGIN, &json!({"username": "alice"})).await;

    assert_eq!(response.status(), 400);
    assert!(!response.text().await.unwrap().contains("leak"));
}
