//! Admin events: ingested on the attempts' stream (idempotently), stored
//! apart from attempts, listed newest first with filters and keyset
//! pages, bad input refused with the field named.

use std::collections::HashSet;

use proto::audit::v1::{
    AdminAction, AdminEvent, AdminEventFilter, AdminEventRecord, Attempt, AttemptFilter, IngestAck,
    IngestBatch, ListAdminEventsRequest, ListAdminEventsResponse, ListAttemptsRequest,
};
use tonic::{Code, Status};

use crate::helpers::{TestApp, TestDb, at, failure};

/// An administrator's `action` on account `target_id` at `T0 + secs`,
/// from 10.0.0.1.
fn event(action: AdminAction, target_id: i64, secs: i64) -> AdminEvent {
    AdminEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(at(secs)),
        action: action as i32,
        actor_id: Some(1),
        actor_name: "Root".to_owned(),
        operator: false,
        target_id,
        target_username: format!("user{target_id}"),
        target_email: format!("user{target_id}@example.com"),
        ip: "10.0.0.1".to_owned(),
        user_agent: Some("console/1".to_owned()),
        request_id: uuid::Uuid::new_v4().to_string(),
        sessions_revoked: None,
        counters_cleared: None,
        code_expires_at: None,
    }
}

/// An operator's `action` (at the command line) on `target_id`.
fn operator_event(action: AdminAction, target_id: i64, secs: i64) -> AdminEvent {
    AdminEvent {
        actor_id: None,
        actor_name: "ops".to_owned(),
        operator: true,
        ip: String::new(),
        ..event(action, target_id, secs)
    }
}

/// Sends `batches` on one stream; the acks as `(batch_seq, inserted,
/// admin_events_stored)`, and how the stream ended.
async fn ingest(
    app: &TestApp,
    batches: Vec<IngestBatch>,
) -> (Vec<(u64, u32, u32)>, Option<Status>) {
    let mut client = app.client().await;
    let mut stream = client
        .ingest(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut acks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(IngestAck {
                batch_seq,
                inserted,
                admin_events_stored,
            })) => acks.push((batch_seq, inserted, admin_events_stored)),
            Ok(None) => return (acks, None),
            Err(status) => return (acks, Some(status)),
        }
    }
}

fn batch(batch_seq: u64, attempts: Vec<Attempt>, admin_events: Vec<AdminEvent>) -> IngestBatch {
    IngestBatch {
        batch_seq,
        attempts,
        admin_events,
    }
}

/// Ingests `events` as one batch, asserting they are acked as new.
async fn ingest_events(app: &TestApp, events: Vec<AdminEvent>) {
    let n = u32::try_from(events.len()).unwrap();
    let (acks, error) = ingest(app, vec![batch(1, Vec::new(), events)]).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(acks, vec![(1, n, n)]);
}

async fn list(
    app: &TestApp,
    request: ListAdminEventsRequest,
) -> Result<ListAdminEventsResponse, Status> {
    app.client()
        .await
        .list_admin_events(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Every event `filter` matches, following cursors, in `oldest_first`
/// order, `limit` a page.
async fn list_all(
    app: &TestApp,
    filter: AdminEventFilter,
    limit: u32,
    oldest_first: bool,
) -> Vec<AdminEventRecord> {
    let mut request = ListAdminEventsRequest {
        limit,
        filter: Some(filter),
        oldest_first,
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = list(app, request.clone()).await.unwrap();
        assert!(page.events.len() <= limit as usize);
        all.extend(page.events);
        if page.next_cursor.is_empty() {
            return all;
        }
        request.cursor = page.next_cursor;
    }
}

fn ids(records: &[AdminEventRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.event.as_ref().unwrap().event_id.clone())
        .collect()
}

async fn admin_events_ride_the_attempts_stream_and_are_listed_with_every_field(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut deactivate = event(AdminAction::Deactivate, 7, 20);
    deactivate.sessions_revoked = Some(3);
    let mut resend = operator_event(AdminAction::ResendVerification, 8, 30);
    resend.code_expires_at = Some(at(630));
    let mut unlock = event(AdminAction::Unlock, 9, 10);
    unlock.counters_cleared = Some(u64::MAX);
    unlock.user_agent = None;

    let (acks, error) = ingest(
        &app,
        vec![batch(
            1,
            vec![failure("10.0.0.1", "a@x.io", 5)],
            vec![deactivate.clone(), resend.clone(), unlock.clone()],
        )],
    )
    .await;

    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        acks,
        vec![(1, 4, 3)],
        "one attempt and three events, all new"
    );
    let page = list(&app, ListAdminEventsRequest::default()).await.unwrap();
    assert!(page.next_cursor.is_empty());
    let listed: Vec<AdminEvent> = page.events.into_iter().map(|r| r.event.unwrap()).collect();
    // A count beyond what the log stores is kept at its largest.
    unlock.counters_cleared = Some(i64::MAX as u64);
    assert_eq!(
        listed,
        vec![resend, deactivate, unlock],
        "newest first, every field"
    );
}

async fn a_resent_event_is_stored_once(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let first = event(AdminAction::GrantAdmin, 7, 10);
    let second = event(AdminAction::RevokeAdmin, 7, 20);
    ingest_events(&app, vec![first.clone()]).await;
    // The same id spelled in capitals is the same event.
    let mut shouted = first.clone();
    shouted.event_id = first.event_id.to_uppercase();

    let (acks, error) = ingest(
        &app,
        vec![
            batch(1, Vec::new(), vec![shouted, second.clone()]),
            batch(2, Vec::new(), vec![second.clone(), first.clone()]),
        ],
    )
    .await;

    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        acks,
        vec![(1, 1, 2), (2, 0, 2)],
        "only the second event is new, and counted once; every event is stored"
    );
    let all = list_all(&app, AdminEventFilter::default(), 50, false).await;
    assert_eq!(ids(&all), vec![second.event_id, first.event_id]);
}

