//! The admin listing of login attempts.

use std::collections::HashSet;

use serde_json::json;
use system_tests::{Backend, TestSystem};

on_every_backend!(
    log_listing_requires_an_admin,
    log_listing_pages_newest_first_without_gaps_or_repeats,
    log_listing_filters_by_outcome_email_ip_and_time,
    log_counts_sum_attempts_per_bucket_for_admins_only,
);

const PATH: &str = "/api/accounts/logs/login/attemps/";
const COUNTS: &str = "/api/accounts/logs/login/attemps/counts/";

async fn log_listing_requires_an_admin(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("nora", "nora@example.com", "nora-pass-1")
        .await;
    let user = sys.login("nora", "nora-pass-1").await;

    let (status, body) = sys.get(PATH, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "not_authenticated");
    let (status, body) = sys.get(PATH, Some("not.a.jwt")).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "token_not_valid");
    let (status, _) = sys.get(PATH, Some(user["refresh"].as_str().unwrap())).await;
    assert_eq!(status, 401, "a refresh token is not an access token");
    let (status, body) = sys.get(PATH, Some(user["access"].as_str().unwrap())).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "permission_denied");

    let admin = sys.admin_token().await;
    let (status, body) = sys.get(PATH, Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["results"].is_array());
    sys.shutdown().await;
}

