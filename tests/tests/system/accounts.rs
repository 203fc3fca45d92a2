//! Registration and email verification.

use serde_json::json;
use system_tests::{Backend, TestSystem};

on_every_backend!(
    full_flow_register_verify_login_refresh,
    registration_reports_each_bad_field,
    registration_refuses_taken_username_and_email_case_insensitively,
    form_and_multipart_bodies_are_accepted,
    code_request_answers_the_same_for_unknown_emails_and_sends_nothing,
    verification_code_dies_after_five_wrong_tries,
    verification_code_is_single_use_and_throttled,
);

async fn full_flow_register_verify_login_refresh(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "alice", "email": "Alice@Example.com", "password": "s3cret-pass", "password2": "s3cret-pass"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"username": "alice", "email": "Alice@example.com"})
    );

    // Not active yet: login is refused.
    let (status, _) = sys
        .post_json(
            "/api/accounts/login/",
            json!({"username": "alice", "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(status, 401);

    let (status, body) = sys
        .post_json(
            "/api/accounts/verification/code/",
            json!({"email": "alice@example.com"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"status": "success"})));
    let code = sys.smtp.wait_for_code("Alice@example.com", 1).await;

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = sys
        .post_json(
            "/api/accounts/verification/code/verify/",
            json!({"email": "alice@example.com", "code": wrong, "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );

    // The code may arrive as a number, as the old API allowed.
    let as_number: u64 = code.parse().unwrap();
    let code_value = if code.starts_with('0') {
        json!(code)
    } else {
        json!(as_number)
    };
    let (status, body) = sys
        .post_json(
            "/api/accounts/verification/code/verify/",
            json!({"email": "ALICE@example.com", "code": code_value, "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "user-activated"})
        )
    );

    let by_name = sys.login("alice", "s3cret-pass").await;
    let by_email = sys.login("ALICE@EXAMPLE.COM", "s3cret-pass").await;
    for pair in [&by_name, &by_email] {
        assert!(pair["access"].as_str().unwrap().split('.').count() == 3);
        assert!(pair["refresh"].as_str().unwrap().split('.').count() == 3);
    }

    // Refresh rotates: a new pair, and the old refresh token is dead.
    let old = by_name["refresh"].as_str().unwrap();
    let (status, fresh) = sys
        .post_json("/api/accounts/login/refresh/", json!({"refresh": old}))
        .await;
    assert_eq!(status, 200, "{fresh}");
    assert_ne!(fresh["refresh"], by_name["refresh"]);
    assert!(fresh["access"].is_string());

    // The old token again at once (a second tab, a retry): within the reuse
    // grace and with `fresh` unused, the same refresh token comes back.
    let (status, again) = sys
        .post_json("/api/accounts/login/refresh/", json!({"refresh": old}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["refresh"], fresh["refresh"]);

    // Once `fresh` has been used, the old token is theft: 401, and the whole
    // family is revoked, including the token just issued from `fresh`.
    let (status, fresh) = sys
        .post_json(
            "/api/accounts/login/refresh/",
            json!({"refresh": fresh["refresh"]}),
        )
        .await;
    assert_eq!(status, 200, "{fresh}");
    let (status, body) = sys
        .post_json("/api/accounts/login/refresh/", json!({"refresh": old}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "token_not_valid");
    let (status, _) = sys
        .post_json(
            "/api/accounts/login/refresh/",
            json!({"refresh": fresh["refresh"]}),
        )
        .await;
    assert_eq!(status, 401);

    // The other login's family is untouched.
    let (status, _) = sys
        .post_json(
            "/api/accounts/login/refresh/",
            json!({"refresh": by_email["refresh"]}),
        )
        .await;
    assert_eq!(status, 200);

    // An access token is not a refresh token.
    let (status, _) = sys
        .post_json(
            "/api/accounts/login/refresh/",
            json!({"refresh": by_email["access"]}),
        )
        .await;
    assert_eq!(status, 401);
    sys.shutdown().await;
}

async fn registration_reports_each_bad_field(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "bad name", "email": "nope", "password": "1234"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["username"][0]
            .as_str()
            .unwrap()
            .contains("valid username"),
        "{body}"
    );
    assert_eq!(body["email"], json!(["Enter a valid email address."]));
    let pw = body["password"].as_array().unwrap();
    assert!(
        pw.iter().any(|m| m.as_str().unwrap().contains("too short")),
        "{body}"
    );
    assert!(
        pw.iter()
            .any(|m| m.as_str().unwrap().contains("entirely numeric")),
        "{body}"
    );

    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "bob", "email": "bob@example.com", "password": "long enough", "password2": "different"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"password2": ["Password fields didn't match."]})
    );

    let (status, body) = sys.post_json("/api/accounts/register/", json!({})).await;
    assert_eq!(status, 400);
    for field in ["username", "email", "password"] {
        assert_eq!(body[field], json!(["This field is required."]), "{body}");
    }

    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "bob", "email": "bob@example.com", "password": "bob"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["password"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("similar to the username"))
    );
    sys.shutdown().await;
}

async fn registration_refuses_taken_username_and_email_case_insensitively(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    // A verified account: an unverified one holds its email only until the
    // next registration of it (see prehijack.rs).
    sys.active_user("carol", "carol@example.com", "carol-pass-1")
        .await;

    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "CAROL", "email": "other@example.com", "password": "carol-pass-1"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"username": ["A user with that username already exists."]})
    );

    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": "carol2", "email": "CAROL@example.COM", "password": "carol-pass-1"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"email": ["A user with that email already exists."]})
    );
    sys.shutdown().await;
}

