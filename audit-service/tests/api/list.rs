//! ListAttempts: order, keyset paging, limits, filters.

use std::collections::HashSet;

use proto::audit::v1::{Attempt, AttemptRecord, ListAttemptsRequest};
use tonic::Code;

use crate::helpers::{TestApp, TestDb, at, event_ids, failure, success};

/// `(occurred_at seconds, id)` of each record: the listing's sort key.
fn keys(records: &[AttemptRecord]) -> Vec<(i64, i64)> {
    records
        .iter()
        .map(|r| {
            (
                r.attempt.as_ref().unwrap().occurred_at.unwrap().seconds,
                r.id,
            )
        })
        .collect()
}

async fn attempts_are_listed_newest_first(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let middle = failure("10.0.0.1", "a@x.io", 20);
    let oldest = failure("10.0.0.1", "a@x.io", 10);
    let newest = failure("10.0.0.1", "a@x.io", 30);
    // Inserted out of time order: the listing follows time, not insertion.
    app.ingest_ok(vec![middle.clone(), oldest.clone(), newest.clone()])
        .await;

    let page = app.list(ListAttemptsRequest::default()).await.unwrap();

    assert_eq!(
        event_ids(&page.attempts),
        vec![newest.event_id, middle.event_id, oldest.event_id]
    );
    assert!(page.next_cursor.is_empty());
}

async fn paging_visits_every_row_exactly_once(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // Eleven rows, several sharing a time, so ties must be broken by id.
    let attempts: Vec<Attempt> = [5, 5, 5, 4, 4, 3, 2, 2, 2, 2, 1]
        .into_iter()
        .map(|secs| failure("10.0.0.1", "a@x.io", secs))
        .collect();
    app.ingest_ok(attempts.clone()).await;

    let mut pages = Vec::new();
    let mut request = ListAttemptsRequest {
        limit: 4,
        ..Default::default()
    };
    loop {
        let page = app.list(request.clone()).await.unwrap();
        pages.push(page.attempts);
        if page.next_cursor.is_empty() {
            break;
        }
        request.cursor = page.next_cursor;
    }

    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![4, 4, 3]
    );
    let all: Vec<AttemptRecord> = pages.into_iter().flatten().collect();
    let keys = keys(&all);
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {keys:?}"
    );
    let listed: HashSet<String> = event_ids(&all).into_iter().collect();
    let sent: HashSet<String> = attempts.into_iter().map(|a| a.event_id).collect();
    assert_eq!(listed.len(), 11);
    assert_eq!(listed, sent);
}

