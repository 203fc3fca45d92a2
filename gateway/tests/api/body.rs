//! Body extraction, seen through registration (and verification for
//! numeric codes): what reaches auth-service and what the client hears.

use serde_json::json;

use crate::helpers::{multipart, parts, spawn_app};

const REGISTER: &str = "/api/accounts/register/";

#[tokio::test]
async fn a_json_registration_reaches_auth_service_and_answers_201() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            REGISTER,
            &json!({"username": "alice", "email": "alice@example.com", "password": "pw-123456"}),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 201);
    assert_eq!(
        body,
        json!({"username": "alice", "email": "alice@example.com"})
    );
    let (request, _) = app.auth.register.only_call();
    assert_eq!(request.username, "alice");
    assert_eq!(request.email, "alice@example.com");
    assert_eq!(request.password, "pw-123456");
    assert_eq!(request.password2, None);
}

#[tokio::test]
async fn a_curl_style_form_is_accepted() {
    let app = spawn_app().await;

    let response = app
        .post_raw(
            REGISTER,
            Some("application/x-www-form-urlencoded"),
            "username=bob&email=bob%40example.com&password=p%26w+x&password2=p%26w+x",
        )
        .await;

    assert_eq!(response.status(), 201);
    let (request, _) = app.auth.register.only_call();
    assert_eq!(request.email, "bob@example.com");
    assert_eq!(request.password, "p&w x");
    assert_eq!(request.password2.as_deref(), Some("p&w x"));
}

#[tokio::test]
async fn a_multipart_form_is_accepted() {
    let app = spawn_app().await;
    let (content_type, body) = multipart(&[
        ("username", "carol"),
        ("email", "carol@example.com"),
        ("password", "pw-123456"),
    ]);

    let response = app.post_raw(REGISTER, Some(&content_type), body).await;

    assert_eq!(response.status(), 201);
    assert_eq!(app.auth.register.only_call().0.username, "carol");
}

#[tokio::test]
async fn a_numeric_code_is_passed_on_as_a_string() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            "/api/accounts/verification/code/verify/",
            &json!({"email": "a@b.c", "code": 123456}),
        )
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.auth.verify.only_call().0.code, "123456");
}

#[tokio::test]
async fn a_numeric_code_keeps_its_leading_zero_and_the_passwords_are_passed_on() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            "/api/accounts/verification/code/verify/",
            &json!({"email": "a@b.c", "code": 12345, "password": " pass word ", "new_password": "n"}),
        )
        .await;

    assert_eq!(response.status(), 200);
    let (request, _) = app.auth.verify.only_call();
    assert_eq!(request.code, "012345");
    assert_eq!(request.password.as_deref(), Some(" pass word "));
    assert_eq!(request.new_password.as_deref(), Some("n"));
}

#[tokio::test]
async fn a_code_that_is_another_number_is_refused_without_calling_auth() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            "/api/accounts/verification/code/verify/",
            &json!({"email": "a@b.c", "code": 1234567, "password": "p"}),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert!(body["code"][0].is_string(), "{body}");
    assert!(app.auth.verify.calls().is_empty());
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_refused_without_calling_auth() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            REGISTER,
            &json!({"username": ["alice"], "email": true, "password": null}),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({
            "username": ["Not a valid string."],
            "email": ["Not a valid string."],
            "password": ["This field may not be null."],
        })
    );
    assert!(app.auth.register.calls().is_empty());
}

#[tokio::test]
async fn unknown_fields_are_ignored_whatever_their_type() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            REGISTER,
            &json!({"username": "d", "email": "d@e.f", "password": "pw-123456",
                    "extra": {"nested": [1, 2]}, "is_staff": true}),
        )
        .await;

    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn missing_and_blank_fields_are_all_reported() {
    let app = spawn_app().await;

    let response = app
        .post_json(REGISTER, &json!({"username": "  ", "password": ""}))
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({
            "username": ["This field may not be blank."],
            "email": ["This field is required."],
            "password": ["This field may not be blank."],
        })
    );
}

#[tokio::test]
async fn unparsable_json_is_a_400_with_a_short_reason() {
    let app = spawn_app().await;

    let response = app
        .post_raw(REGISTER, Some("application/json"), "{\"username\": ")
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("JSON parse error - "), "{detail}");
    assert!(app.auth.register.calls().is_empty());
}

/// Bodies it cannot read: JSON that is not an object (400), another media
/// type or none (415), over 64 KiB (413); each with the original's message,
/// and none reaches auth-service.
#[tokio::test]
async fn unreadable_bodies_are_refused_with_the_originals_messages() {
    let app = spawn_app().await;
    let big = format!("{{\"username\": \"{}\"}}", "a".repeat(70_000));
    let cases = [
        (
            Some("application/json"),
            "[1, 2]".to_owned(),
            400,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        ),
        (
            Some("text/plain; charset=utf-8"),
            "username=x".to_owned(),
            415,
            json!({"detail": "Unsupported media type \"text/plain; charset=utf-8\" in request."}),
        ),
        (
            None,
            "username=x".to_owned(),
            415,
            json!({"detail": "Unsupported media type \"\" in request."}),
        ),
        (
            Some("application/json"),
            big,
            413,
            json!({"detail": "Request body too large (limit 65536 bytes)."}),
        ),
    ];
    for (content_type, body, status, expected) in cases {
        let response = app.post_raw(REGISTER, content_type, body).await;

        let (got, _, answer) = parts(response).await;
        assert_eq!((got, answer), (status, expected), "{content_type:?}");
    }
    assert!(app.auth.register.calls().is_empty());
}

#[tokio::test]
async fn no_content_type_and_no_body_is_an_empty_form() {
    let app = spawn_app().await;

    let response = app.post_raw(REGISTER, None, "").await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["username"], json!(["This field is required."]));
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_too() {
    let app = spawn_app().await;
    // A stream has no Content-Length, so the limit must hold while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'a'; 8192])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));

    let response = app
        .post_raw(REGISTER, Some("application/x-www-form-urlencoded"), body)
        .await;

    assert_eq!(response.status(), 413);
}
