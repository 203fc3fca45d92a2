//! The gRPC surface as internal callers see it: statuses, field details
//! and the throttling metadata, over real HTTP/2 on loopback.

use proto::auth::v1::LoginRequest;
use tonic::{Code, Request};

use crate::helpers::TestApp;

fn login_from(ip: &str, username: &str, password: &str) -> Request<LoginRequest> {
    let mut req = Request::new(LoginRequest {
        username: username.to_owned(),
        password: password.to_owned(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-client-ip", ip.parse().unwrap());
    req
}

#[tokio::test]
async fn a_throttled_login_is_resource_exhausted_with_retry_after() {
    let mut app = TestApp::spawn(|config| config.brute_force.ip_failures = 2).await;
    for _ in 0..2 {
        let status = app
            .client
            .login(login_from("192.0.2.9", "nobody", "guess-pass-1"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(
            status.message(),
            "No active account found with the given credentials"
        );
    }
    let status = app
        .client
        .login(login_from("192.0.2.9", "nobody", "guess-pass-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_retry_after_within_ten_minutes(&status);
    // Another address is not held back.
    let status = app
        .client
        .login(login_from("192.0.2.10", "nobody", "guess-pass-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_login_without_fields_names_them() {
    let mut app = TestApp::spawn(|_| {}).await;
    let status = app
        .client
        .login(login_from("192.0.2.1", " ", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_error_details(&status);
    let fields: Vec<String> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["username", "password"]);
}

/// The field names of an INVALID_ARGUMENT's BadRequest detail.
fn violated_fields(status: &tonic::Status) -> Vec<String> {
    tonic_types::StatusExt::get_error_details(status)
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

#[tokio::test]
async fn password_rpcs_answer_with_statuses_and_field_details() {
    use proto::auth::v1::{
        ChangePasswordRequest, RequestPasswordResetRequest, ResetOutcome, ResetPasswordRequest,
    };
    let mut app = TestApp::spawn(|config| config.rate_limits.reset_request.max = 2).await;

    // A token that is not one: UNAUTHENTICATED, whatever the passwords.
    let status = app
        .client
        .change_password(ChangePasswordRequest {
            access: "not-a-token".into(),
            old_password: "old-pass-12".into(),
            new_password: "tiger-lamp-42".into(),
            new_password2: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // A confirmation's password rules name the request's fields.
    let status = app
        .client
        .reset_password(ResetPasswordRequest {
            email: "someone@example.com".into(),
            code: String::new(),
            new_password: "qz7!".into(),
            new_password2: Some("qz7?".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["code", "new_password", "new_password2"]
    );
    // A well-formed confirmation for no account is a wrong code, not an error.
    let outcome = app
        .client
        .reset_password(ResetPasswordRequest {
            email: "someone@example.com".into(),
            code: "123456".into(),
            new_password: "tiger-lamp-42".into(),
            new_password2: None,
        })
        .await
        .unwrap()
        .into_inner()
        .outcome();
    assert_eq!(outcome, ResetOutcome::CodeWrong);

    // Reset requests: OK for any address, then RESOURCE_EXHAUSTED with a wait.
    for email in ["a@example.com", "b@example.com"] {
        app.client
            .request_password_reset(RequestPasswordResetRequest {
                email: email.into(),
            })
            .await
            .unwrap();
    }
    let status = app
        .client
        .request_password_reset(RequestPasswordResetRequest {
            email: "c@example.com".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_retry_after_within_ten_minutes(&status);
}

/// A throttled call says when to come back: in 1 s to 10 min.
fn assert_retry_after_within_ten_minutes(status: &tonic::Status) {
    let wait: u64 = status
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&wait), "{wait}");
}
