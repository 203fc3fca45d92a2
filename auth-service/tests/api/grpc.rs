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
    let wait: u64 = status
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&wait), "{wait}");
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
