//! Abuse cases, one test each, against the real services through the
//! gateway: account locks and their emails, enumeration, token forgery and misuse, internal
//! calls without the shared secret, spoofed client addresses and hostile
//! bodies. Thresholds are lowered per test so each runs in seconds. The
//! brute-force rules themselves are auth-service's own tests
//! (`auth-service/tests/api/brute_force.rs`), at a fixed clock.

use std::time::{Duration, Instant};

use auth_service::store::{AuthStore, PgStore, SqliteStore};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use proto::{
    audit::v1::{ListAttemptsRequest, audit_service_client::AuditServiceClient},
    auth::v1::{GetJwksRequest, auth_service_client::AuthServiceClient},
};
use serde_json::{Value, json};
use system_tests::{Backend, TestSystem};

use crate::support::trust_loopback;

on_every_backend!(
    brute_force_on_one_account_from_many_ips_locks_it_and_mails_the_owner_once,
    responses_do_not_reveal_which_accounts_exist,
    login_timing_does_not_reveal_which_accounts_exist,
    a_reused_refresh_token_revokes_its_family,
    logout_ends_one_session_and_logout_all_ends_every_session,
    alg_none_tokens_are_rejected,
    hs256_tokens_keyed_with_the_public_key_are_rejected,
    expired_tokens_are_rejected,
    tokens_of_the_wrong_type_are_rejected,
    internal_grpc_requires_the_internal_token,
    spoofed_forwarded_for_is_ignored,
    oversized_and_malformed_bodies_are_refused_and_logged,
    register_and_code_endpoints_are_rate_limited_per_ip,
    a_refresh_family_refreshing_too_often_is_refused,
    rotated_keys_sign_new_tokens_while_old_ones_still_verify,
    a_weak_password_hash_is_upgraded_on_the_next_login,
    a_deactivated_users_refresh_token_stops_working,
    internal_grpc_can_require_tls_with_client_certificates,
);

const LOGIN: &str = "/api/accounts/login/";
const REFRESH: &str = "/api/accounts/login/refresh/";
const LOGS: &str = "/api/accounts/logs/login/attemps/";

/// A login from client address `ip` (sent as `X-Forwarded-For`).
async fn login_from(sys: &TestSystem, ip: &str, username: &str, password: &str) -> Response {
    let resp = sys
        .http
        .post(sys.url(LOGIN))
        .header("x-forwarded-for", ip)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    Response::read(resp).await
}

/// Status, `Retry-After` and JSON body of a response.
struct Response {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Response {
    async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let body = resp.json().await.unwrap_or(Value::Null);
        Self {
            status,
            retry_after,
            body,
        }
    }

    fn assert_throttled(&self) -> u64 {
        assert_eq!(self.status, 429, "{}", self.body);
        assert_eq!(self.body["code"], "throttled");
        let wait = self.retry_after.expect("429 carries Retry-After");
        assert!(wait >= 1, "Retry-After {wait}");
        wait
    }
}