async fn log_listing_pages_newest_first_without_gaps_or_repeats(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    for i in 0..6 {
        let (status, _) = sys
            .post_json(
                "/api/accounts/login/",
                json!({"username": format!("ghost{i}"), "password": "x-password"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    sys.wait_for_attempts(7).await;

    let mut url = format!("{PATH}?limit=3");
    let (mut seen, mut times, mut pages) = (HashSet::new(), Vec::new(), 0);
    loop {
        let (status, body) = sys.get(&url, Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for item in body["results"].as_array().unwrap() {
            assert!(seen.insert(item["id"].as_i64().unwrap()), "repeated {item}");
            times.push(item["created_at"].as_str().unwrap().to_owned());
            for field in [
                "id",
                "email",
                "ip",
                "created_at",
                "user_agent",
                "reject_reason",
                "successful",
                "suspicious",
                "user",
            ] {
                assert!(item.get(field).is_some(), "missing {field} in {item}");
            }
        }
        match body["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(pages, 3);
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    let (status, body) = sys.get(&format!("{PATH}?limit=501"), Some(&admin)).await;
    assert_eq!(status, 400);
    assert!(body.get("limit").is_some(), "{body}");
    sys.shutdown().await;
}

async fn log_listing_filters_by_outcome_email_ip_and_time(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await; // one successful attempt by root
    sys.post_json(
        "/api/accounts/login/",
        json!({"username": "Olga@Example.com", "password": "nope-nope"}),
    )
    .await;
    sys.post_json(
        "/api/accounts/login/",
        json!({"username": "pete", "password": "nope-nope"}),
    )
    .await;
    sys.wait_for_attempts(3).await;

    let count = |body: &serde_json::Value| body["results"].as_array().unwrap().len();
    let (_, body) = sys
        .get(&format!("{PATH}?successful=false"), Some(&admin))
        .await;
    assert_eq!(count(&body), 2);
    let (_, body) = sys
        .get(&format!("{PATH}?successful=true"), Some(&admin))
        .await;
    assert_eq!(count(&body), 1);
    assert!(body["results"][0]["user"].as_i64().is_some());
    let (_, body) = sys
        .get(&format!("{PATH}?email=olga@example.com"), Some(&admin))
        .await;
    assert_eq!(count(&body), 1, "{body}");
    let (_, body) = sys.get(&format!("{PATH}?ip=127.0.0.1"), Some(&admin)).await;
    assert_eq!(count(&body), 3);
    let (_, body) = sys.get(&format!("{PATH}?ip=10.9.9.9"), Some(&admin)).await;
    assert_eq!(count(&body), 0);
    let (_, body) = sys
        .get(
            &format!("{PATH}?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z"),
            Some(&admin),
        )
        .await;
    assert_eq!(count(&body), 3);
    let (_, body) = sys
        .get(&format!("{PATH}?until=2000-01-01T00:00:00Z"), Some(&admin))
        .await;
    assert_eq!(count(&body), 0);

    for bad in [
        "ip=not-an-ip",
        "since=yesterday",
        "successful=maybe",
        "limit=0",
    ] {
        let (status, body) = sys.get(&format!("{PATH}?{bad}"), Some(&admin)).await;
        let param = bad.split('=').next().unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.get(param).is_some(), "{bad}: {body}");
    }
    sys.shutdown().await;
}

/// `(successes, failures, suspicious)` summed over a counts answer's
/// buckets.
fn totals(body: &serde_json::Value) -> (u64, u64, u64) {
    body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0, 0), |(s, f, x), b| {
            (
                s + b["successes"].as_u64().unwrap(),
                f + b["failures"].as_u64().unwrap(),
                x + b["suspicious"].as_u64().unwrap(),
            )
        })
}

async fn log_counts_sum_attempts_per_bucket_for_admins_only(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("nora", "nora@example.com", "nora-pass-1")
        .await;
    let user = sys.login("nora", "nora-pass-1").await;
    let admin = sys.admin_token().await;
    for name in ["ghost", "nora"] {
        let (status, _) = sys
            .post_json(
                "/api/accounts/login/",
                json!({"username": name, "password": "x-password"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    sys.wait_for_attempts(4).await;

    let (status, body) = sys.get(&format!("{COUNTS}?bucket=1h"), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "not_authenticated");
    let (status, body) = sys
        .get(
            &format!("{COUNTS}?bucket=1h"),
            Some(user["access"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "permission_denied");

    // The last day in hours: every attempt, in hourly buckets from the
    // start of an hour.
    let (status, body) = sys.get(&format!("{COUNTS}?bucket=1h"), Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bucket_seconds"], 3_600);
    assert_eq!(totals(&body), (2, 2, 0));
    let buckets = body["buckets"].as_array().unwrap();
    assert!((24..=25).contains(&buckets.len()), "{}", buckets.len());
    assert_eq!(buckets[0]["start"], body["since"]);
    assert!(
        buckets
            .iter()
            .all(|b| b["start"].as_str().unwrap().ends_with(":00:00Z")),
        "{body}"
    );

    // The listing's filters.
    let (_, body) = sys
        .get(
            &format!("{COUNTS}?bucket=1d&successful=false"),
            Some(&admin),
        )
        .await;
    assert_eq!(totals(&body), (0, 2, 0));
    let (_, body) = sys
        .get(
            &format!("{COUNTS}?bucket=1m&email=NORA@example.com&since=2000-01-01T00:00:00Z&until=2000-01-01T01:00:00Z"),
            Some(&admin),
        )
        .await;
    assert_eq!(totals(&body), (0, 0, 0));
    assert_eq!(body["buckets"].as_array().unwrap().len(), 60);
    let (_, body) = sys
        .get(
            &format!("{COUNTS}?bucket=1d&email=NORA@example.com"),
            Some(&admin),
        )
        .await;
    assert_eq!(totals(&body), (1, 1, 0));

    // Refusals, from the gateway and from audit-service alike, name the
    // field.
    for (query, field) in [
        ("bucket=0", "bucket"),
        ("bucket=-1h", "bucket"),
        ("bucket=1x", "bucket"),
        ("", "bucket"),
        ("bucket=1s", "bucket"),
        ("bucket=367d", "bucket"),
        ("bucket=1h&since=2999-01-01T00:00:00Z", "since"),
        ("bucket=1h&ip=nope", "ip"),
    ] {
        let (status, body) = sys.get(&format!("{COUNTS}?{query}"), Some(&admin)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.get(field).is_some(), "{query}: {body}");
    }
    sys.shutdown().await;
}
