//! The listing's new filters, CSV/NDJSON export and the SSE live tail,
//! through the gateway.

use std::{collections::HashSet, time::Duration};

use proto::audit::v1::Attempt;
use system_tests::{Backend, TestSystem};

use crate::support::{attempt, ingest, wait_for};

on_every_backend!(
    the_listing_filters_by_reason_cidr_identifier_and_flag,
    bad_filters_get_a_400_naming_the_parameter,
    csv_and_ndjson_exports_stream_every_matching_row_across_pages,
    the_sse_tail_delivers_new_attempts_and_frees_them_on_disconnect,
);

const PATH: &str = "/api/accounts/logs/login/attemps/";
const STREAM: &str = "/api/accounts/logs/login/attemps/stream/";

/// GETs a gateway path as `bearer`; returns status and raw body.
async fn get_text(sys: &TestSystem, path: &str, bearer: &str) -> (u16, String, String) {
    let response = sys
        .http
        .get(sys.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

fn identifiers(body: &serde_json::Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["identifier"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_listing_filters_by_reason_cidr_identifier_and_flag(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    ingest(
        &sys,
        vec![
            attempt("10.1.0.1", "one", "bad_password"),
            attempt("10.2.0.1", "two", "unknown_user"),
            attempt("192.0.2.1", "three", "bad_password"),
            attempt("10.3.0.1", "four", ""),
        ],
    )
    .await;

    let (_, by_reason) = sys
        .get(&format!("{PATH}?reason=bad_password"), Some(&admin))
        .await;
    let (_, by_cidr) = sys
        .get(
            &format!("{PATH}?ip=10.0.0.0/8&successful=false"),
            Some(&admin),
        )
        .await;
    let (_, by_identifier) = sys
        .get(&format!("{PATH}?identifier=two"), Some(&admin))
        .await;
    let (_, unflagged) = sys
        .get(
            &format!("{PATH}?suspicious=false&ip=10.3.0.1"),
            Some(&admin),
        )
        .await;
    let (_, flagged) = sys
        .get(
            &format!("{PATH}?suspicious=true&ip=10.0.0.0/8"),
            Some(&admin),
        )
        .await;

    assert_eq!(identifiers(&by_reason), ["three", "one"]);
    assert_eq!(identifiers(&by_cidr), ["two", "one"]);
    assert_eq!(identifiers(&by_identifier), ["two"]);
    assert_eq!(identifiers(&unflagged), ["four"]);
    assert!(identifiers(&flagged).is_empty());
    sys.shutdown().await;
}

async fn bad_filters_get_a_400_naming_the_parameter(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;

    for (query, field) in [
        ("reason=bored", "reason"),
        ("ip=10.0.0.0/99", "ip"),
        ("user_id=x", "user_id"),
        ("suspicious=maybe", "suspicious"),
        ("format=xml", "format"),
        ("since=yesterday", "since"),
        ("limit=501", "limit"),
    ] {
        let (status, body) = sys.get(&format!("{PATH}?{query}"), Some(&admin)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body[field].is_array(), "{query}: {body}");
        let (status, _, body) = get_text(&sys, &format!("{STREAM}?{query}"), &admin).await;
        if field != "format" && field != "limit" {
            assert_eq!(status, 400, "stream {query}: {body}");
        }
    }
    sys.shutdown().await;
}

async fn csv_and_ndjson_exports_stream_every_matching_row_across_pages(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    // More than two export pages (500) of matches, plus rows filtered out;
    // one identifier needs CSV quoting.
    let mut attempts: Vec<Attempt> = (0..1100)
        .map(|i| attempt("10.0.0.1", &format!("user{i}"), "bad_password"))
        .collect();
    attempts.push(attempt("10.0.0.1", "=cmd,\"x\"", "bad_password"));
    attempts.extend((0..20).map(|i| attempt("10.0.0.2", &format!("other{i}"), "bad_password")));
    ingest(&sys, attempts).await;

    let (status, content_type, csv) =
        get_text(&sys, &format!("{PATH}?format=csv&ip=10.0.0.1"), &admin).await;
    let (ndjson_status, ndjson_type, ndjson) =
        get_text(&sys, &format!("{PATH}?format=ndjson&ip=10.0.0.1"), &admin).await;

    assert_eq!(status, 200, "{csv}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("id,created_at,email,identifier,"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + 1101);
    assert!(
        csv.contains("\"'=cmd,\"\"x\"\"\""),
        "quoting/defusing missing"
    );
    assert!(!csv.contains("other"));

    assert_eq!(ndjson_status, 200);
    assert_eq!(ndjson_type, "application/x-ndjson");
    let ids: HashSet<i64> = ndjson
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["ip"], "10.0.0.1");
            v["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1101, "every row exactly once");
    sys.shutdown().await;
}

async fn the_sse_tail_delivers_new_attempts_and_frees_them_on_disconnect(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    let mut response = sys
        .http
        .get(sys.url(&format!("{STREAM}?reason=locked_out")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    wait_for(|| sys.audit_tail_subscribers() == 1).await;

    let wanted = attempt("10.0.0.9", "tailed", "locked_out");
    ingest(
        &sys,
        vec![
            attempt("10.0.0.9", "not-tailed", "bad_password"),
            wanted.clone(),
        ],
    )
    .await;
    let mut seen = String::new();
    while !seen.contains(&wanted.event_id) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("no SSE event within 10 s")
            .unwrap()
            .expect("the SSE stream ended");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.contains("event: attempt"), "{seen}");
    assert!(!seen.contains("not-tailed"), "{seen}");

    drop(response);
    wait_for(|| sys.audit_tail_subscribers() == 0).await;
    sys.shutdown().await;
}
