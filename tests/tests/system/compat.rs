//! The settings that bring back the Django service's behaviour for its
//! clients, each on and off, and what is always on (the `APPEND_SLASH`
//! redirect, simplejwt's token error bodies), through the real gateway.
//! `COMPAT=django` as a whole, read from the environment by the real
//! binaries, is in `tests/compat.rs`.

use std::collections::HashSet;

use serde_json::{Value, json};
use system_tests::{Backend, TestSystem};

use crate::support::{attempt_at, burst, count, ingest, unix_now};

on_every_backend!(
    refresh_tokens_rotate_by_default,
    without_rotation_a_refresh_answers_access_only_and_the_token_keeps_working,
    without_rotation_logout_and_a_password_change_still_end_the_session,
    without_rotation_concurrent_refreshes_all_succeed_up_to_the_limit,
    turning_rotation_off_keeps_spent_tokens_spent_and_live_ones_live,
    the_django_listing_is_every_row_oldest_first_streamed,
    the_django_listing_keeps_admin_auth_and_filters,
    django_reason_texts_replace_the_codes_the_original_had,
    a_failed_verification_answers_400_or_200_as_configured,
    a_get_without_the_trailing_slash_is_redirected_to_it,
    token_errors_carry_simplejwts_texts_and_messages,
);

const REFRESH: &str = "/api/accounts/login/refresh/";
const LOGS: &str = "/api/accounts/logs/login/attemps/";
const VERIFY: &str = "/api/accounts/verification/code/verify/";

