//! Delivery of attempts when audit-service goes away and comes back.

use std::collections::HashSet;

use serde_json::json;
use system_tests::{Backend, TestSystem};

on_every_backend!(
    attempts_made_while_audit_is_down_arrive_exactly_once,
    an_attempt_audit_refuses_is_set_aside_and_the_rest_arrive,
);

async fn attempts_made_while_audit_is_down_arrive_exactly_once(backend: Backend) {
    let Some(mut sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("quinn", "quinn@example.com", "quinn-pass-1")
        .await;
    for _ in 0..5 {
        sys.login("quinn", "quinn-pass-1").await;
    }
    sys.wait_for_attempts(5).await;

    sys.stop_audit().await;
    // Logins keep working, successes and failures alike, and are not slowed
    // down by the missing audit-service.
    for i in 0..10 {
        if i % 2 == 0 {
            sys.login("quinn", "quinn-pass-1").await;
        } else {
            let (status, _) = sys
                .post_json(
                    "/api/accounts/login/",
                    json!({"username": "quinn", "password": "wrong-pass"}),
                )
                .await;
            assert_eq!(status, 401);
        }
    }
    sys.start_audit().await;
    for _ in 0..5 {
        sys.login("quinn", "quinn-pass-1").await;
    }

    let log = sys.wait_for_attempts(20).await;
    // Give any duplicate a chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let log = if log.len() == 20 {
        sys.all_attempts().await
    } else {
        log
    };
    assert_eq!(log.len(), 20);
    let ids: HashSet<_> = log
        .iter()
        .map(|r| r.attempt.as_ref().unwrap().event_id.clone())
        .collect();
    assert_eq!(ids.len(), 20, "duplicated event ids");
    assert_eq!(
        log.iter()
            .filter(|r| !r.attempt.as_ref().unwrap().successful)
            .count(),
        5
    );
    sys.shutdown().await;
}

/// Runs `sql` on auth-service's database with `bind`, if any, as `$1` and
/// `$2`, and returns the first column of the first row (0 if none).
async fn on_auth_db(url: &str, sql: &'static str, bind: Option<(String, Vec<u8>)>) -> i64 {
    use sqlx::{Connection as _, Row as _};

    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let mut query = sqlx::query(sql);
        if let Some((text, bytes)) = bind {
            query = query.bind(text).bind(bytes);
        }
        let row = query.fetch_optional(&mut conn).await.unwrap();
        row.map_or(0, |r| r.get(0))
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let mut query = sqlx::query(sql);
        if let Some((text, bytes)) = bind {
            query = query.bind(text).bind(bytes);
        }
        let row = query.fetch_optional(&mut conn).await.unwrap();
        row.map_or(0, |r| r.get(0))
    }
}

/// A row audit-service will never accept (here an unknown reason, as a
/// newer auth-service could write before audit-service is upgraded) is
/// moved out of the outbox into `refused_attempts`, loudly, instead of being resent forever in
/// front of every attempt after it; the attempts around it all arrive.
async fn an_attempt_audit_refuses_is_set_aside_and_the_rest_arrive(backend: Backend) {
    use prost::Message as _;

    let Some(mut sys) = TestSystem::start(backend).await else {
        return;
    };
    sys.active_user("rhea", "rhea@example.com", "rhea-pass-1")
        .await;
    sys.stop_audit().await;
    for _ in 0..3 {
        sys.login("rhea", "rhea-pass-1").await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let poison = proto::audit::v1::Attempt {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap(),
            nanos: 0,
        }),
        // A reason this audit-service does not know (a newer producer's).
        reason: 99,
        ..Default::default()
    };
    let db = sys.auth_config.database_url.expose().to_owned();
    on_auth_db(
        &db,
        "INSERT INTO attempt_outbox (event_id, payload, created_at) VALUES ($1, $2, 0)",
        Some((poison.event_id.clone(), poison.encode_to_vec())),
    )
    .await;
    for _ in 0..3 {
        sys.login("rhea", "rhea-pass-1").await;
    }

    sys.start_audit().await;
    sys.wait_for_attempts(6).await;
    let mut waiting = -1;
    for _ in 0..200 {
        waiting = on_auth_db(&db, "SELECT COUNT(*) FROM attempt_outbox", None).await;
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    assert_eq!(waiting, 0, "the outbox never emptied");
    let log = sys.all_attempts().await;
    assert_eq!(log.len(), 6);
    assert!(
        log.iter()
            .all(|r| r.attempt.as_ref().unwrap().event_id != poison.event_id)
    );
    // Kept, not dropped: set aside for an operator with the refusal.
    assert_eq!(
        on_auth_db(
            &db,
            "SELECT COUNT(*) FROM refused_attempts WHERE refusal LIKE '%reason%'",
            None
        )
        .await,
        1
    );
    sys.shutdown().await;
}
