//! The password routes' mapping between REST and auth-service: what each
//! body becomes, what each answer and failure looks like to a client.

use serde_json::json;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::helpers::{md, multipart, parts, spawn_app};
use proto::auth::v1::{ResetOutcome, ResetPasswordResponse};

const CHANGE: &str = "/api/accounts/password/change/";
const RESET: &str = "/api/accounts/password/reset/";
const CONFIRM: &str = "/api/accounts/password/reset/confirm/";

#[tokio::test]
async fn a_change_passes_the_bearer_token_and_fields_on_and_answers_the_fresh_pair() {
    let app = spawn_app().await;

    let response = app
        .http
        .post(app.url(CHANGE))
        .bearer_auth("the-access")
        .json(&json!({"old_password": " old pass ", "new_password": "new-pass-1", "new_password2": "new-pass-1"}))
        .send()
        .await
        .unwrap();

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        body,
        json!({"refresh": "changed-refresh", "access": "changed-access"})
    );
    let (request, metadata) = app.auth.change_password.only_call();
    assert_eq!(request.access, "the-access");
    // Spaces are password characters.
    assert_eq!(request.old_password, " old pass ");
    assert_eq!(request.new_password, "new-pass-1");
    assert_eq!(request.new_password2.as_deref(), Some("new-pass-1"));
    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_change_reads_form_bodies_too() {
    let app = spawn_app().await;
    let (content_type, body) = multipart(&[
        ("old_password", "old-pass-1"),
        ("new_password", "new-pass-1"),
    ]);

    let response = app
        .http
        .post(app.url(CHANGE))
        .bearer_auth("the-access")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let (request, _) = app.auth.change_password.only_call();
    assert_eq!(request.new_password2, None);
}

#[tokio::test]
async fn a_change_without_a_bearer_token_is_401_and_reaches_nobody() {
    let app = spawn_app().await;

    let response = app
        .post_json(CHANGE, &json!({"old_password": "a", "new_password": "b"}))
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(body["code"], "not_authenticated");
    assert!(app.auth.change_password.calls().is_empty());
}

#[tokio::test]
async fn a_change_with_a_refused_token_is_401_token_not_valid() {
    let app = spawn_app().await;
    app.auth
        .change_password
        .reply_with(|_| Err(Status::unauthenticated("Token is invalid or expired")));

    let response = app
        .http
        .post(app.url(CHANGE))
        .bearer_auth("revoked")
        .json(&json!({"old_password": "old-pass-1", "new_password": "new-pass-1"}))
        .send()
        .await
        .unwrap();

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(body["code"], "token_not_valid");
}

#[tokio::test]
async fn a_wrong_current_password_is_a_field_error_naming_old_password() {
    let app = spawn_app().await;
    app.auth.change_password.reply_with(|_| {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation(
            "old_password",
            "Your old password was entered incorrectly. Please enter it again.",
        );
        Err(Status::with_error_details(
            Code::InvalidArgument,
            "invalid request",
            details,
        ))
    });

    let response = app
        .http
        .post(app.url(CHANGE))
        .bearer_auth("the-access")
        .json(&json!({"old_password": "wrong-pass", "new_password": "new-pass-1"}))
        .send()
        .await
        .unwrap();

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"old_password": ["Your old password was entered incorrectly. Please enter it again."]})
    );
}

#[tokio::test]
async fn missing_or_mistyped_password_fields_are_named_before_any_call() {
    let app = spawn_app().await;
    for (body, fields) in [
        (json!({}), vec!["new_password", "old_password"]),
        (
            json!({"old_password": "", "new_password": "x"}),
            vec!["old_password"],
        ),
        (
            json!({"old_password": null, "new_password": ["x"]}),
            vec!["new_password", "old_password"],
        ),
    ] {
        let response = app
            .http
            .post(app.url(CHANGE))
            .bearer_auth("the-access")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, answer) = parts(response).await;
        assert_eq!(status, 400, "{body}");
        let mut named: Vec<&str> = answer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        named.sort_unstable();
        assert_eq!(named, fields, "{body} -> {answer}");
    }
    assert!(app.auth.change_password.calls().is_empty());
}

#[tokio::test]
async fn a_reset_request_always_answers_success() {
    let app = spawn_app().await;

    let response = app
        .post_json(RESET, &json!({"email": "who@example.com"}))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "success"}));
    assert_eq!(
        app.auth.request_reset.only_call().0.email,
        "who@example.com"
    );
}

#[tokio::test]
async fn reset_outcomes_keep_the_verification_shapes() {
    let app = spawn_app().await;
    let body = json!({"email": "a@b.c", "code": 123456, "new_password": "new-pass-1"});

    let (status, _, answer) = parts(app.post_json(CONFIRM, &body).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"status": "success", "message": "password-reset"})
    );
    let (request, _) = app.auth.reset.only_call();
    assert_eq!(request.code, "123456");
    assert_eq!(request.new_password, "new-pass-1");

    for (outcome, message) in [
        (ResetOutcome::CodeWrong, "code-wrong"),
        (ResetOutcome::CodeExpired, "code-expired"),
        (ResetOutcome::TooManyAttempts, "too-many-attempts"),
    ] {
        app.auth.reset.reply_with(move |_| {
            Ok(ResetPasswordResponse {
                outcome: outcome.into(),
            })
        });
        let (status, _, answer) = parts(app.post_json(CONFIRM, &body).await).await;
        assert_eq!(status, 400);
        assert_eq!(answer, json!({"status": "failed", "message": message}));
    }
}

#[tokio::test]
async fn a_throttled_reset_is_429_with_retry_after() {
    let app = spawn_app().await;
    app.auth.request_reset.reply_with(|_| {
        let mut status = Status::resource_exhausted("too many attempts, retry later");
        status.metadata_mut().insert("retry-after", 42.into());
        Err(status)
    });

    let (status, headers, body) =
        parts(app.post_json(RESET, &json!({"email": "a@b.c"})).await).await;

    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "42");
    assert_eq!(body["code"], "throttled");
}
