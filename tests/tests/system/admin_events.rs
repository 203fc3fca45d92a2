//! Admin events end to end (issue #16): an administrator's action through
//! the gateway, and an operator's `auth-service user …` command, each
//! reach audit-service through auth-service's outbox and are listed by
//! `GET /api/admin/events/` with who, what, whom and from where.

use std::{
    process::Output,
    sync::Once,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use system_tests::{
    Backend, TestSystem,
    processes::{build_binaries, command, output_within},
};

use crate::support::{Bind, auth_count, auth_sql, trust_loopback};

on_every_backend!(
    an_admins_deactivation_is_listed_with_actor_target_and_address,
    an_operators_command_line_action_arrives_once_forwarded,
    the_events_route_is_for_admins_and_refuses_bad_filters_by_name,
    an_event_audit_refuses_is_set_aside_and_the_rest_arrive,
);

const EVENTS: &str = "/api/admin/events/";
const USERS: &str = "/api/admin/users/";

/// GETs `path` as `token` until `ready` holds for the body (events reach
/// the log once auth-service's forwarder sends them), at most 20 s.
async fn get_until(
    sys: &TestSystem,
    path: &str,
    token: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = sys.get(path, Some(token)).await;
        assert_eq!(status, 200, "{body}");
        if ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never ready: {path}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn results(body: &Value) -> &Vec<Value> {
    body["results"].as_array().unwrap()
}

/// The id of account `username`, through the user listing.
async fn id_of(sys: &TestSystem, token: &str, username: &str) -> i64 {
    let (status, body) = sys.get(&format!("{USERS}?q={username}"), Some(token)).await;
    assert_eq!(status, 200, "{body}");
    results(&body)
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("no {username} in {body}"))["id"]
        .as_i64()
        .unwrap()
}

async fn an_admins_deactivation_is_listed_with_actor_target_and_address(backend: Backend) {
    let Some(sys) = TestSystem::start_with(backend, |_, gw| trust_loopback(gw)).await else {
        return;
    };
    let token = sys.admin_token().await;
    sys.active_user("vic", "vic@example.com", "vic-pass-1234")
        .await;
    sys.login("vic", "vic-pass-1234").await;
    let vic = id_of(&sys, &token, "vic").await;
    let root = id_of(&sys, &token, "root").await;

    let resp = sys
        .http
        .patch(sys.url(&format!("{USERS}{vic}/")))
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.50")
        .header("user-agent", "console-test/1")
        .header("x-request-id", "deactivate-vic-1")
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let body = get_until(&sys, EVENTS, &token, |b| !results(b).is_empty()).await;
    let events = results(&body);
    assert_eq!(events.len(), 1, "{body}");
    let e = &events[0];
    assert_eq!(e["action"], "deactivate", "{e}");
    assert_eq!(
        (e["actor_id"].as_i64(), e["actor"].as_str()),
        (Some(root), Some("root")),
        "{e}"
    );
    assert_eq!(e["operator"], false, "{e}");
    assert_eq!(
        (e["target_id"].as_i64(), e["target"].as_str()),
        (Some(vic), Some("vic")),
        "{e}"
    );
    assert_eq!(e["target_email"], "vic@example.com", "{e}");
    assert_eq!(e["ip"], "203.0.113.50", "{e}");
    assert_eq!(e["user_agent"], "console-test/1", "{e}");
    assert_eq!(e["request_id"], "deactivate-vic-1", "{e}");
    assert_eq!(e["sessions_revoked"], 1, "{e}");
    assert!(e["created_at"].as_str().unwrap().ends_with('Z'), "{e}");
    assert_eq!(body["next"], Value::Null);

    // The filters find it, and only it.
    for query in [
        "action=deactivate".to_owned(),
        format!("target_id={vic}"),
        "target=VIC".to_owned(),
        "actor=Root".to_owned(),
        format!("actor_id={root}"),
        "operator=false".to_owned(),
        "ip=203.0.113.0/24".to_owned(),
    ] {
        let (status, body) = sys.get(&format!("{EVENTS}?{query}"), Some(&token)).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(results(&body).len(), 1, "{query}: {body}");
    }
    for query in [
        "action=delete",
        "operator=true",
        "ip=198.51.100.0/24",
        "target=vicky",
    ] {
        let (status, body) = sys.get(&format!("{EVENTS}?{query}"), Some(&token)).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(results(&body).is_empty(), "{query}: {body}");
    }
    // It is no login attempt: the attempt log holds the logins only.
    let (_, attempts) = sys
        .get("/api/accounts/logs/login/attemps/", Some(&token))
        .await;
    assert!(
        results(&attempts).iter().all(|a| a["kind"] == "login"),
        "{attempts}"
    );
    sys.shutdown().await;
}

fn build() {
    static BUILT: Once = Once::new();
    BUILT.call_once(build_binaries);
}

/// Runs the real `auth-service user …` as operator `ops` on `sys`'s auth
/// database.
fn user_command(sys: &TestSystem, args: &[&str]) -> Output {
    build();
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["user"];
    all.extend(args);
    let mut cmd = command("auth-service");
    cmd.current_dir(dir.path())
        .args(&all)
        .env("AUTH_DATABASE_URL", sys.auth_config.database_url.expose())
        .env("MAIL_DIR", dir.path().join("mail"))
        .env("USER", "ops")
        .env("RUST_LOG", "warn");
    output_within(&mut cmd, "", Duration::from_secs(120))
}

async fn an_operators_command_line_action_arrives_once_forwarded(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let token = sys.admin_token().await;
    sys.active_user("wes", "wes@example.com", "wes-pass-1234")
        .await;
    let wes = id_of(&sys, &token, "wes").await;

    let out = user_command(&sys, &["deactivate", "wes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The command wrote the event into the outbox with its change; the
    // running auth-service forwards it.
    let body = get_until(&sys, &format!("{EVENTS}?operator=true"), &token, |b| {
        !results(b).is_empty()
    })
    .await;
    let events = results(&body);
    assert_eq!(events.len(), 1, "{body}");
    let e = &events[0];
    assert_eq!(e["action"], "deactivate", "{e}");
    assert_eq!(e["operator"], true, "{e}");
    assert_eq!(e["actor_id"], Value::Null, "{e}");
    assert_eq!(e["actor"], "ops", "{e}");
    assert_eq!(
        (e["target_id"].as_i64(), e["target"].as_str()),
        (Some(wes), Some("wes")),
        "{e}"
    );
    assert_eq!(
        e["ip"],
        Value::Null,
        "no client address at the command line: {e}"
    );
    assert!(
        e["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.contains("CLI")),
        "{e}"
    );
    // The change itself happened: wes can no longer log in.
    let (status, _) = sys
        .post_json(
            "/api/accounts/login/",
            json!({"username": "wes", "password": "wes-pass-1234"}),
        )
        .await;
    assert_eq!(status, 401);

    // A refused command writes no event: root is the last admin.
    let out = user_command(&sys, &["delete", "root", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let out = user_command(&sys, &["activate", "wes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = get_until(&sys, &format!("{EVENTS}?operator=true"), &token, |b| {
        results(b).len() >= 2
    })
    .await;
    let actions: Vec<&str> = results(&body)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["activate", "deactivate"],
        "newest first, no delete"
    );
    sys.shutdown().await;
}

async fn the_events_route_is_for_admins_and_refuses_bad_filters_by_name(backend: Backend) {
    let Some(sys) = TestSystem::start(backend).await else {
        return;
    };
    let token = sys.admin_token().await;
    sys.active_user("xan", "xan@example.com", "xan-pass-1234")
        .await;
    let user_token = sys.login("xan", "xan-pass-1234").await["access"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = sys.get(EVENTS, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "not_authenticated", "{body}");
    let (status, body) = sys.get(EVENTS, Some(&user_token)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "permission_denied", "{body}");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("action=promote", "action"),
        ("actor_id=one", "actor_id"),
        ("target_id=1.5", "target_id"),
        ("operator=maybe", "operator"),
        ("ip=10.0.0.0/33", "ip"),
        ("since=yesterday", "since"),
        ("target=a%00b", "target"),
        (
            "since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
            "until",
        ),
    ] {
        let (status, body) = sys.get(&format!("{EVENTS}?{query}"), Some(&token)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body[field].is_array(), "{query}: {body}");
    }
    let (status, body) = sys
        .get(&format!("{EVENTS}?cursor=garbage"), Some(&token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("cursor"),
        "{body}"
    );

    // Pages: three events, two a page, `next` keeping the filters.
    let xan = id_of(&sys, &token, "xan").await;
    for _ in 0..3 {
        let resp = sys
            .http
            .post(sys.url(&format!("{USERS}{xan}/logout/")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    get_until(&sys, EVENTS, &token, |b| results(b).len() == 3).await;
    let (_, first) = sys
        .get(&format!("{EVENTS}?limit=2&action=logout"), Some(&token))
        .await;
    assert_eq!(results(&first).len(), 2, "{first}");
    let next = first["next"].as_str().unwrap();
    assert!(
        next.contains("action=logout") && next.contains("limit=2"),
        "{next}"
    );
    let (_, second) = sys.get(next, Some(&token)).await;
    assert_eq!(results(&second).len(), 1, "{second}");
    assert_eq!(second["next"], Value::Null);
    let mut ids: Vec<i64> = results(&first)
        .iter()
        .chain(results(&second))
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // The first logout ended the session xan logged in with.
    let counts: Vec<i64> = results(&first)
        .iter()
        .chain(results(&second))
        .map(|e| e["sessions_revoked"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [0, 0, 1]);
    sys.shutdown().await;
}

/// An admin event audit-service will never accept (an action it does not
/// know, as a newer auth-service could write) is set aside in
/// `refused_attempts` as an admin event, while the events around it,
/// recorded while audit-service was down, all arrive once.
async fn an_event_audit_refuses_is_set_aside_and_the_rest_arrive(backend: Backend) {
    use prost::Message as _;

    let Some(mut sys) = TestSystem::start(backend).await else {
        return;
    };
    let token = sys.admin_token().await;
    sys.active_user("yul", "yul@example.com", "yul-pass-1234")
        .await;
    let yul = id_of(&sys, &token, "yul").await;
    sys.stop_audit().await;
    let logout = || async {
        let resp = sys
            .http
            .post(sys.url(&format!("{USERS}{yul}/logout/")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    };
    logout().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let poison = proto::audit::v1::AdminEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap(),
            nanos: 0,
        }),
        action: 99,
        actor_id: Some(1),
        target_id: yul,
        ..Default::default()
    };
    auth_sql(
        &sys,
        "INSERT INTO attempt_outbox (event_id, payload, created_at, kind) \
         VALUES ($1, $2, 0, 'admin_event')",
        vec![
            Bind::Text(poison.event_id.clone()),
            Bind::Bytes(poison.encode_to_vec()),
        ],
    )
    .await;
    logout().await;

    sys.start_audit().await;
    let body = get_until(&sys, EVENTS, &token, |b| results(b).len() >= 2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while auth_count(
        &sys,
        "SELECT COUNT(*) FROM attempt_outbox WHERE kind = $1",
        "admin_event",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "the outbox never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(results(&body).len(), 2, "{body}");
    assert!(
        results(&body)
            .iter()
            .all(|e| e["action"] == "logout" && e["event_id"] != poison.event_id.as_str()),
        "{body}"
    );
    let (_, again) = sys.get(EVENTS, Some(&token)).await;
    assert_eq!(results(&again).len(), 2, "each event once: {again}");
    assert_eq!(
        auth_count(
            &sys,
            "SELECT COUNT(*) FROM refused_attempts WHERE kind = 'admin_event' AND event_id = $1",
            &poison.event_id,
        )
        .await,
        1,
        "kept for an operator, as an admin event"
    );
    sys.shutdown().await;
}
