//! The client address behind trusted proxies, end to end: what the gateway
//! derives is what auth-service throttles on and what the audit log keeps.

use serde_json::json;
use system_tests::{Backend, TestSystem};

use crate::support::trust_loopback;

on_every_backend!(
    junk_left_of_a_blocked_client_does_not_lift_its_block,
    forwarded_names_the_client_when_the_proxies_use_it,
);

const LOGIN: &str = "/api/accounts/login/";

/// A login sent through "our proxy" (loopback is trusted) with one
/// forwarding header; the status.
async fn login_with(sys: &TestSystem, header: (&str, &str), username: &str, password: &str) -> u16 {
    sys.http
        .post(sys.url(LOGIN))
        .header(header.0, header.1)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn junk_left_of_a_blocked_client_does_not_lift_its_block(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.ip_failures = 5;
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("fay", "fay@example.com", "fay-pass-123")
        .await;
    let stuffer = ("x-forwarded-for", "203.0.113.50");
    for i in 0..5 {
        let status = login_with(&sys, stuffer, &format!("victim{i}"), "leaked-pass-1").await;
        assert_eq!(status, 401);
    }

    // Prepending junk used to make the gateway drop the whole header and
    // blame the proxy, lifting the block. Now the client is still found.
    let junk = ("x-forwarded-for", "junk, 203.0.113.50");
    assert_eq!(login_with(&sys, junk, "fay", "fay-pass-123").await, 429);
    // Junk where the client should be is blamed on the proxy that sent it:
    // neither anonymous nor the blocked address.
    let only_junk = ("x-forwarded-for", "<script>");
    assert_eq!(
        login_with(&sys, only_junk, "fay", "fay-pass-123").await,
        200
    );

    let log = sys.wait_for_attempts(7).await;
    let attempts: Vec<_> = log.into_iter().map(|r| r.attempt.unwrap()).collect();
    let throttled: Vec<_> = attempts
        .iter()
        .filter(|a| a.reason().code() == "rate_limited")
        .collect();
    assert_eq!(throttled.len(), 1);
    assert_eq!(throttled[0].ip, "203.0.113.50");
    assert!(attempts.iter().any(|a| a.successful && a.ip == "127.0.0.1"));
    assert!(
        attempts
            .iter()
            .all(|a| a.ip == "203.0.113.50" || a.ip == "127.0.0.1"),
        "{attempts:?}"
    );
    sys.shutdown().await;
}

async fn forwarded_names_the_client_when_the_proxies_use_it(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |_, gw| {
        trust_loopback(gw);
        gw.forwarded_header = gateway::client_ip::ForwardedHeader::Forwarded;
    })
    .await
    else {
        return;
    };
    sys.active_user("gus", "gus@example.com", "gus-pass-123")
        .await;

    let forwarded = (
        "forwarded",
        "for=_hidden, for=\"[2001:db8::1]:4711\";proto=https",
    );
    assert_eq!(
        login_with(&sys, forwarded, "gus", "gus-pass-123").await,
        200
    );

    let log = sys.wait_for_attempts(1).await;
    assert_eq!(log[0].attempt.as_ref().unwrap().ip, "2001:db8::1");
    sys.shutdown().await;
}
