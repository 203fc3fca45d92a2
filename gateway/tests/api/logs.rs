//! The admin log listing end to end: token from the fake auth-service's
//! keys, query validation, the call to audit-service, the page shape.

use proto::audit::v1::{Attempt, AttemptRecord, ListAttemptsResponse};
use serde_json::json;

use crate::helpers::{md, parts, spawn_app, spawn_app_with};

const LOGS: &str = "/api/accounts/logs/login/attemps/";

fn record(id: i64, successful: bool) -> AttemptRecord {
    AttemptRecord {
        id,
        suspicious: !successful,
        attempt: Some(Attempt {
            event_id: format!("event-{id}"),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_704_067_200 + id,
                nanos: 0,
            }),
            identifier: "alice".into(),
            user_id: successful.then_some(3),
            username: successful.then(|| "alice".to_owned()),
            email: "alice@example.com".into(),
            successful,
            reason: if successful {
                0
            } else {
                proto::audit::v1::RejectReason::BadPassword as i32
            },
            ip: "198.51.100.7".into(),
            user_agent: successful.then(|| "curl/8".to_owned()),
            request_id: format!("req-{id}"),
            trace_parent: None,
            count: 0,
            last_occurred_at: None,
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn an_admin_gets_a_page_of_attempts() {
    let app = spawn_app().await;
    app.audit.list.reply_with(|_| {
        Ok(ListAttemptsResponse {
            attempts: vec![record(2, true), record(1, false)],
            next_cursor: String::new(),
        })
    });

    let response = app.get_authorized(LOGS, &app.key.access_token(true)).await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "results": [
                {"id": 2, "email": "alice@example.com", "ip": "198.51.100.7",
                 "created_at": "2024-01-01T00:00:02Z", "user_agent": "curl/8",
                 "reject_reason": null, "successful": true, "suspicious": false, "user": 3,
                 "event_id": "event-2", "username": "alice", "identifier": "alice",
                 "request_id": "req-2", "count": 1, "last_created_at": null, "kind": "login",
                 "original_reject_reason": null},
                {"id": 1, "email": "alice@example.com", "ip": "198.51.100.7",
                 "created_at": "2024-01-01T00:00:01Z", "user_agent": null,
                 "reject_reason": "bad_password", "successful": false, "suspicious": true,
                 "user": null, "event_id": "event-1", "username": null, "identifier": "alice",
                 "request_id": "req-1", "count": 1, "last_created_at": null, "kind": "login",
                 "original_reject_reason": null},
            ],
            "next": null,
        })
    );
    let (request, metadata) = app.audit.list.only_call();
    assert_eq!(request.limit, 50);
    assert!(md(&metadata, "x-request-id").is_some());
    assert_eq!(md(&metadata, "x-client-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn filters_reach_audit_service_and_next_keeps_them() {
    let app = spawn_app().await;
    app.audit.list.reply_with(|_| {
        Ok(ListAttemptsResponse {
            attempts: vec![record(9, true)],
            next_cursor: "opaque/cursor+1".into(),
        })
    });

    let response = app
        .get_authorized(
            &format!("{LOGS}?limit=1&successful=true&ip=198.51.100.7&email=alice%40example.com&since=2024-01-01T00:00:00Z"),
            &app.key.access_token(true),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 200);
    let (request, _) = app.audit.list.only_call();
    assert_eq!(request.limit, 1);
    let filter = request.filter.unwrap();
    assert_eq!(filter.successful, Some(true));
    assert_eq!(filter.ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(filter.email.as_deref(), Some("alice@example.com"));
    assert_eq!(filter.since.unwrap().seconds, 1_704_067_200);
    assert_eq!(
        body["next"],
        format!(
            "{LOGS}?limit=1&successful=true&ip=198.51.100.7&email=alice%40example.com\
             &since=2024-01-01T00%3A00%3A00Z&cursor=opaque%2Fcursor%2B1"
        )
    );
}

#[tokio::test]
async fn following_next_passes_the_cursor_back() {
    let app = spawn_app().await;
    app.audit.list.reply_with(|r| {
        Ok(ListAttemptsResponse {
            attempts: vec![],
            next_cursor: if r.cursor.is_empty() {
                "c+1".into()
            } else {
                String::new()
            },
        })
    });
    let token = app.key.access_token(true);

    let first = parts(app.get_authorized(LOGS, &token).await).await.2;
    let next = first["next"].as_str().unwrap();
    // A relative reference, resolved against the page's URL.
    let second = app
        .http
        .get(app.url(next))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(second.status(), 200);
    assert_eq!(app.audit.list.calls()[1].0.cursor, "c+1");
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_each() {
    let app = spawn_app().await;

    let response = app
        .get_authorized(
            &format!("{LOGS}?limit=501&successful=perhaps&ip=999.1.1.1&until=tomorrow"),
            &app.key.access_token(true),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["ip", "limit", "successful", "until"]
    );
    assert_eq!(
        body["limit"],
        json!(["Ensure this value is between 1 and 500."])
    );
    assert!(app.audit.list.calls().is_empty());
}

#[tokio::test]
async fn authentication_is_checked_before_the_query() {
    let app = spawn_app().await;

    let response = app.get(&format!("{LOGS}?limit=0")).await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"detail": "Authentication credentials were not provided.", "code": "not_authenticated"})
    );
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"api\"");
}

