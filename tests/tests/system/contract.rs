//! Small contract rules (issue #14, case 5): a code sent as a JSON number,
//! client-chosen request ids, and two refreshes with one token at once.

use std::time::Duration;

use proto::auth::v1::{LoginRequest, auth_service_client::AuthServiceClient};
use serde_json::{Value, json};
use system_tests::{Backend, TestSystem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Bind, auth_sql, burst, count};

on_every_backend!(
    a_code_sent_as_a_json_number_keeps_its_leading_zero,
    other_numbers_for_a_code_are_refused_without_using_up_a_try,
    request_ids_outside_the_token_syntax_are_replaced_everywhere,
    request_ids_with_control_bytes_never_come_back,
    refreshes_with_one_token_at_one_instant_all_get_the_same_successor,
    a_reuse_after_the_grace_revokes_the_family,
    a_zero_grace_turns_the_grace_off,
);

const VERIFY: &str = "/api/accounts/verification/code/verify/";
const LOGIN: &str = "/api/accounts/login/";
const REFRESH: &str = "/api/accounts/login/refresh/";

/// Registers `username`/`email` and has a code mailed; then replaces the
/// live code with `code` (a random one rarely starts with 0), its tries
/// reset.
async fn registered_with_code(sys: &TestSystem, username: &str, email: &str, code: &str) {
    let (status, body) = sys
        .post_json(
            "/api/accounts/register/",
            json!({"username": username, "email": email, "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = sys
        .post_json("/api/accounts/verification/code/", json!({"email": email}))
        .await;
    assert_eq!(status, 200);
    sys.smtp.wait_for_code(email, 1).await;
    let salt = b"test-salt".to_vec();
    let digest = auth_service::domain::VerificationCode::parse(code)
        .unwrap()
        .digest(&salt);
    let changed = auth_sql(
        sys,
        "UPDATE verification_codes SET code_hash = $1, salt = $2, tries = 0
         WHERE user_id = (SELECT id FROM users WHERE email_lower = $3)",
        vec![
            Bind::Bytes(digest),
            Bind::Bytes(salt),
            Bind::Text(email.to_lowercase()),
        ],
    )
    .await;
    assert_eq!(changed, 1);
}

/// A raw JSON body (serde_json would write `1e5` as `100000.0`).
async fn post_raw_json(sys: &TestSystem, path: &str, body: String) -> (u16, Value) {
    let resp = sys
        .http
        .post(sys.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn a_code_sent_as_a_json_number_keeps_its_leading_zero(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    registered_with_code(&sys, "zoe", "zoe@example.com", "012345").await;

    // `12345` is what a client that parsed "012345" as a number sends.
    let (status, body) = post_raw_json(
        &sys,
        VERIFY,
        r#"{"email": "zoe@example.com", "code": 12345, "password": "s3cret-pass"}"#.to_owned(),
    )
    .await;

    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "user-activated"})
        )
    );
    sys.login("zoe", "s3cret-pass").await;
    sys.shutdown().await;
}

async fn other_numbers_for_a_code_are_refused_without_using_up_a_try(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    registered_with_code(&sys, "yan", "yan@example.com", "012345").await;

    // Each twice: ten refusals, twice the five tries a code has.
    for bad in ["1234567", "-1", "1.5", "1e5", "12345.0"]
        .iter()
        .flat_map(|b| [b, b])
    {
        let (status, body) = post_raw_json(
            &sys,
            VERIFY,
            format!(r#"{{"email": "yan@example.com", "code": {bad}, "password": "s3cret-pass"}}"#),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["code"][0].is_string(), "{bad}: {body}");
    }

    // No try was used up: the right code still works.
    let (status, body) = sys
        .post_json(
            VERIFY,
            json!({"email": "yan@example.com", "code": "012345", "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!((status, &body["message"]), (200, &json!("user-activated")));
    sys.shutdown().await;
}

/// Logs in as `who` (unknown: a failed attempt is logged) with `request_id`
/// as `X-Request-Id`; the id the gateway answered with.
async fn login_with_request_id(sys: &TestSystem, who: &str, request_id: &str) -> String {
    let resp = sys
        .http
        .post(sys.url(LOGIN))
        .header("x-request-id", request_id)
        .json(&json!({"username": who, "password": "whatever-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    resp.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// The request id the log holds for the attempt of identifier `who`.
fn logged_id(log: &[proto::audit::v1::AttemptRecord], who: &str) -> String {
    let matching: Vec<_> = log
        .iter()
        .filter_map(|r| r.attempt.as_ref())
        .filter(|a| a.identifier == who)
        .collect();
    assert_eq!(matching.len(), 1, "{who}");
    matching[0].request_id.clone()
}

async fn request_ids_outside_the_token_syntax_are_replaced_everywhere(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let good = "0190f4a2-7b1c-7d3e-9f00-1234567890ab";
    let formula = "=cmd|' /C calc'!A0";
    let long = "a".repeat(65);

    let kept = login_with_request_id(&sys, "kept", good).await;
    let from_formula = login_with_request_id(&sys, "formula", formula).await;
    let from_long = login_with_request_id(&sys, "long", &long).await;
    let at_limit = login_with_request_id(&sys, "at-limit", &"b".repeat(64)).await;
    // An internal caller straight to gRPC gets the same rule.
    let mut client = AuthServiceClient::connect(sys.auth_url.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(LoginRequest {
        username: "grpc".into(),
        password: "whatever-1".into(),
        malformed_fields: vec![],
    });
    request
        .metadata_mut()
        .insert("x-request-id", "@SUM(1+1)*cmd".parse().unwrap());
    assert_eq!(
        client.login(request).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    assert_eq!(kept, good);
    assert_eq!(at_limit, "b".repeat(64));
    for replaced in [&from_formula, &from_long] {
        assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");
    }
    assert_ne!(from_formula, from_long);
    let log = sys.wait_for_attempts(5).await;
    assert_eq!(logged_id(&log, "kept"), good);
    assert_eq!(logged_id(&log, "formula"), from_formula);
    assert_eq!(logged_id(&log, "long"), from_long);
    let from_grpc = logged_id(&log, "grpc");
    assert!(uuid::Uuid::parse_str(&from_grpc).is_ok(), "{from_grpc}");
    sys.shutdown().await;
}

/// Sends `head` (a request line and headers, without the final blank
/// line) on a raw connection; the whole response.
async fn raw_request(sys: &TestSystem, head: &[u8]) -> String {
    let addr = sys.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

async fn request_ids_with_control_bytes_never_come_back(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    for id in [&b"abc\0def"[..], b"abc\rdef", b"abc\x1bdef", b"caf\xc3\xa9"] {
        let mut head =
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: ".to_vec();
        head.extend_from_slice(id);
        head.extend_from_slice(b"\r\n");

        let response = raw_request(&sys, &head).await;

        // Refused outright by the HTTP parser, or answered with a fresh id.
        assert!(
            !response.contains("def") && !response.contains("caf"),
            "{response}"
        );
        let status = response.split(' ').nth(1).unwrap_or_default();
        assert!(matches!(status, "200" | "400"), "{response}");
        if status == "200" {
            let echoed = response
                .lines()
                .find_map(|l| l.strip_prefix("x-request-id: "))
                .unwrap();
            assert!(uuid::Uuid::parse_str(echoed.trim()).is_ok(), "{response}");
        }
    }
    // A CR-LF ends the header: what follows is a header of its own, and the
    // id before it is the client's.
    let response = raw_request(
        &sys,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: ab\r\nX-Injected: 1\r\n",
    )
    .await;
    assert!(response.contains("x-request-id: ab\r\n"), "{response}");
    assert!(
        !response.to_lowercase().contains("x-injected"),
        "{response}"
    );
    sys.shutdown().await;
}

async fn refreshes_with_one_token_at_one_instant_all_get_the_same_successor(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("tabs", "tabs@example.com", "tabs-pass-12")
        .await;
    let pair = sys.login("tabs", "tabs-pass-12").await;
    let token = pair["refresh"].as_str().unwrap().to_owned();

    let replies = burst(8, |_| {
        sys.http
            .post(sys.url(REFRESH))
            .json(&json!({"refresh": token}))
            .send()
    })
    .await;

    assert_eq!(count(&replies, 200), 8, "{replies:?}");
    let successor = &replies[0].body["refresh"];
    assert!(successor.is_string());
    assert_ne!(successor, &json!(token));
    assert!(
        replies.iter().all(|r| &r.body["refresh"] == successor),
        "{replies:?}"
    );
    let accesses: std::collections::HashSet<_> = replies
        .iter()
        .map(|r| r.body["access"].to_string())
        .collect();
    assert_eq!(accesses.len(), 8, "each answer has its own access token");
    // The family lives: the one successor rotates on.
    let (status, next) = sys.refresh(&successor).await;
    assert_eq!(status, 200, "{next}");
    let (status, _) = sys.refresh(&next["refresh"]).await;
    assert_eq!(status, 200);
    sys.shutdown().await;
}

async fn a_reuse_after_the_grace_revokes_the_family(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.refresh_reuse_grace = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    sys.active_user("late", "late@example.com", "late-pass-12")
        .await;
    let pair = sys.login("late", "late-pass-12").await;
    let (status, fresh) = sys.refresh(&pair["refresh"]).await;
    assert_eq!(status, 200);

    // Times are whole seconds: 2.2 s is past a 1 s grace whatever the phase.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (status, body) = sys.refresh(&pair["refresh"]).await;

    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    let (status, _) = sys.refresh(&fresh["refresh"]).await;
    assert_eq!(
        status, 401,
        "the unused successor is revoked with its family"
    );
    sys.shutdown().await;
}

async fn a_zero_grace_turns_the_grace_off(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.refresh_reuse_grace = Duration::ZERO;
    })
    .await
    else {
        return;
    };
    sys.active_user("strict", "strict@example.com", "strict-pass-12")
        .await;
    let pair = sys.login("strict", "strict-pass-12").await;
    let token = pair["refresh"].as_str().unwrap().to_owned();

    let replies = burst(4, |_| {
        sys.http
            .post(sys.url(REFRESH))
            .json(&json!({"refresh": token}))
            .send()
    })
    .await;

    assert_eq!(count(&replies, 200), 1, "{replies:?}");
    assert_eq!(count(&replies, 401), 3, "{replies:?}");
    let winner = replies.iter().find(|r| r.status == 200).unwrap();
    let (status, _) = sys.refresh(&winner.body["refresh"]).await;
    assert_eq!(status, 401, "the reuse revoked the family");
    sys.shutdown().await;
}