async fn paging_oldest_first_visits_every_row_once_in_time_order(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // Ties at one time, inserted out of time order, and a filter over an
    // IP range on the way: the order is the log's (time, then id).
    let attempts: Vec<Attempt> = [3, 1, 5, 1, 2, 2, 5, 4, 1, 3, 2]
        .into_iter()
        .map(|secs| failure("10.0.0.1", "a@x.io", secs))
        .chain([failure("192.0.2.1", "b@x.io", 1)])
        .collect();
    app.ingest_ok(attempts.clone()).await;

    let mut all = Vec::new();
    let mut request = ListAttemptsRequest {
        limit: 3,
        oldest_first: true,
        filter: Some(proto::audit::v1::AttemptFilter {
            ip: Some("10.0.0.0/8".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = app.list(request.clone()).await.unwrap();
        pages += 1;
        all.extend(page.attempts);
        if page.next_cursor.is_empty() {
            break;
        }
        request.cursor = page.next_cursor;
    }

    assert_eq!(pages, 4);
    let keys = keys(&all);
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "not oldest first: {keys:?}"
    );
    let listed: HashSet<String> = event_ids(&all).into_iter().collect();
    let sent: HashSet<String> = attempts[..11].iter().map(|a| a.event_id.clone()).collect();
    assert_eq!(listed, sent);
    // Newest first is the same rows the other way round.
    let newest = app
        .list_all(ListAttemptsRequest {
            filter: request.filter.clone(),
            ..Default::default()
        })
        .await;
    let mut reversed = event_ids(&all);
    reversed.reverse();
    assert_eq!(event_ids(&newest), reversed);
}

async fn a_full_last_page_has_no_next_cursor(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.ingest_ok((1..=4).map(|s| failure("10.0.0.1", "a@x.io", s)).collect())
        .await;

    let page = app
        .list(ListAttemptsRequest {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();

    assert_eq!(page.attempts.len(), 4);
    assert!(page.next_cursor.is_empty());
}

async fn limit_zero_means_fifty(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.ingest_ok((0..51).map(|s| failure("", "", s)).collect())
        .await;

    let page = app.list(ListAttemptsRequest::default()).await.unwrap();

    assert_eq!(page.attempts.len(), 50);
    assert!(!page.next_cursor.is_empty());
}

async fn limits_above_500_are_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;

    let at_max = app
        .list(ListAttemptsRequest {
            limit: 500,
            ..Default::default()
        })
        .await;
    let above = app
        .list(ListAttemptsRequest {
            limit: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert!(at_max.is_ok(), "{at_max:?}");
    assert_eq!(above.code(), Code::InvalidArgument);
    assert_eq!(above.message(), "limit must be between 1 and 500");
}

async fn a_bad_cursor_is_refused_naming_the_cursor(db: TestDb) {
    let app = TestApp::spawn(db).await;

    for cursor in ["garbage!", "bm90LWEtY3Vyc29y"] {
        let status = app
            .list(ListAttemptsRequest {
                cursor: cursor.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap_err();

        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("cursor"), "{status:?}");
    }
}

async fn filtering_by_outcome_returns_only_that_outcome(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let ok = success("10.0.0.1", "a@x.io", 1);
    let failed = failure("10.0.0.1", "a@x.io", 2);
    app.ingest_ok(vec![ok.clone(), failed.clone()]).await;

    let successes = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                successful: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let failures = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                successful: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;

    assert_eq!(event_ids(&successes), vec![ok.event_id]);
    assert_eq!(event_ids(&failures), vec![failed.event_id]);
}

async fn filtering_by_ip_matches_exactly(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let wanted = failure("10.0.0.1", "a@x.io", 1);
    app.ingest_ok(vec![
        wanted.clone(),
        failure("10.0.0.10", "a@x.io", 2),
        failure("110.0.0.1", "a@x.io", 3),
    ])
    .await;

    let listed = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                ip: Some("10.0.0.1".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;

    assert_eq!(event_ids(&listed), vec![wanted.event_id]);
}

async fn filtering_by_email_ignores_case(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let lower = failure("10.0.0.1", "alice@example.com", 1);
    let mixed = failure("10.0.0.2", "Alice@Example.COM", 2);
    app.ingest_ok(vec![
        lower.clone(),
        mixed.clone(),
        failure("10.0.0.1", "alice@example.co", 3),
    ])
    .await;

    let listed = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                email: Some("ALICE@example.com".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;

    assert_eq!(event_ids(&listed), vec![mixed.event_id, lower.event_id]);
}

async fn since_is_inclusive_and_until_exclusive(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let attempts: Vec<Attempt> = (1..=5).map(|s| failure("10.0.0.1", "a@x.io", s)).collect();
    app.ingest_ok(attempts.clone()).await;

    let listed = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                since: Some(at(2)),
                until: Some(at(4)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;

    assert_eq!(
        event_ids(&listed),
        vec![attempts[2].event_id.clone(), attempts[1].event_id.clone()]
    );
}

async fn paging_with_a_filter_stays_within_the_filter(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut attempts = Vec::new();
    for s in 0..10 {
        attempts.push(failure("10.0.0.1", "a@x.io", s));
        attempts.push(success("10.0.0.2", "b@x.io", s));
    }
    app.ingest_ok(attempts.clone()).await;

    let listed = app
        .list_all(ListAttemptsRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                ip: Some("10.0.0.2".to_owned()),
                successful: Some(true),
                ..Default::default()
            }),
            limit: 3,
            ..Default::default()
        })
        .await;

    let expected: HashSet<String> = attempts
        .into_iter()
        .filter(|a| a.ip == "10.0.0.2")
        .map(|a| a.event_id)
        .collect();
    assert_eq!(listed.len(), 10);
    assert_eq!(
        event_ids(&listed).into_iter().collect::<HashSet<_>>(),
        expected
    );
}

on_every_backend!(
    attempts_are_listed_newest_first,
    paging_visits_every_row_exactly_once,
    paging_oldest_first_visits_every_row_once_in_time_order,
    a_full_last_page_has_no_next_cursor,
    limit_zero_means_fifty,
    limits_above_500_are_refused,
    a_bad_cursor_is_refused_naming_the_cursor,
    filtering_by_outcome_returns_only_that_outcome,
    filtering_by_ip_matches_exactly,
    filtering_by_email_ignores_case,
    since_is_inclusive_and_until_exclusive,
    paging_with_a_filter_stays_within_the_filter,
);
