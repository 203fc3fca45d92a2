//! Registration, verification and refresh answers, and what backend
//! failures look like to a client.

use serde_json::json;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::helpers::{dead_url, parts, spawn_app, spawn_app_with};
use proto::auth::v1::{VerifyCodeResponse, VerifyOutcome};

const VERIFY: &str = "/api/accounts/verification/code/verify/";

#[tokio::test]
async fn a_verification_code_request_always_answers_success() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            "/api/accounts/verification/code/",
            &json!({"email": "who@example.com"}),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "success"}));
    assert_eq!(app.auth.request_code.only_call().0.email, "who@example.com");
}

#[tokio::test]
async fn a_matching_code_activates_the_user() {
    let app = spawn_app().await;

    let response = app
        .post_json(VERIFY, &json!({"email": "a@b.c", "code": "123456"}))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "message": "user-activated"})
    );
}

#[tokio::test]
async fn failed_verifications_keep_the_old_400_shape() {
    let app = spawn_app().await;
    for (outcome, message) in [
        (VerifyOutcome::CodeWrong, "code-wrong"),
        (VerifyOutcome::CodeExpired, "code-expired"),
        (VerifyOutcome::TooManyAttempts, "too-many-attempts"),
    ] {
        app.auth.verify.reply_with(move |_| {
            Ok(VerifyCodeResponse {
                outcome: outcome.into(),
            })
        });

        let response = app
            .post_json(VERIFY, &json!({"email": "a@b.c", "code": "000000"}))
            .await;

        let (status, _, body) = parts(response).await;
        assert_eq!(status, 400);
        assert_eq!(body, json!({"status": "failed", "message": message}));
    }
}

#[tokio::test]
async fn an_unknown_outcome_is_a_500() {
    let app = spawn_app().await;
    app.auth
        .verify
        .reply_with(|_| Ok(VerifyCodeResponse { outcome: 99 }));

    let response = app
        .post_json(VERIFY, &json!({"email": "a@b.c", "code": "1"}))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"detail": "Internal server error.", "code": "internal"})
    );
}

#[tokio::test]
async fn validation_details_from_auth_service_become_a_field_map() {
    let app = spawn_app().await;
    app.auth.register.reply_with(|_| {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("email", "user with this email already exists.");
        details.add_bad_request_violation("password", "This password is too common.");
        details.add_bad_request_violation("password", "This password is entirely numeric.");
        Err(Status::with_error_details(
            Code::AlreadyExists,
            "taken",
            details,
        ))
    });

    let response = app
        .post_json(
            "/api/accounts/register/",
            &json!({"username": "a", "email": "a@b.c", "password": "12345678"}),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({
            "email": ["user with this email already exists."],
            "password": ["This password is too common.", "This password is entirely numeric."],
        })
    );
}

#[tokio::test]
async fn a_refresh_rotates_the_pair() {
    let app = spawn_app().await;

    let response = app
        .post_json("/api/accounts/login/refresh/", &json!({"refresh": "old"}))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"access":"new-access","refresh":"new-refresh"}"#
    );
    assert_eq!(app.auth.refresh.only_call().0.refresh, "old");
}

#[tokio::test]
async fn a_refresh_without_rotation_answers_the_access_token_alone() {
    let app = spawn_app().await;
    // auth.v1's "keep your refresh token": an empty one.
    app.auth.refresh.reply_with(|_| {
        Ok(proto::auth::v1::TokenPair {
            access: "new-access".into(),
            refresh: String::new(),
        })
    });

    let response = app
        .post_json("/api/accounts/login/refresh/", &json!({"refresh": "kept"}))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"access":"new-access"}"#);
}

#[tokio::test]
async fn a_refused_refresh_is_401_token_not_valid() {
    let app = spawn_app().await;
    app.auth
        .refresh
        .reply_with(|_| Err(Status::unauthenticated("reused")));

    let response = app
        .post_json("/api/accounts/login/refresh/", &json!({"refresh": "used"}))
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})
    );
    assert!(headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn a_refresh_without_a_token_is_400() {
    let app = spawn_app().await;

    let response = app
        .post_json("/api/accounts/login/refresh/", &json!({}))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"refresh": ["This field is required."]}));
}

#[tokio::test]
async fn an_unreachable_auth_service_is_503_retry_after_1() {
    let dead = dead_url().await;
    let app = spawn_app_with(|c| c.auth_grpc_url = dead).await;

    let response = app
        .post_json(
            "/api/accounts/login/",
            &json!({"username": "a", "password": "b"}),
        )
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        body,
        json!({"detail": "Service temporarily unavailable, try again later.", "code": "service_unavailable"})
    );
}

#[tokio::test]
async fn without_auth_service_the_jwk_set_is_503() {
    let dead = dead_url().await;
    let app = spawn_app_with(|c| c.auth_grpc_url = dead).await;

    let response = app.get("/.well-known/jwks.json").await;

    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn backend_internals_never_reach_the_client() {
    let app = spawn_app().await;
    app.auth
        .register
        .reply_with(|_| Err(Status::internal("pq: relation users does not exist")));

    let response = app
        .post_json(
            "/api/accounts/register/",
            &json!({"username": "a", "email": "a@b.c", "password": "pw-123456"}),
        )
        .await;

    assert_eq!(response.status(), 500);
    assert!(!response.text().await.unwrap().contains("relation"));
}
