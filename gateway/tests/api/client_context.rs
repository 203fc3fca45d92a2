//! The client's IP and User-Agent as auth-service receives them.

use serde_json::json;

use crate::helpers::{md, spawn_app, spawn_app_with};

const CODE: &str = "/api/accounts/verification/code/";

async fn send(
    app: &crate::helpers::TestApp,
    headers: &[(&str, &str)],
) -> tonic::metadata::MetadataMap {
    let mut request = app
        .http
        .post(app.url(CODE))
        .json(&json!({"email": "a@b.c"}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    app.auth.request_code.calls().pop().unwrap().1
}

#[tokio::test]
async fn the_socket_peer_is_the_client_by_default() {
    let app = spawn_app().await;

    let metadata = send(&app, &[]).await;

    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await;

    let metadata = send(&app, &[("x-forwarded-for", "1.2.3.4")]).await;

    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let app =
        spawn_app_with(|c| c.trusted_proxies = "127.0.0.1/32, 10.0.0.0/8".parse().unwrap()).await;

    let metadata = send(
        &app,
        &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.3")],
    )
    .await;

    // 6.6.6.6 was written by the client itself; 198.51.100.7 is the first
    // hop our proxies did not add.
    assert_eq!(md(&metadata, "x-client-ip"), Some("198.51.100.7"));
}

#[tokio::test]
async fn malformed_forwarded_for_falls_back_to_the_peer() {
    let app = spawn_app_with(|c| c.trusted_proxies = "127.0.0.1/32".parse().unwrap()).await;

    let metadata = send(&app, &[("x-forwarded-for", "198.51.100.7, <script>")]).await;

    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn junk_left_of_the_client_does_not_hide_it() {
    let app = spawn_app_with(|c| c.trusted_proxies = "127.0.0.1/32".parse().unwrap()).await;

    let metadata = send(&app, &[("x-forwarded-for", "junk, 203.0.113.50")]).await;

    // Before: the whole header was dropped and the proxy (127.0.0.1) was
    // blamed, so a blocked client escaped its block by prepending junk.
    assert_eq!(md(&metadata, "x-client-ip"), Some("203.0.113.50"));
}

#[tokio::test]
async fn junk_behind_a_trusted_hop_is_attributed_to_that_hop() {
    let app =
        spawn_app_with(|c| c.trusted_proxies = "127.0.0.1/32, 10.0.0.0/8".parse().unwrap()).await;

    let metadata = send(
        &app,
        &[("x-forwarded-for", "198.51.100.7, unknown, 10.0.0.3")],
    )
    .await;

    assert_eq!(md(&metadata, "x-client-ip"), Some("10.0.0.3"));
}

#[tokio::test]
async fn forwarded_names_the_client_when_configured() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = "127.0.0.1/32".parse().unwrap();
        c.forwarded_header = gateway::client_ip::ForwardedHeader::Forwarded;
    })
    .await;

    let metadata = send(
        &app,
        &[
            (
                "forwarded",
                "for=_hidden, for=\"[2001:db8::1]:4711\";proto=https",
            ),
            // Not the configured header: ignored, whatever it says.
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await;

    assert_eq!(md(&metadata, "x-client-ip"), Some("2001:db8::1"));
}

#[tokio::test]
async fn forwarded_is_ignored_unless_configured() {
    let app = spawn_app_with(|c| c.trusted_proxies = "127.0.0.1/32".parse().unwrap()).await;

    let metadata = send(&app, &[("forwarded", "for=6.6.6.6")]).await;

    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn the_user_agent_is_forwarded_when_sent() {
    let app = spawn_app().await;

    let metadata = send(&app, &[("user-agent", "curl/8.5.0")]).await;

    assert_eq!(md(&metadata, "x-client-user-agent"), Some("curl/8.5.0"));
}

#[tokio::test]
async fn a_missing_user_agent_stays_missing() {
    let app = spawn_app().await;

    let metadata = send(&app, &[]).await;

    assert_eq!(md(&metadata, "x-client-user-agent"), None);
}

#[tokio::test]
async fn the_internal_token_is_presented_when_configured() {
    let app =
        spawn_app_with(|c| c.internal_token = Some(common::config::Secret::new("tok-1"))).await;

    let metadata = send(&app, &[]).await;

    assert_eq!(md(&metadata, "authorization"), Some("Bearer tok-1"));
}
