//! Delivery of attempts when audit-service goes away and comes back.

use std::collections::HashSet;

use serde_json::json;
use system_tests::{Backend, TestSystem};

on_every_backend!(attempts_made_while_audit_is_down_arrive_exactly_once);

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