async fn post_from(sys: &TestSystem, ip: &str, path: &str, body: Value) -> Response {
    let resp = sys
        .http
        .post(sys.url(path))
        .header("x-forwarded-for", ip)
        .json(&body)
        .send()
        .await
        .unwrap();
    Response::read(resp).await
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

async fn a_reused_refresh_token_revokes_its_family(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("hank", "hank@example.com", "hank-pass-12")
        .await;
    let first = sys.login("hank", "hank-pass-12").await;
    let (status, second) = sys
        .post_json(REFRESH, json!({"refresh": first["refresh"]}))
        .await;
    assert_eq!(status, 200);
    // The holder has moved on (a reuse before that, within the reuse grace,
    // would get `second` again: see contract.rs).
    let (status, second) = sys
        .post_json(REFRESH, json!({"refresh": second["refresh"]}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = sys
        .post_json(REFRESH, json!({"refresh": first["refresh"]}))
        .await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    // The thief's reuse also ends the legitimate holder's newer token.
    let (status, body) = sys
        .post_json(REFRESH, json!({"refresh": second["refresh"]}))
        .await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    sys.shutdown().await;
}

async fn logout_ends_one_session_and_logout_all_ends_every_session(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("iris", "iris@example.com", "iris-pass-12")
        .await;
    let one = sys.login("iris", "iris-pass-12").await;
    let two = sys.login("iris", "iris-pass-12").await;

    let (status, body) = sys
        .post_json("/api/accounts/logout/", json!({"refresh": one["refresh"]}))
        .await;
    assert_eq!((status, body), (200, json!({"status": "success"})));
    let (status, body) = sys
        .post_json(REFRESH, json!({"refresh": one["refresh"]}))
        .await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    let (status, _) = sys
        .post_json("/api/accounts/logout/", json!({"refresh": one["refresh"]}))
        .await;
    assert_eq!(status, 401);
    // The other session is untouched.
    let (status, two) = sys
        .post_json(REFRESH, json!({"refresh": two["refresh"]}))
        .await;
    assert_eq!(status, 200);

    // Logout everywhere with an access token.
    let three = sys.login("iris", "iris-pass-12").await;
    let resp = sys
        .http
        .post(sys.url("/api/accounts/logout/all/"))
        .bearer_auth(three["access"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let r = Response::read(resp).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revoked_sessions"], 2);
    for pair in [&two, &three] {
        let (status, _) = sys
            .post_json(REFRESH, json!({"refresh": pair["refresh"]}))
            .await;
        assert_eq!(status, 401);
    }

    // Or with a refresh token, when the access token is gone.
    let four = sys.login("iris", "iris-pass-12").await;
    let (status, _) = sys
        .post_json(
            "/api/accounts/logout/all/",
            json!({"refresh": four["refresh"]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = sys
        .post_json(REFRESH, json!({"refresh": four["refresh"]}))
        .await;
    assert_eq!(status, 401);
    // A bad bearer is refused, not ignored.
    let resp = sys
        .http
        .post(sys.url("/api/accounts/logout/all/"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    sys.shutdown().await;
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn alg_none_tokens_are_rejected(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let access = sys.admin_token().await;
    assert_eq!(sys.get(LOGS, Some(&access)).await.0, 200);
    let mut header = decode_part(&access, 0);
    header["alg"] = json!("none");
    let claims = decode_part(&access, 1);
    let signature = access.split('.').nth(2).unwrap();
    for forged in [
        format!("{}.{}.", b64(&header), b64(&claims)),
        format!("{}.{}.{signature}", b64(&header), b64(&claims)),
    ] {
        let (status, body) = sys.get(LOGS, Some(&forged)).await;
        assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    }
    let refresh = sys.login("root", "admin-pass-123").await["refresh"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut header = decode_part(&refresh, 0);
    header["alg"] = json!("none");
    let forged = format!("{}.{}.", b64(&header), b64(&decode_part(&refresh, 1)));
    assert_eq!(
        sys.post_json(REFRESH, json!({"refresh": forged})).await.0,
        401
    );
    sys.shutdown().await;
}

async fn hs256_tokens_keyed_with_the_public_key_are_rejected(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let access = sys.admin_token().await;
    let (_, jwks) = sys.get("/.well-known/jwks.json", None).await;
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let claims = decode_part(&access, 1);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid);
    // The public key as an HMAC secret, raw and as published.
    for secret in [URL_SAFE_NO_PAD.decode(&x).unwrap(), x.into_bytes()] {
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        let (status, body) = sys.get(LOGS, Some(&forged)).await;
        assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
        let mut refresh_claims = claims.clone();
        refresh_claims["token_type"] = json!("refresh");
        let forged = jsonwebtoken::encode(
            &header,
            &refresh_claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_eq!(
            sys.post_json(REFRESH, json!({"refresh": forged})).await.0,
            401
        );
    }
    sys.shutdown().await;
}

/// Tokens for `username` as auth-service would have issued them at `at`
/// (Unix seconds), signed with the system's real key.
async fn issue_at(sys: &TestSystem, username: &str, at: i64) -> (String, String) {
    async fn with<S: AuthStore>(
        store: S,
        config: &auth_service::Config,
        username: &str,
        at: i64,
    ) -> (String, String) {
        let tokens = auth_service::tokens::TokenService::load(&store, &config.token_policy(), at)
            .await
            .unwrap();
        let user = store.user_by_login(username).await.unwrap().unwrap();
        let pair = tokens.issue(&user, at, "forged-jti".into()).unwrap();
        (pair.access, pair.refresh)
    }
    let config = &sys.auth_config;
    let url = config.database_url.expose();
    if url.starts_with("sqlite:") {
        with(
            SqliteStore::connect(url).await.unwrap(),
            config,
            username,
            at,
        )
        .await
    } else {
        with(PgStore::connect(url).await.unwrap(), config, username, at).await
    }
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

async fn expired_tokens_are_rejected(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.admin_token().await;
    // Control: the same forging path with a current time is accepted.
    let (fresh, _) = issue_at(&sys, "root", unix_now()).await;
    assert_eq!(sys.get(LOGS, Some(&fresh)).await.0, 200);

    let (access, refresh) = issue_at(&sys, "root", unix_now() - 3 * 86_400).await;
    let (status, body) = sys.get(LOGS, Some(&access)).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    let (status, body) = sys.post_json(REFRESH, json!({"refresh": refresh})).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    sys.shutdown().await;
}

async fn tokens_of_the_wrong_type_are_rejected(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let access = sys.admin_token().await;
    let pair = sys.login("root", "admin-pass-123").await;
    let (status, body) = sys.get(LOGS, Some(pair["refresh"].as_str().unwrap())).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    let (status, body) = sys.post_json(REFRESH, json!({"refresh": access})).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    // Control: each in its own place works.
    assert_eq!(sys.get(LOGS, Some(&access)).await.0, 200);
    assert_eq!(
        sys.post_json(REFRESH, json!({"refresh": pair["refresh"]}))
            .await
            .0,
        200
    );
    sys.shutdown().await;
}

async fn internal_grpc_requires_the_internal_token(backend: Backend) {
    let token = "internal-secret-123";
    let Some(sys) = TestSystem::start_with(backend, |auth, gw| {
        auth.internal_token = Some(common::config::Secret::new(token));
        gw.internal_token = Some(common::config::Secret::new(token));
    })
    .await
    else {
        return;
    };
    // The gateway presents it, so the public API works.
    sys.active_user("jane", "jane@example.com", "jane-pass-12")
        .await;

    let channel = tonic::transport::Endpoint::from_shared(sys.auth_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let call = |auth: Option<String>| {
        let mut client = AuthServiceClient::new(channel.clone());
        async move {
            let mut req = tonic::Request::new(GetJwksRequest {});
            if let Some(v) = auth {
                req.metadata_mut()
                    .insert("authorization", v.parse().unwrap());
            }
            client.get_jwks(req).await
        }
    };
    let missing = call(None).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let wrong = call(Some("Bearer internal-secret-124".into()))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert!(call(Some(format!("Bearer {token}"))).await.is_ok());

    // Health checks stay open for orchestrators.
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
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
        post_from(
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
        post_from(
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
        post_from(
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

async fn a_refresh_family_refreshing_too_often_is_refused(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |auth, _| {
        auth.rate_limits.refresh_family = auth_service::throttle::Limit::parse("3/1m").unwrap();
    })
    .await
    else {
        return;
    };
    sys.active_user("mia", "mia@example.com", "mia-pass-123")
        .await;
    let mut refresh = sys.login("mia", "mia-pass-123").await["refresh"].clone();
    for _ in 0..3 {
        let (status, body) = sys.post_json(REFRESH, json!({"refresh": refresh})).await;
        assert_eq!(status, 200, "{body}");
        refresh = body["refresh"].clone();
    }
    let r = post_from(&sys, "-", REFRESH, json!({"refresh": refresh})).await;
    let wait = r.assert_throttled();
    assert!(wait <= 60);
    // Another session of the same user is its own family.
    let other = sys.login("mia", "mia-pass-123").await;
    assert_eq!(
        sys.post_json(REFRESH, json!({"refresh": other["refresh"]}))
            .await
            .0,
        200
    );
    sys.shutdown().await;
}

async fn rotated_keys_sign_new_tokens_while_old_ones_still_verify(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let old_access = sys.admin_token().await;
    let old_pair = sys.login("root", "admin-pass-123").await;
    let old_kid = decode_part(&old_access, 0)["kid"].clone();

    // An emergency rotation: the new key signs at once.
    let new_kid = auth_service::admin::rotate_keys(
        &sys.auth_config,
        auth_service::admin::Rollover::Immediate,
    )
    .await
    .unwrap()
    .kid;
    assert_ne!(json!(new_kid), old_kid);
    let mut client = AuthServiceClient::connect(sys.auth_url.clone())
        .await
        .unwrap();
    let jwks = client
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    let kids: Vec<_> = jwks.keys.iter().map(|k| json!(k.kid)).collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&old_kid) && kids.contains(&json!(new_kid)));

    // New tokens carry the new kid; the gateway learns it on first sight.
    let new_access = sys.login("root", "admin-pass-123").await["access"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(decode_part(&new_access, 0)["kid"], json!(new_kid));
    assert_eq!(sys.get(LOGS, Some(&new_access)).await.0, 200);
    assert_eq!(sys.get(LOGS, Some(&old_access)).await.0, 200);
    let (status, _) = sys
        .post_json(REFRESH, json!({"refresh": old_pair["refresh"]}))
        .await;
    assert_eq!(status, 200);
    let (_, published) = sys.get("/.well-known/jwks.json", None).await;
    assert_eq!(published["keys"].as_array().unwrap().len(), 2);
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

async fn a_deactivated_users_refresh_token_stops_working(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("olga", "olga@example.com", "olga-pass-12")
        .await;
    let pair = sys.login("olga", "olga-pass-12").await;
    // An operator disables the account directly in the database.
    let url = sys.auth_config.database_url.expose().to_owned();
    let sql = "UPDATE users SET is_active = FALSE WHERE username_lower = 'olga'";
    let changed = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(sql)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(sql)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected()
    };
    assert_eq!(changed, 1);
    let (status, body) = sys
        .post_json(REFRESH, json!({"refresh": pair["refresh"]}))
        .await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    sys.shutdown().await;
}

/// A throw-away CA, a server certificate for 127.0.0.1 and a client
/// certificate, made with the `openssl` command line.
fn make_certificates(dir: &std::path::Path) {
    let script = r#"
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
done
printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out $who.crt -days 2 -extfile $who.ext 2>/dev/null
done
"#;
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "openssl failed");
}

/// Mutual TLS on every internal hop: gateway → auth-service, gateway →
/// audit-service and auth-service's outbox forwarder → audit-service.
async fn internal_grpc_can_require_tls_with_client_certificates(backend: Backend) {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let path = |name: &str| certs.path().join(name);
    let server_tls = common::tls::ServerTls {
        cert: path("server.crt"),
        key: path("server.key"),
        client_ca: Some(path("ca.crt")),
    };
    let client_tls = common::tls::ClientTls {
        ca: Some(path("ca.crt")),
        identity: Some((path("client.crt"), path("client.key"))),
    };
    let Some(sys) = TestSystem::start_with_audit(
        backend,
        |audit| audit.tls = Some(server_tls.clone()),
        |auth, gw| {
            auth.tls = Some(server_tls.clone());
            auth.internal_tls = client_tls.clone();
            gw.internal_tls = client_tls.clone();
        },
    )
    .await
    else {
        return;
    };
    assert!(sys.auth_url.starts_with("https://"));
    assert!(sys.auth_config.audit_grpc_url.starts_with("https://"));
    // The gateway speaks mutual TLS to auth-service: the whole flow works.
    sys.active_user("pia", "pia@example.com", "pia-pass-123")
        .await;
    sys.login("pia", "pia-pass-123").await;
    let (status, _) = sys
        .post_json(
            LOGIN,
            json!({"username": "pia", "password": "wrong-pass-123"}),
        )
        .await;
    assert_eq!(status, 401);
    // The forwarder delivers both attempts over mutual TLS to audit-service.
    let attempts = sys.wait_for_attempts(2).await;
    let pia = |successful: bool| {
        attempts.iter().any(|r| {
            r.attempt
                .as_ref()
                .is_some_and(|a| a.identifier == "pia" && a.successful == successful)
        })
    };
    assert!(pia(true) && pia(false), "{attempts:?}");
    // The gateway reads the log from audit-service over mutual TLS too.
    let admin = sys.admin_token().await;
    let (status, logs) = sys.get(LOGS, Some(&admin)).await;
    assert_eq!(status, 200, "{logs}");
    assert!(!logs["results"].as_array().unwrap().is_empty(), "{logs}");

    let addr = sys.auth_url.trim_start_matches("https://").to_owned();
    let jwks = |endpoint: tonic::transport::Endpoint| async move {
        let channel = endpoint.connect().await?;
        AuthServiceClient::new(channel)
            .get_jwks(GetJwksRequest {})
            .await
            .map_err(anyhow::Error::from)?;
        anyhow::Ok(())
    };
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(path("ca.crt")).unwrap());
    // Plain text is refused.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    assert!(jwks(plain).await.is_err());
    // TLS without a client certificate is refused.
    let anonymous = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca.clone()))
        .unwrap();
    assert!(jwks(anonymous).await.is_err());
    // With one it is accepted.
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(path("client.crt")).unwrap(),
        std::fs::read(path("client.key")).unwrap(),
    );
    let mutual = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(identity),
        )
        .unwrap();
    jwks(mutual).await.unwrap();

    // audit-service refuses plain text and clients without a certificate.
    let audit_addr = sys.audit_url().trim_start_matches("https://").to_owned();
    let list = |endpoint: tonic::transport::Endpoint| async move {
        let channel = endpoint.connect().await?;
        AuditServiceClient::new(channel)
            .list_attempts(ListAttemptsRequest {
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(anyhow::Error::from)?;
        anyhow::Ok(())
    };
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{audit_addr}")).unwrap();
    assert!(list(plain).await.is_err());
    let anonymous = tonic::transport::Endpoint::from_shared(format!("https://{audit_addr}"))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca.clone()))
        .unwrap();
    assert!(list(anonymous).await.is_err());
    sys.shutdown().await;
}
