//! Token misuse against the real services through the gateway: reused,
//! forged, expired and wrong-type tokens, logout, refresh limits, key
//! rotation, and the tokens of a deactivated user.

use auth_service::store::{AuthStore, PgStore, SqliteStore};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use proto::auth::v1::{GetJwksRequest, auth_service_client::AuthServiceClient};
use serde_json::{Value, json};
use system_tests::{Backend, TestSystem};

use crate::support::{Response, answer_from, auth_sql, unix_now};

on_every_backend!(
    a_reused_refresh_token_revokes_its_family,
    logout_ends_one_session_and_logout_all_ends_every_session,
    alg_none_tokens_are_rejected,
    hs256_tokens_keyed_with_the_public_key_are_rejected,
    expired_tokens_are_rejected,
    tokens_of_the_wrong_type_are_rejected,
    a_refresh_family_refreshing_too_often_is_refused,
    rotated_keys_sign_new_tokens_while_old_ones_still_verify,
    a_deactivated_users_refresh_token_stops_working,
);

const REFRESH: &str = "/api/accounts/login/refresh/";
const LOGS: &str = "/api/accounts/logs/login/attemps/";

async fn a_reused_refresh_token_revokes_its_family(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("hank", "hank@example.com", "hank-pass-12")
        .await;
    let first = sys.login("hank", "hank-pass-12").await;
    let (status, second) = sys.refresh(&first["refresh"]).await;
    assert_eq!(status, 200);
    // The holder has moved on (a reuse before that, within the reuse grace,
    // would get `second` again: see contract.rs).
    let (status, second) = sys.refresh(&second["refresh"]).await;
    assert_eq!(status, 200);
    let (status, body) = sys.refresh(&first["refresh"]).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    // The thief's reuse also ends the legitimate holder's newer token.
    let (status, body) = sys.refresh(&second["refresh"]).await;
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
    let (status, body) = sys.refresh(&one["refresh"]).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    let (status, _) = sys
        .post_json("/api/accounts/logout/", json!({"refresh": one["refresh"]}))
        .await;
    assert_eq!(status, 401);
    // The other session is untouched.
    let (status, two) = sys.refresh(&two["refresh"]).await;
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
        let (status, _) = sys.refresh(&pair["refresh"]).await;
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
    let (status, _) = sys.refresh(&four["refresh"]).await;
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
    assert_eq!(sys.refresh(&forged).await.0, 401);
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
        assert_eq!(sys.refresh(&forged).await.0, 401);
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
    let (status, body) = sys.refresh(&refresh).await;
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
    let (status, body) = sys.refresh(&access).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    // Control: each in its own place works.
    assert_eq!(sys.get(LOGS, Some(&access)).await.0, 200);
    assert_eq!(sys.refresh(&pair["refresh"]).await.0, 200);
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
        let (status, body) = sys.refresh(&refresh).await;
        assert_eq!(status, 200, "{body}");
        refresh = body["refresh"].clone();
    }
    let r = answer_from(&sys, "-", REFRESH, json!({"refresh": refresh})).await;
    let wait = r.assert_throttled();
    assert!(wait <= 60);
    // Another session of the same user is its own family.
    let other = sys.login("mia", "mia-pass-123").await;
    assert_eq!(sys.refresh(&other["refresh"]).await.0, 200);
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
    let (status, _) = sys.refresh(&old_pair["refresh"]).await;
    assert_eq!(status, 200);
    let (_, published) = sys.get("/.well-known/jwks.json", None).await;
    assert_eq!(published["keys"].as_array().unwrap().len(), 2);
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
    let sql = "UPDATE users SET is_active = FALSE WHERE username_lower = 'olga'";
    assert_eq!(auth_sql(&sys, sql, vec![]).await, 1);
    let (status, body) = sys.refresh(&pair["refresh"]).await;
    assert_eq!((status, &body["code"]), (401, &json!("token_not_valid")));
    sys.shutdown().await;
}
