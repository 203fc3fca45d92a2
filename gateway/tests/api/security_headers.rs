//! Headers that tell browsers and caches how to treat each kind of
//! response, and links that never come from the client's `Host`.

use proto::audit::v1::ListAttemptsResponse;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const LOGS: &str = "/api/accounts/logs/login/attemps/";
const STREAM: &str = "/api/accounts/logs/login/attemps/stream/";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

async fn admin_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.get_authorized(path, &app.key.access_token(true)).await
}

#[tokio::test]
async fn login_tokens_are_neither_stored_nor_cached() {
    let app = spawn_app().await;

    let response = app
        .post_json(
            "/api/accounts/login/",
            &json!({"username": "alice", "password": "right-password"}),
        )
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "cache-control"),
        Some("no-store")
    );
    assert_eq!(header(response.headers(), "pragma"), Some("no-cache"));
}

#[tokio::test]
async fn refreshed_tokens_are_neither_stored_nor_cached() {
    let app = spawn_app().await;

    let response = app
        .post_json("/api/accounts/login/refresh/", &json!({"refresh": "r"}))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "cache-control"),
        Some("no-store")
    );
    assert_eq!(header(response.headers(), "pragma"), Some("no-cache"));
}

#[tokio::test]
async fn the_login_log_its_exports_and_its_live_stream_are_not_stored() {
    let app = spawn_app().await;

    for path in [
        LOGS.to_owned(),
        format!("{LOGS}?format=csv"),
        format!("{LOGS}?format=ndjson"),
        STREAM.to_owned(),
    ] {
        let response = admin_get(&app, &path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            header(response.headers(), "cache-control"),
            Some("no-store"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_kind_of_response_says_nosniff() {
    let app = spawn_app().await;
    let responses = [
        ("200", app.get("/healthz").await),
        ("404", app.get("/nope").await),
        (
            "405",
            app.http.delete(app.url("/healthz")).send().await.unwrap(),
        ),
        ("401", app.get(LOGS).await),
        (
            "403",
            app.get_authorized(LOGS, &app.key.access_token(false)).await,
        ),
        (
            "400",
            app.post_raw("/api/accounts/login/", Some("application/json"), "{")
                .await,
        ),
        (
            "415",
            app.post_raw("/api/accounts/login/", Some("text/plain"), "x")
                .await,
        ),
        ("openapi", app.get("/api/openapi.json").await),
        ("docs", app.get("/api/docs/").await),
        (
            "docs script",
            app.get("/api/docs/swagger-ui-bundle.js").await,
        ),
    ];

    for (kind, response) in responses {
        assert_eq!(
            header(response.headers(), "x-content-type-options"),
            Some("nosniff"),
            "{kind}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn the_api_docs_page_has_a_content_security_policy_and_cannot_be_framed() {
    let app = spawn_app().await;

    let response = app.get("/api/docs/").await;

    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert!(
        header(headers, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = header(headers, "content-security-policy").unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing in {csp}");
    }
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(header(headers, "x-frame-options"), Some("DENY"));
    // The page runs with that policy: it loads its scripts from files on
    // this origin, none inline.
    let html = response.text().await.unwrap();
    assert!(html.contains("<script src="), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    // ...and the scripts it loads are served with a script type.
    let script = app.get("/api/docs/swagger-initializer.js").await;
    assert!(
        header(script.headers(), "content-type")
            .unwrap()
            .contains("javascript")
    );
}

async fn first_page_next(app: &TestApp, host: Option<&str>) -> serde_json::Value {
    app.audit.list.reply_with(|_| {
        Ok(ListAttemptsResponse {
            attempts: vec![],
            next_cursor: "c+1".into(),
        })
    });
    let mut request = app
        .http
        .get(app.url(&format!("{LOGS}?limit=5")))
        .bearer_auth(app.key.access_token(true));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
    body["next"].clone()
}

#[tokio::test]
async fn next_is_a_relative_link_that_ignores_the_host_header() {
    let app = spawn_app().await;

    let next = first_page_next(&app, Some("evil.example")).await;

    assert_eq!(next, format!("{LOGS}?limit=5&cursor=c%2B1"));
}

#[tokio::test]
async fn next_is_built_from_the_configured_public_url() {
    let app = spawn_app_with(|c| {
        c.public_url = Some(gateway::config::PublicUrl::parse("https://api.example.com").unwrap());
    })
    .await;

    let next = first_page_next(&app, Some("evil.example")).await;

    assert_eq!(
        next,
        format!("https://api.example.com{LOGS}?limit=5&cursor=c%2B1")
    );
}
