//! Bytes nobody expected in a login: every such request is answered with a
//! 4xx (never a 5xx) and becomes exactly one attempt in the log, on every
//! backend.

use serde_json::Value;
use system_tests::{Backend, TestSystem};

on_every_backend!(every_byte_sequence_a_client_can_send_becomes_one_logged_attempt,);

const LOGIN: &str = "/api/accounts/login/";

async fn every_byte_sequence_a_client_can_send_becomes_one_logged_attempt(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("admin", "admin@example.com", "admin-pass-12")
        .await;
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        // NUL inside a name (PostgreSQL text refuses NUL).
        (
            json,
            br#"{"username": "ad\u0000min", "password": "x-pass-123"}"#.to_vec(),
        ),
        (form, b"username=ad%00min&password=x-pass-123".to_vec()),
        // A lone surrogate.
        (
            json,
            br#"{"username": "\ud800admin", "password": "x-pass-123"}"#.to_vec(),
        ),
        // Invalid UTF-8, raw and percent-encoded.
        (
            json,
            b"{\"username\": \"ad\xffmin\", \"password\": \"x-pass-123\"}".to_vec(),
        ),
        (form, b"username=ad%FF%FEmin&password=x-pass-123".to_vec()),
        // 4-byte characters and lookalikes.
        (
            json,
            "{\"username\": \"\u{1D51E}dmin\", \"password\": \"x-pass-123\"}"
                .as_bytes()
                .to_vec(),
        ),
        (
            json,
            "{\"username\": \"\u{FF41}dmin\", \"password\": \"x-pass-123\"}"
                .as_bytes()
                .to_vec(),
        ),
        // A name far longer than any account's.
        (
            json,
            format!(
                "{{\"username\": \"{}\", \"password\": \"x-pass-123\"}}",
                "n".repeat(40_000)
            )
            .into_bytes(),
        ),
    ];
    for (content_type, body) in &bodies {
        let resp = sys
            .http
            .post(sys.url(LOGIN))
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let reply: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status == 400 || status == 401,
            "{status} {reply} for {:?}",
            String::from_utf8_lossy(body)
        );
    }
    let log = sys.wait_for_attempts(bodies.len()).await;
    assert_eq!(log.len(), bodies.len(), "one row per request");
    for record in &log {
        let attempt = record.attempt.as_ref().unwrap();
        assert!(!attempt.successful);
        assert!(!attempt.identifier.contains('\0'));
    }
    // The NUL name reached the log without its NUL, as what it claimed.
    assert!(
        log.iter()
            .any(|r| r.attempt.as_ref().unwrap().identifier == "admin"),
        "{:?}",
        log.iter()
            .map(|r| r
                .attempt
                .as_ref()
                .unwrap()
                .identifier
                .chars()
                .take(40)
                .collect::<String>())
            .collect::<Vec<_>>()
    );
    sys.shutdown().await;
}
