//! Abuse cases, one test each, against the real services through the
//! gateway: account locks and their emails, enumeration, spoofed client
//! addresses, hostile bodies and per-IP limits (token misuse is in
//! `tokens.rs`, internal calls in `internal.rs`). Thresholds are lowered per test so each runs in seconds. The
//! brute-force rules themselves are auth-service's own tests
//! (`auth-service/tests/api/brute_force.rs`), at a fixed clock.

use std::time::{Duration, Instant};

use auth_service::store::{AuthStore, PgStore, SqliteStore};
use serde_json::json;
use system_tests::{Backend, TestSystem};

use crate::support::{Response, answer_from, trust_loopback, unix_now};

on_every_backend!(
    brute_force_on_one_account_from_many_ips_locks_it_and_mails_the_owner_once,
    responses_do_not_reveal_which_accounts_exist,
    login_timing_does_not_reveal_which_accounts_exist,
    spoofed_forwarded_for_is_ignored,
    oversized_and_malformed_bodies_are_refused_and_logged,
    register_and_code_endpoints_are_rate_limited_per_ip,
    a_weak_password_hash_is_upgraded_on_the_next_login,
);

const LOGIN: &str = "/api/accounts/login/";

/// A login from client address `ip` (sent as `X-Forwarded-For`).
async fn login_from(sys: &TestSystem, ip: &str, username: &str, password: &str) -> Response {
    answer_from(
        sys,
        ip,
        LOGIN,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn reasons(sys: &TestSystem, n: usize) -> Vec<String> {
    sys.wait_for_attempts(n)
        .await
        .into_iter()
        .map(|r| r.attempt.unwrap().reason().code().to_owned())
        .collect()
}

async fn brute_force_on_one_account_from_many_ips_locks_it_and_mails_the_owner_once(
    backend: Backend,
) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.account_lock_failures = 6;
        auth.brute_force.account_lock_tiers = vec![60];
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("bob", "bob@example.com", "bob-pass-123")
        .await;
    // Username and email (in any case) of one account count together.
    for i in 0..6 {
        let who = if i % 2 == 0 { "bob" } else { "BOB@Example.COM" };
        let r = login_from(&sys, &format!("10.0.0.{i}"), who, "guess-pass-1").await;
        assert_eq!(r.status, 401);
    }
    let wait = login_from(&sys, "10.9.9.9", "bob", "bob-pass-123")
        .await
        .assert_throttled();
    assert!(wait <= 60);
    login_from(&sys, "10.9.9.8", "bob@example.com", "bob-pass-123")
        .await
        .assert_throttled();

    let locked_mails = || {
        sys.smtp
            .messages_to("bob@example.com")
            .iter()
            .filter(|m| m.data.contains("temporarily locked"))
            .count()
    };
    for _ in 0..100 {
        if locked_mails() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(locked_mails(), 1);

    let log = reasons(&sys, 8).await;
    assert_eq!(log.iter().filter(|r| *r == "locked_out").count(), 2);

    // The operator lifts the lock early.
    auth_service::admin::unlock(&sys.auth_config, "bob")
        .await
        .unwrap();
    assert_eq!(
        login_from(&sys, "10.9.9.9", "bob", "bob-pass-123")
            .await
            .status,
        200
    );
    sys.shutdown().await;
}

async fn responses_do_not_reveal_which_accounts_exist(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.account_lock_failures = 3;
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("erin", "erin@example.com", "erin-pass-12")
        .await;
    let inactive =
        json!({"username": "fred", "email": "fred@example.com", "password": "fred-pass-12"});
    assert_eq!(
        sys.post_json("/api/accounts/register/", inactive).await.0,
        201
    );

    let known = login_from(&sys, "10.2.0.1", "erin", "wrong-pass-1").await;
    let unknown = login_from(&sys, "10.2.0.2", "nobody", "wrong-pass-1").await;
    let not_active = login_from(&sys, "10.2.0.3", "fred", "fred-pass-12").await;
    for r in [&known, &unknown, &not_active] {
        assert_eq!((r.status, &r.body), (401, &known.body));
    }

    let code = |email: &str| {
        sys.post_json(
            "/api/accounts/verification/code/",
            json!({ "email": email }),
        )
    };
    let answers = [
        code("erin@example.com").await,
        code("fred@example.com").await,
        code("ghost@example.com").await,
    ];
    assert!(
        answers
            .iter()
            .all(|a| *a == (200, json!({"status": "success"})))
    );

    let verify = |email: &str| {
        sys.post_json(
            "/api/accounts/verification/code/verify/",
            json!({ "email": email, "code": "000000", "password": "whatever-123" }),
        )
    };
    let wrong = verify("erin@example.com").await;
    assert_eq!(wrong, verify("ghost@example.com").await);
    assert_eq!(wrong.0, 400);

    // Unknown names are locked exactly like real accounts.
    for i in 0..3 {
        login_from(&sys, &format!("10.3.0.{i}"), "phantom", "wrong-pass-1").await;
        login_from(&sys, &format!("10.3.0.{i}"), "erin", "wrong-pass-1").await;
    }
    let phantom = login_from(&sys, "10.3.1.1", "phantom", "wrong-pass-1").await;
    let real = login_from(&sys, "10.3.1.1", "erin", "wrong-pass-1").await;
    phantom.assert_throttled();
    real.assert_throttled();
    assert_eq!(phantom.body, real.body);
    sys.shutdown().await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn login_timing_does_not_reveal_which_accounts_exist(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.brute_force.pair_free_failures = 1000;
        auth.brute_force.account_lock_failures = 1000;
        auth.brute_force.ip_failures = 1000;
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    sys.active_user("gail", "gail@example.com", "gail-pass-12")
        .await;
    // Warm up connections and caches on both paths.
    login_from(&sys, "10.4.0.1", "gail", "wrong-pass-0").await;
    login_from(&sys, "10.4.0.1", "nobody-0", "wrong-pass-0").await;

    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    // Interleaved, so drift in machine load affects both alike.
    for i in 0..30 {
        let t = Instant::now();
        let r = login_from(&sys, "10.4.0.2", "gail", &format!("wrong-pass-{i}")).await;
        known.push(t.elapsed());
        assert_eq!(r.status, 401);
        let t = Instant::now();
        let r = login_from(&sys, "10.4.0.2", &format!("nobody-{i}"), "wrong-pass-1").await;
        unknown.push(t.elapsed());
        assert_eq!(r.status, 401);
    }
    let (k, u) = (median(known), median(unknown));
    let (fast, slow) = (k.min(u), k.max(u));
    // argon2 dominates both; skipping it for unknown users would make one
    // median several times the other.
    assert!(
        slow - fast <= slow.mul_f64(0.3) + Duration::from_millis(5),
        "known {k:?} vs unknown {u:?}"
    );
    sys.shutdown().await;
}

async fn spoofed_forwarded_for_is_ignored(backend: Backend) {
    // No trusted proxies: the socket peer is the client, whatever it claims.
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.brute_force.pair_base_delay = 5;
    })
    .await
    else {
        return;
    };
    sys.active_user("kate", "kate@example.com", "kate-pass-12")
        .await;
    for i in 0..5 {
        let r = login_from(&sys, &format!("192.0.2.{i}"), "kate", "guess-pass-1").await;
        assert_eq!(r.status, 401);
    }
    // A fresh invented address does not escape the per-IP delay.
    login_from(&sys, "192.0.2.77", "kate", "kate-pass-12")
        .await
        .assert_throttled();
    let log = sys.wait_for_attempts(6).await;
    assert!(
        log.iter()
            .all(|r| r.attempt.as_ref().unwrap().ip == "127.0.0.1")
    );
    sys.shutdown().await;
}

async fn oversized_and_malformed_bodies_are_refused_and_logged(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let big = json!({"username": "x".repeat(100 * 1024), "password": "y"});
    // The gateway answers 413 without reading the rest of a too-large body
    // and then drops the connection: no connection reuse here.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let post = |path: &'static str, content_type: &'static str, body: Vec<u8>| {
        http.post(sys.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    let json_type = "application/json";
    assert_eq!(
        status(
            post(LOGIN, json_type, big.to_string().into_bytes())
                .await
                .unwrap()
        ),
        413
    );
    assert_eq!(
        status(
            post(
                "/api/accounts/register/",
                json_type,
                big.to_string().into_bytes()
            )
            .await
            .unwrap()
        ),
        413
    );
    assert_eq!(
        status(
            post(LOGIN, json_type, b"{\"username\": ".to_vec())
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(post(LOGIN, json_type, b"[1, 2, 3]".to_vec()).await.unwrap()),
        400
    );
    let wrong_types = json!({"username": {"$ne": null}, "password": ["a"]});
    assert_eq!(
        status(
            post(LOGIN, json_type, wrong_types.to_string().into_bytes())
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            post(LOGIN, "application/xml", b"<a/>".to_vec())
                .await
                .unwrap()
        ),
        415
    );
    // Every refused login is still an attempt in the log.
    let log = reasons(&sys, 5).await;
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|r| r == "malformed_request"), "{log:?}");
    sys.shutdown().await;
}

async fn register_and_code_endpoints_are_rate_limited_per_ip(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.rate_limits.register = auth_service::throttle::Limit::parse("2/1h").unwrap();
        auth.rate_limits.code_request = auth_service::throttle::Limit::parse("2/10m").unwrap();
        auth.rate_limits.code_verify = auth_service::throttle::Limit::parse("2/10m").unwrap();
        trust_loopback(gw);
    })
    .await
    else {
        return;
    };
    let register = |ip: &'static str, name: &'static str| {
        answer_from(
            &sys,
            ip,
            "/api/accounts/register/",
            json!({"username": name, "email": format!("{name}@example.com"), "password": "long-pass-123"}),
        )
    };
    assert_eq!(register("10.5.0.1", "leo").await.status, 201);
    assert_eq!(register("10.5.0.1", "liam").await.status, 201);
    let wait = register("10.5.0.1", "lily").await.assert_throttled();
    assert!(wait > 3000 && wait <= 3600, "{wait}");
    assert_eq!(register("10.5.0.2", "lily").await.status, 201);

    let code = |ip: &'static str| {
        answer_from(
            &sys,
            ip,
            "/api/accounts/verification/code/",
            json!({"email": "leo@example.com"}),
        )
    };
    assert_eq!(code("10.5.1.1").await.status, 200);
    assert_eq!(code("10.5.1.1").await.status, 200);
    code("10.5.1.1").await.assert_throttled();

    let verify = |ip: &'static str| {
        answer_from(
            &sys,
            ip,
            "/api/accounts/verification/code/verify/",
            json!({"email": "leo@example.com", "code": "000001", "password": "whatever-123"}),
        )
    };
    assert_eq!(verify("10.5.2.1").await.status, 400);
    assert_eq!(verify("10.5.2.1").await.status, 400);
    verify("10.5.2.1").await.assert_throttled();
    assert_eq!(verify("10.5.2.2").await.status, 400);
    sys.shutdown().await;
}

async fn a_weak_password_hash_is_upgraded_on_the_next_login(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    async fn run<S: AuthStore>(sys: &TestSystem, store: S) {
        use argon2::PasswordHasher as _;
        let weak = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"nina-pass-12")
        .unwrap()
        .to_string();
        store
            .create_user(auth_service::store::NewUser {
                username: "nina",
                username_lower: "nina",
                email: "nina@example.com",
                email_lower: "nina@example.com",
                password_hash: &weak,
                is_active: true,
                is_staff: false,
                now: unix_now(),
            })
            .await
            .unwrap();
        sys.login("nina", "nina-pass-12").await;
        let stored = store.user_by_login("nina").await.unwrap().unwrap();
        assert!(
            stored
                .password_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            stored.password_hash
        );
        // And the upgraded hash still verifies.
        sys.login("nina", "nina-pass-12").await;
    }
    let url = sys.auth_config.database_url.expose().to_owned();
    if url.starts_with("sqlite:") {
        run(&sys, SqliteStore::connect(&url).await.unwrap()).await;
    } else {
        run(&sys, PgStore::connect(&url).await.unwrap()).await;
    }
    sys.shutdown().await;
}
