//! `GET /api/admin/events/` against a fake audit-service: who may call
//! it, the filters passed on, the page shape and its `next` link, and how
//! audit-service's refusals and outages reach the client.

use proto::audit::v1::{AdminAction, AdminEvent, AdminEventRecord, ListAdminEventsResponse};
use serde_json::json;
use tonic::Status;

use crate::helpers::{parts, spawn_app};

const EVENTS: &str = "/api/admin/events/";

fn record(id: i64) -> AdminEventRecord {
    AdminEventRecord {
        id,
        event: Some(AdminEvent {
            event_id: format!("event-{id}"),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_704_067_200,
                nanos: 0,
            }),
            action: AdminAction::Deactivate as i32,
            actor_id: Some(1),
            actor_name: "root".into(),
            operator: false,
            target_id: 7,
            target_username: "alice".into(),
            target_email: "alice@example.com".into(),
            ip: "198.51.100.7".into(),
            user_agent: Some("curl/8".into()),
            request_id: format!("req-{id}"),
            sessions_revoked: Some(2),
            counters_cleared: None,
            code_expires_at: None,
        }),
    }
}

#[tokio::test]
async fn an_admin_gets_a_page_with_the_filters_passed_on_and_a_next_link() {
    let app = spawn_app().await;
    app.audit.events.reply_with(|_| {
        Ok(ListAdminEventsResponse {
            events: vec![record(2)],
            next_cursor: "c2".into(),
        })
    });

    let response = app
        .get_authorized(
            &format!("{EVENTS}?limit=1&action=deactivate&target=Alice&ip=198.51.100.0/24&junk=1"),
            &app.key.access_token(true),
        )
        .await;

    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        body,
        json!({
            "results": [{
                "id": 2, "event_id": "event-2", "created_at": "2024-01-01T00:00:00Z",
                "action": "deactivate", "actor_id": 1, "actor": "root", "operator": false,
                "target_id": 7, "target": "alice", "target_email": "alice@example.com",
                "ip": "198.51.100.7", "user_agent": "curl/8", "request_id": "req-2",
                "sessions_revoked": 2, "counters_cleared": null, "code_expires_at": null
            }],
            "next": "/api/admin/events/?limit=1&action=deactivate&target=Alice&ip=198.51.100.0%2F24&cursor=c2"
        })
    );
    let (request, _) = app.audit.events.only_call();
    let filter = request.filter.unwrap();
    assert_eq!(request.limit, 1);
    assert_eq!(filter.action, Some(AdminAction::Deactivate as i32));
    assert_eq!(filter.target_username.as_deref(), Some("Alice"));
    assert_eq!(filter.ip.as_deref(), Some("198.51.100.0/24"));
}

#[tokio::test]
async fn only_admins_may_list_and_bad_filters_never_reach_audit_service() {
    let app = spawn_app().await;

    let (status, _, body) = parts(app.get(EVENTS).await).await;
    assert_eq!((status, &body["code"]), (401, &json!("not_authenticated")));
    let user = app.key.access_token(false);
    let (status, _, body) = parts(app.get_authorized(EVENTS, &user).await).await;
    assert_eq!((status, &body["code"]), (403, &json!("permission_denied")));
    let admin = app.key.access_token(true);
    let (status, _, body) = parts(
        app.get_authorized(&format!("{EVENTS}?action=promote&operator=perhaps"), &admin)
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["action"].is_array() && body["operator"].is_array(),
        "{body}"
    );
    assert!(app.audit.events.calls().is_empty());
}

#[tokio::test]
async fn audit_services_refusals_and_outages_are_told_as_such() {
    let app = spawn_app().await;
    let admin = app.key.access_token(true);
    app.audit.events.reply_with(|_| {
        Err(Status::invalid_argument(
            "cursor is not a cursor returned by this service",
        ))
    });
    let (status, _, body) = parts(
        app.get_authorized(&format!("{EVENTS}?cursor=x"), &admin)
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"detail": "cursor is not a cursor returned by this service"})
    );

    app.audit
        .events
        .reply_with(|_| Err(Status::unavailable("the log is down")));
    let (status, headers, body) = parts(app.get_authorized(EVENTS, &admin).await).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
}