/// The keys of a JSON object, sorted.
fn keys(body: &Value) -> Vec<String> {
    let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

async fn refresh_tokens_rotate_by_default(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("rosa", "rosa@example.com", "rosa-pass-12")
        .await;
    let first = sys.login("rosa", "rosa-pass-12").await;
    let (status, body) = sys.refresh(&first["refresh"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["access", "refresh"]);
    assert_ne!(body["refresh"], first["refresh"], "rotated");
    sys.shutdown().await;
}

/// A system whose auth-service does not rotate refresh tokens.
async fn without_rotation(backend: Backend) -> Option<TestSystem> {
    TestSystem::start_with(backend, |auth, _| auth.rotate_refresh_tokens = false).await
}

async fn without_rotation_a_refresh_answers_access_only_and_the_token_keeps_working(
    backend: Backend,
) {
    let Some(sys) = without_rotation(backend).await else {
        return;
    };
    sys.admin_token().await;
    let login = sys.login("root", "admin-pass-123").await;
    let mut accesses = HashSet::new();
    for _ in 0..3 {
        let (status, body) = sys.refresh(&login["refresh"]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(keys(&body), ["access"], "simplejwt's shape: {body}");
        let access = body["access"].as_str().unwrap().to_owned();
        // Each answer's access token is a real one.
        let (status, listing) = sys.get(LOGS, Some(&access)).await;
        assert_eq!(status, 200, "{listing}");
        accesses.insert(access);
    }
    assert_eq!(accesses.len(), 3, "a fresh access token each time");
    sys.shutdown().await;
}

async fn without_rotation_logout_and_a_password_change_still_end_the_session(backend: Backend) {
    let Some(sys) = without_rotation(backend).await else {
        return;
    };
    sys.active_user("saul", "saul@example.com", "saul-pass-12")
        .await;
    let one = sys.login("saul", "saul-pass-12").await;
    let two = sys.login("saul", "saul-pass-12").await;
    assert_eq!(sys.refresh(&one["refresh"]).await.0, 200);

    let (status, _) = sys
        .post_json("/api/accounts/logout/", json!({"refresh": one["refresh"]}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = sys.refresh(&one["refresh"]).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})
        )
    );
    // The other session is untouched by that logout ...
    assert_eq!(sys.refresh(&two["refresh"]).await.0, 200);
    // ... and ended by a password change, which also hands out a new pair.
    let resp = sys
        .http
        .post(sys.url("/api/accounts/password/change/"))
        .bearer_auth(two["access"].as_str().unwrap())
        .json(&json!({"old_password": "saul-pass-12", "new_password": "saul-newpass-34"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(sys.refresh(&two["refresh"]).await.0, 401);
    assert_eq!(sys.refresh(&changed["refresh"]).await.0, 200);
    sys.shutdown().await;
}

async fn without_rotation_concurrent_refreshes_all_succeed_up_to_the_limit(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.rotate_refresh_tokens = false;
        auth.rate_limits.refresh_family = auth_service::throttle::Limit::parse("8/1m").unwrap();
    })
    .await
    else {
        return;
    };
    sys.active_user("tara", "tara@example.com", "tara-pass-12")
        .await;
    let login = sys.login("tara", "tara-pass-12").await;
    let refresh = login["refresh"].clone();

    // Twelve at one instant with one token: no reuse detection revokes
    // anything, and the token's limit (8 a minute) holds exactly.
    let replies = burst(12, |_| {
        sys.http
            .post(sys.url(REFRESH))
            .json(&json!({"refresh": refresh}))
            .send()
    })
    .await;
    assert_eq!(count(&replies, 200), 8, "{replies:?}");
    assert_eq!(count(&replies, 429), 4, "{replies:?}");
    for reply in replies.iter().filter(|r| r.status == 200) {
        assert_eq!(keys(&reply.body), ["access"]);
    }
    // Another session of the user has its own count.
    let other = sys.login("tara", "tara-pass-12").await;
    assert_eq!(sys.refresh(&other["refresh"]).await.0, 200);
    sys.shutdown().await;
}

async fn turning_rotation_off_keeps_spent_tokens_spent_and_live_ones_live(backend: Backend) {
    let Some(mut sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("wade", "wade@example.com", "wade-pass-12")
        .await;
    let first = sys.login("wade", "wade-pass-12").await;
    let (status, second) = sys.refresh(&first["refresh"]).await;
    assert_eq!(status, 200);

    sys.auth_config.rotate_refresh_tokens = false;
    sys.restart_auth().await;

    // Spent under rotation: still spent.
    let (status, _) = sys.refresh(&first["refresh"]).await;
    assert_eq!(status, 401);
    // Live: now reusable.
    for _ in 0..2 {
        let (status, body) = sys.refresh(&second["refresh"]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(keys(&body), ["access"]);
    }
    sys.shutdown().await;
}

/// Attempt `i` of a seeded log: one second apart from an hour ago, failures
/// but every seventh, ingested in a shuffled order so the order listed is
/// the log's, not the insertion's.
async fn seed(sys: &TestSystem, n: usize) {
    let start = unix_now() - 3600;
    let mut attempts: Vec<_> = (0..n)
        .map(|i| {
            let reason = if i % 7 == 0 { "" } else { "bad_password" };
            let at = start + i64::try_from(i / 3).unwrap();
            attempt_at("10.9.0.1", &format!("seed{i}"), reason, at)
        })
        .collect();
    // A fixed shuffle: reversed halves.
    let half = attempts.split_off(n / 2);
    attempts = half.into_iter().rev().chain(attempts).collect();
    ingest(sys, attempts).await;
}

/// A listing under `LOG_LISTING_FORMAT=django` (and the code reasons).
async fn with_django_listing(backend: Backend) -> Option<TestSystem> {
    TestSystem::start_with(backend, |_, gateway| {
        gateway.shapes.listing = gateway::compat::ListingFormat::Django;
    })
    .await
}

async fn the_django_listing_is_every_row_oldest_first_streamed(backend: Backend) {
    let Some(sys) = with_django_listing(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    // Several of the 500-row pages the stream is built from.
    let n = 2_345;
    seed(&sys, n).await;
    sys.wait_for_attempts(n + 1).await;

    let response = sys
        .http
        .get(sys.url(&format!("{LOGS}?limit=3&cursor=junk")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers.get("content-length").is_none(),
        "streamed, not buffered: {headers:?}"
    );
    assert_eq!(headers["transfer-encoding"], "chunked");
    let rows: Vec<Value> = serde_json::from_str(&response.text().await.unwrap()).unwrap();

    assert_eq!(rows.len(), n + 1, "every row; limit and cursor ignored");
    let order: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["created_at"].as_str().unwrap().to_owned(),
                r["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "not oldest first (time, then id)"
    );
    assert_eq!(rows[0]["identifier"], "seed0");
    assert_eq!(
        rows[n]["identifier"], "root",
        "the admin's own login is newest"
    );
    let ids: HashSet<i64> = order.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), n + 1, "no row twice");
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
        assert!(rows[1].get(field).is_some(), "missing {field}");
    }
    sys.shutdown().await;
}

async fn the_django_listing_keeps_admin_auth_and_filters(backend: Backend) {
    let Some(sys) = with_django_listing(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    sys.active_user("uma", "uma@example.com", "uma-pass-123")
        .await;
    let user = sys.login("uma", "uma-pass-123").await;
    seed(&sys, 20).await;

    let (status, body) = sys.get(LOGS, None).await;
    assert_eq!((status, &body["code"]), (401, &json!("not_authenticated")));
    let (status, body) = sys.get(LOGS, Some(user["access"].as_str().unwrap())).await;
    assert_eq!((status, &body["code"]), (403, &json!("permission_denied")));
    let (status, body) = sys.get(&format!("{LOGS}?ip=nonsense"), Some(&admin)).await;
    assert_eq!(status, 400);
    assert!(body.get("ip").is_some(), "{body}");

    let (status, body) = sys
        .get(&format!("{LOGS}?successful=true&ip=10.9.0.1"), Some(&admin))
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["seed0", "seed7", "seed14"]);
    // An export still exports.
    let resp = sys
        .http
        .get(sys.url(&format!("{LOGS}?format=csv&ip=10.9.0.1")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(resp.text().await.unwrap().lines().count(), 21);
    // An empty result is an empty array.
    let (status, body) = sys
        .get(&format!("{LOGS}?identifier=nobody"), Some(&admin))
        .await;
    assert_eq!((status, body), (200, json!([])));
    sys.shutdown().await;
}

async fn django_reason_texts_replace_the_codes_the_original_had(backend: Backend) {
    for django in [false, true] {
        let Some(sys) = TestSystem::start_with(backend, |_, gateway| {
            if django {
                gateway.shapes.reasons = gateway::compat::ReasonText::Django;
            }
        })
        .await
        else {
            return;
        };
        let admin = sys.admin_token().await;
        let now = unix_now();
        let reasons = [
            "",
            "unknown_user",
            "bad_password",
            "locked_out",
            "inactive",
            "rate_limited",
            "malformed_request",
        ];
        let attempts = reasons
            .iter()
            .enumerate()
            .map(|(i, reason)| {
                let at = now - 100 + i64::try_from(i).unwrap();
                attempt_at("10.8.0.1", &format!("r{i}"), reason, at)
            })
            .collect();
        ingest(&sys, attempts).await;
        // A real wrong password through the gateway, too.
        let (status, _) = sys
            .post_json(
                "/api/accounts/login/",
                json!({"username": "root", "password": "wrong-pass-1"}),
            )
            .await;
        assert_eq!(status, 401);
        sys.wait_for_attempts(reasons.len() + 2).await;

        let (status, page) = sys.get(&format!("{LOGS}?limit=500"), Some(&admin)).await;
        assert_eq!(status, 200, "{page}");
        let items = page["results"].as_array().unwrap();
        let shown = |identifier: &str| {
            items
                .iter()
                .find(|r| r["identifier"] == identifier)
                .unwrap_or_else(|| panic!("{identifier} not listed"))["reject_reason"]
                .clone()
        };
        let expected = if django {
            [
                json!(""),
                json!("User Not Exists"),
                json!("Wrong password"),
                json!("User blocked for too many attempt"),
                json!("inactive"),
                json!("rate_limited"),
                json!("malformed_request"),
            ]
        } else {
            [
                Value::Null,
                json!("unknown_user"),
                json!("bad_password"),
                json!("locked_out"),
                json!("inactive"),
                json!("rate_limited"),
                json!("malformed_request"),
            ]
        };
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(&shown(&format!("r{i}")), want, "django={django}, r{i}");
        }
        let real_failure = items
            .iter()
            .find(|r| r["identifier"] == "root" && r["successful"] == false)
            .unwrap();
        let want = if django {
            "Wrong password"
        } else {
            "bad_password"
        };
        assert_eq!(real_failure["reject_reason"], want);
        // Filters still take the codes.
        let (status, page) = sys
            .get(&format!("{LOGS}?reason=unknown_user"), Some(&admin))
            .await;
        assert_eq!(status, 200);
        assert_eq!(page["results"].as_array().unwrap().len(), 1);
        // The NDJSON export writes the same texts.
        let resp = sys
            .http
            .get(sys.url(&format!("{LOGS}?format=ndjson&identifier=r1")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        let line: Value = serde_json::from_str(resp.text().await.unwrap().trim()).unwrap();
        assert_eq!(line["reject_reason"], expected[1]);
        sys.shutdown().await;
    }
}

async fn a_failed_verification_answers_400_or_200_as_configured(backend: Backend) {
    for (status_200, failed_status) in [(false, 400), (true, 200)] {
        let Some(sys) = TestSystem::start_with(backend, |_, gateway| {
            if status_200 {
                gateway.shapes.verify_failure = gateway::compat::VerifyFailureStatus::Ok;
            }
        })
        .await
        else {
            return;
        };
        let (email, password) = ("vera@example.com", "vera-pass-12");
        let (status, _) = sys
            .post_json(
                "/api/accounts/register/",
                json!({"username": "vera", "email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 201);
        sys.post_json("/api/accounts/verification/code/", json!({"email": email}))
            .await;
        let code = sys.smtp.wait_for_code(email, 1).await;
        let wrong = if code == "000000" { "000001" } else { "000000" };

        let (status, body) = sys
            .post_json(
                VERIFY,
                json!({"email": email, "code": wrong, "password": password}),
            )
            .await;
        assert_eq!(
            (status, body),
            (
                failed_status,
                json!({"status": "failed", "message": "code-wrong"})
            ),
            "VERIFY_FAILURE_STATUS=200: {status_200}"
        );
        // Field errors are still 400: the setting is about failed checks.
        let (status, _) = sys.post_json(VERIFY, json!({"email": email})).await;
        assert_eq!(status, 400);
        let (status, body) = sys
            .post_json(
                VERIFY,
                json!({"email": email, "code": code, "password": password}),
            )
            .await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({"status": "success", "message": "user-activated"})
            )
        );
        sys.shutdown().await;
    }
}

async fn a_get_without_the_trailing_slash_is_redirected_to_it(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let admin = sys.admin_token().await;
    sys.wait_for_attempts(1).await;
    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let no_slash = "/api/accounts/logs/login/attemps";
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let resp = manual
            .request(
                method.clone(),
                sys.url(&format!("{no_slash}?limit=2&x=%2F")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 301, "{method}");
        assert_eq!(
            resp.headers()["location"],
            "/api/accounts/logs/login/attemps/?limit=2&x=%2F"
        );
    }
    // A client that follows redirects (as the old ones did) gets the page.
    let (status, body) = sys.get(&format!("{no_slash}?limit=2"), Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);

    // Other methods and unknown paths are unchanged, and nothing leads
    // off-site.
    let resp = manual
        .post(sys.url("/api/accounts/login"))
        .json(&json!({"username": "root", "password": "admin-pass-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    for path in [
        "/api/accounts/nothing",
        "//evil.example",
        "//evil.example/api/accounts/login",
        "/%2F%2Fevil.example",
        "/api/accounts/login//",
        "/healthz/",
    ] {
        let resp = manual.get(sys.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert!(resp.headers().get("location").is_none(), "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({"detail": "Not found."}), "{path}");
    }
    sys.shutdown().await;
}

async fn token_errors_carry_simplejwts_texts_and_messages(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let access = sys.admin_token().await;
    let pair = sys.login("root", "admin-pass-123").await;
    let refused = |message: &str| {
        json!({
            "detail": "Given token not valid for any token type",
            "code": "token_not_valid",
            "messages": [{"token_class": "AccessToken", "token_type": "access", "message": message}],
        })
    };

    let (status, body) = sys.get(LOGS, Some("not.a.jwt")).await;
    assert_eq!(
        (status, body),
        (401, refused("Token is invalid or expired"))
    );
    let (status, body) = sys.get(LOGS, Some(pair["refresh"].as_str().unwrap())).await;
    assert_eq!((status, body), (401, refused("Token has wrong type")));
    let resp = sys
        .http
        .get(sys.url(LOGS))
        .header("authorization", "Bearer two words")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"detail": "Authorization header must contain two space-delimited values",
               "code": "bad_authorization_header"})
    );

    // The refresh endpoint answers as simplejwt's TokenRefreshView: no
    // `messages`.
    let (status, body) = sys.refresh(&"junk").await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})
        )
    );
    let (status, body) = sys.refresh(&access).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"detail": "Token has wrong type", "code": "token_not_valid"})
        )
    );
    sys.shutdown().await;
}