async fn form_and_multipart_bodies_are_accepted(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let (status, body) = sys
        .post_form(
            "/api/accounts/register/",
            &[
                ("username", "dave"),
                ("email", "dave@example.com"),
                ("password", "dave-pass-1"),
                ("unknown", "ignored"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let form = reqwest::multipart::Form::new()
        .text("username", "erin")
        .text("email", "erin@example.com")
        .text("password", "erin-pass-1");
    let resp = sys
        .http
        .post(sys.url("/api/accounts/register/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    sys.shutdown().await;
}

async fn code_request_answers_the_same_for_unknown_emails_and_sends_nothing(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let known =
        json!({"username": "frank", "email": "frank@example.com", "password": "frank-pass-1"});
    assert_eq!(sys.post_json("/api/accounts/register/", known).await.0, 201);

    let known_reply = sys
        .post_json(
            "/api/accounts/verification/code/",
            json!({"email": "frank@example.com"}),
        )
        .await;
    let unknown_reply = sys
        .post_json(
            "/api/accounts/verification/code/",
            json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_eq!(known_reply, unknown_reply);
    assert_eq!(known_reply, (200, json!({"status": "success"})));

    sys.smtp.wait_for_code("frank@example.com", 1).await;
    assert!(sys.smtp.messages_to("ghost@example.com").is_empty());

    // Verifying for an unknown email looks like a wrong code.
    let (status, body) = sys
        .post_json(
            "/api/accounts/verification/code/verify/",
            json!({"email": "ghost@example.com", "code": "123456", "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"status": "failed", "message": "code-wrong"}))
    );
    sys.shutdown().await;
}

async fn verification_code_dies_after_five_wrong_tries(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let user = json!({"username": "gina", "email": "gina@example.com", "password": "gina-pass-1"});
    assert_eq!(sys.post_json("/api/accounts/register/", user).await.0, 201);
    sys.post_json(
        "/api/accounts/verification/code/",
        json!({"email": "gina@example.com"}),
    )
    .await;
    let code = sys.smtp.wait_for_code("gina@example.com", 1).await;
    let wrong = if code == "999999" { "999998" } else { "999999" };
    for _ in 0..5 {
        let (_, body) = sys
            .post_json(
                "/api/accounts/verification/code/verify/",
                json!({"email": "gina@example.com", "code": wrong, "password": "gina-pass-1"}),
            )
            .await;
        assert_eq!(body["message"], "code-wrong");
    }
    let (status, body) = sys
        .post_json(
            "/api/accounts/verification/code/verify/",
            json!({"email": "gina@example.com", "code": code, "password": "gina-pass-1"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"status": "failed", "message": "too-many-attempts"})
        )
    );
    sys.shutdown().await;
}

async fn verification_code_is_single_use_and_throttled(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let user = json!({"username": "hank", "email": "hank@example.com", "password": "hank-pass-1"});
    assert_eq!(sys.post_json("/api/accounts/register/", user).await.0, 201);
    sys.post_json(
        "/api/accounts/verification/code/",
        json!({"email": "hank@example.com"}),
    )
    .await;
    let code = sys.smtp.wait_for_code("hank@example.com", 1).await;

    // A second request within 60 s answers the same but sends no new code.
    let (status, _) = sys
        .post_json(
            "/api/accounts/verification/code/",
            json!({"email": "hank@example.com"}),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sys.smtp.messages_to("hank@example.com").len(), 1);

    let verify = json!({"email": "hank@example.com", "code": code, "password": "hank-pass-1"});
    assert_eq!(
        sys.post_json("/api/accounts/verification/code/verify/", verify.clone())
            .await
            .0,
        200
    );
    let (status, body) = sys
        .post_json("/api/accounts/verification/code/verify/", verify)
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("code-wrong"))
    );
    sys.shutdown().await;
}