async fn admin_events_and_attempts_never_mix(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let attempt = failure("10.0.0.1", "user7@example.com", 10);
    let admin = event(AdminAction::Delete, 7, 10);
    let (_, error) = ingest(
        &app,
        vec![batch(1, vec![attempt.clone()], vec![admin.clone()])],
    )
    .await;
    assert!(error.is_none(), "{error:?}");

    let attempts = app.list_all(ListAttemptsRequest::default()).await;
    let by_ip = app
        .list_all(ListAttemptsRequest {
            filter: Some(AttemptFilter {
                ip: Some("10.0.0.1".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let events = list_all(&app, AdminEventFilter::default(), 50, false).await;

    assert_eq!(
        crate::helpers::event_ids(&attempts),
        vec![attempt.event_id.clone()]
    );
    assert_eq!(crate::helpers::event_ids(&by_ip), vec![attempt.event_id]);
    assert_eq!(ids(&events), vec![admin.event_id]);
}

async fn every_filter_narrows_the_listing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut other_actor = event(AdminAction::Deactivate, 8, 40);
    other_actor.actor_id = Some(2);
    other_actor.actor_name = "Ada".into();
    other_actor.ip = "2001:db8::1".into();
    let events = vec![
        event(AdminAction::Deactivate, 7, 10),
        event(AdminAction::Activate, 7, 20),
        operator_event(AdminAction::Delete, 9, 30),
        other_actor.clone(),
    ];
    ingest_events(&app, events.clone()).await;
    let id = |i: usize| events[i].event_id.clone();
    let cases: Vec<(AdminEventFilter, Vec<String>)> = vec![
        (
            AdminEventFilter {
                action: Some(AdminAction::Deactivate as i32),
                ..Default::default()
            },
            vec![id(3), id(0)],
        ),
        (
            AdminEventFilter {
                actor_id: Some(1),
                ..Default::default()
            },
            vec![id(1), id(0)],
        ),
        (
            AdminEventFilter {
                actor_name: Some("ADA".into()),
                ..Default::default()
            },
            vec![id(3)],
        ),
        (
            AdminEventFilter {
                operator: Some(true),
                ..Default::default()
            },
            vec![id(2)],
        ),
        (
            AdminEventFilter {
                operator: Some(false),
                ..Default::default()
            },
            vec![id(3), id(1), id(0)],
        ),
        (
            AdminEventFilter {
                target_id: Some(7),
                ..Default::default()
            },
            vec![id(1), id(0)],
        ),
        (
            AdminEventFilter {
                target_username: Some("User9".into()),
                ..Default::default()
            },
            vec![id(2)],
        ),
        (
            AdminEventFilter {
                ip: Some("::ffff:10.0.0.0/104".into()),
                ..Default::default()
            },
            vec![id(1), id(0)],
        ),
        (
            AdminEventFilter {
                ip: Some("2001:db8::/32".into()),
                ..Default::default()
            },
            vec![id(3)],
        ),
        (
            AdminEventFilter {
                since: Some(at(20)),
                until: Some(at(40)),
                ..Default::default()
            },
            vec![id(2), id(1)],
        ),
        (
            AdminEventFilter {
                action: Some(AdminAction::Deactivate as i32),
                target_id: Some(8),
                actor_name: Some("ada".into()),
                ..Default::default()
            },
            vec![id(3)],
        ),
        (
            AdminEventFilter {
                target_username: Some("nobody".into()),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let listed = list_all(&app, filter.clone(), 50, false).await;
        assert_eq!(ids(&listed), expected, "{filter:?}");
    }
}

async fn pages_visit_every_event_once_in_either_order(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // Ties at one time, sent out of time order: the order is time, then id.
    let events: Vec<AdminEvent> = [3, 1, 5, 1, 2, 2, 5, 4, 1, 3, 2]
        .into_iter()
        .enumerate()
        .map(|(i, secs)| event(AdminAction::Logout, i64::try_from(i).unwrap() + 1, secs))
        .collect();
    ingest_events(&app, events.clone()).await;
    let sent: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let key = |r: &AdminEventRecord| (r.event.as_ref().unwrap().occurred_at.unwrap().seconds, r.id);

    let newest = list_all(&app, AdminEventFilter::default(), 4, false).await;
    let oldest = list_all(&app, AdminEventFilter::default(), 3, true).await;

    let keys: Vec<_> = newest.iter().map(key).collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest first: {keys:?}"
    );
    let keys: Vec<_> = oldest.iter().map(key).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {keys:?}"
    );
    for listed in [&newest, &oldest] {
        assert_eq!(listed.len(), 11);
        assert_eq!(ids(listed).into_iter().collect::<HashSet<_>>(), sent);
    }
}

async fn bad_listing_requests_are_refused_naming_the_field(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let filter = |f: AdminEventFilter| ListAdminEventsRequest {
        filter: Some(f),
        ..Default::default()
    };
    let cases = vec![
        (
            ListAdminEventsRequest {
                limit: 501,
                ..Default::default()
            },
            "limit",
        ),
        (
            ListAdminEventsRequest {
                cursor: "not-a-cursor".into(),
                ..Default::default()
            },
            "cursor",
        ),
        (
            filter(AdminEventFilter {
                action: Some(0),
                ..Default::default()
            }),
            "action",
        ),
        (
            filter(AdminEventFilter {
                action: Some(99),
                ..Default::default()
            }),
            "action",
        ),
        (
            filter(AdminEventFilter {
                ip: Some("10.0.0.0/33".into()),
                ..Default::default()
            }),
            "ip",
        ),
        (
            filter(AdminEventFilter {
                actor_name: Some("ro\0ot".into()),
                ..Default::default()
            }),
            "actor_name",
        ),
        (
            filter(AdminEventFilter {
                target_username: Some("x".repeat(10_000)),
                ..Default::default()
            }),
            "target_username",
        ),
        (
            filter(AdminEventFilter {
                since: Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            "since",
        ),
    ];
    for (request, field) in cases {
        let status = list(&app, request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
}

async fn a_bad_event_refuses_its_whole_batch_naming_it(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let good = event(AdminAction::Unlock, 7, 10);
    let attempt = failure("10.0.0.1", "a@x.io", 10);
    let mut bad = event(AdminAction::Unlock, 8, 10);
    bad.actor_id = None;

    let (acks, error) = ingest(&app, vec![batch(1, vec![attempt], vec![good, bad.clone()])]).await;

    assert!(acks.is_empty());
    let status = error.unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("admin_events[1].actor_id is required"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains(&bad.event_id),
        "{}",
        status.message()
    );
    assert!(
        list_all(&app, AdminEventFilter::default(), 50, false)
            .await
            .is_empty()
    );
    assert!(
        app.list_all(ListAttemptsRequest::default())
            .await
            .is_empty()
    );
}

async fn hostile_text_is_stored_cleaned_and_lookalikes_match_only_themselves(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut real = event(AdminAction::GrantAdmin, 7, 10);
    real.target_username = "alice".into();
    // Cyrillic "а": looks the same, is another name.
    let mut lookalike = event(AdminAction::GrantAdmin, 8, 20);
    lookalike.target_username = "\u{430}lice".into();
    let mut hostile = event(AdminAction::GrantAdmin, 9, 30);
    hostile.target_username = format!("bob\0{}", "🔐".repeat(400));
    hostile.user_agent = Some("a\0b".into());
    hostile.request_id = "r".repeat(10_000);
    ingest_events(&app, vec![real.clone(), lookalike.clone(), hostile.clone()]).await;

    let alice = list_all(
        &app,
        AdminEventFilter {
            target_username: Some("ALICE".into()),
            ..Default::default()
        },
        50,
        false,
    )
    .await;
    let stored = list_all(
        &app,
        AdminEventFilter {
            target_id: Some(9),
            ..Default::default()
        },
        50,
        false,
    )
    .await;

    assert_eq!(ids(&alice), vec![real.event_id]);
    let stored = stored[0].event.clone().unwrap();
    assert!(stored.target_username.starts_with("bob🔐"));
    assert_eq!(stored.target_username.chars().count(), 150);
    assert_eq!(stored.user_agent.as_deref(), Some("ab"));
    assert_eq!(stored.request_id.len(), 128);
}

on_every_backend!(
    admin_events_ride_the_attempts_stream_and_are_listed_with_every_field,
    a_resent_event_is_stored_once,
    admin_events_and_attempts_never_mix,
    every_filter_narrows_the_listing,
    pages_visit_every_event_once_in_either_order,
    bad_listing_requests_are_refused_naming_the_field,
    a_bad_event_refuses_its_whole_batch_naming_it,
    hostile_text_is_stored_cleaned_and_lookalikes_match_only_themselves,
);