#[tokio::test]
async fn a_non_admin_is_403() {
    let app = spawn_app().await;

    let response = app.get_authorized(LOGS, &app.key.access_token(false)).await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"detail": "You do not have permission to perform this action.", "code": "permission_denied"})
    );
    assert!(app.audit.list.calls().is_empty());
}

#[tokio::test]
async fn signing_keys_are_fetched_once_for_many_requests() {
    let app = spawn_app().await;
    let token = app.key.access_token(true);

    for _ in 0..5 {
        assert_eq!(app.get_authorized(LOGS, &token).await.status(), 200);
    }

    assert_eq!(app.auth.jwks.calls().len(), 1);
}

#[tokio::test]
async fn forged_key_ids_do_not_hammer_auth_service() {
    let app = spawn_app().await;
    let token = app.key.access_token(true);
    assert_eq!(app.get_authorized(LOGS, &token).await.status(), 200);

    for i in 0..10 {
        let forged = crate::helpers::TestKey::generate(&format!("forged-{i}"));
        let response = app.get_authorized(LOGS, &forged.access_token(true)).await;
        assert_eq!(response.status(), 401);
    }

    // The first unknown kid may refetch; the rest fall within the interval.
    assert!(app.auth.jwks.calls().len() <= 2);
}

#[tokio::test]
async fn audit_service_down_is_503() {
    let dead = crate::helpers::dead_url().await;
    let app = spawn_app_with(|c| c.audit_grpc_url = dead).await;

    let response = app.get_authorized(LOGS, &app.key.access_token(true)).await;

    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn without_auth_service_tokens_cannot_be_checked_503() {
    let dead = crate::helpers::dead_url().await;
    let app = spawn_app_with(|c| c.auth_grpc_url = dead).await;

    let response = app.get_authorized(LOGS, &app.key.access_token(true)).await;

    let (status, headers, _) = parts(response).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
}

/// A gateway listing in the old service's shape.
async fn django_listing() -> crate::helpers::TestApp {
    spawn_app_with(|c| c.shapes.listing = gateway::compat::ListingFormat::Django).await
}

#[tokio::test]
async fn the_django_listing_asks_oldest_first_and_joins_every_page_into_one_array() {
    let app = django_listing().await;
    app.audit.list.reply_with(|request| {
        Ok(match request.cursor.as_str() {
            "" => ListAttemptsResponse {
                attempts: vec![record(1, false), record(2, true)],
                next_cursor: "after-2".into(),
            },
            _ => ListAttemptsResponse {
                attempts: vec![record(3, false)],
                next_cursor: String::new(),
            },
        })
    });

    let response = app
        .get_authorized(
            &format!("{LOGS}?limit=2&cursor=x"),
            &app.key.access_token(true),
        )
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let ids: Vec<i64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let calls = app.audit.list.calls();
    assert_eq!(calls.len(), 2);
    let (first, second) = (&calls[0].0, &calls[1].0);
    assert!(first.oldest_first && second.oldest_first);
    assert_eq!(
        (first.limit, first.cursor.as_str()),
        (500, ""),
        "limit and cursor ignored"
    );
    assert_eq!(second.cursor, "after-2");
}

#[tokio::test]
async fn a_django_listing_cut_short_never_parses_as_a_whole_log() {
    let app = django_listing().await;
    app.audit
        .list
        .reply_with(|request| match request.cursor.as_str() {
            "" => Ok(ListAttemptsResponse {
                attempts: vec![record(1, false)],
                next_cursor: "more".into(),
            }),
            _ => Err(tonic::Status::unavailable("log database gone")),
        });

    let response = app.get_authorized(LOGS, &app.key.access_token(true)).await;

    // The status went out with the first page; the failure can only cut
    // the body, which must then not be a complete array.
    assert_eq!(response.status(), 200);
    match response.text().await {
        Err(_) => {}
        Ok(text) => assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_err(),
            "a truncated log parsed as whole: {text}"
        ),
    }
}

#[tokio::test]
async fn the_django_listing_refuses_a_bad_filter_before_streaming() {
    let app = django_listing().await;

    let response = app
        .get_authorized(
            &format!("{LOGS}?successful=perhaps"),
            &app.key.access_token(true),
        )
        .await;

    let (status, _, body) = parts(response).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"successful": ["Must be a valid boolean."]}));
    assert!(app.audit.list.calls().is_empty());
}
