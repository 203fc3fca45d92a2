//! Retention: old attempts go, in bounded batches; recent ones stay.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;
use proto::audit::v1::{Attempt, ListAttemptsRequest};

use crate::helpers::{TestApp, TestDb, batch, event_ids, failure};

/// An attempt `days_ago` days before now.
fn days_ago(days: i64, ip: &str) -> Attempt {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Attempt {
        occurred_at: Some(Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap() - days * 86_400,
            nanos: 0,
        }),
        ..failure(ip, "a@x.io", 0)
    }
}

async fn attempts_older_than_the_retention_are_deleted_and_recent_ones_kept(db: TestDb) {
    let app = TestApp::spawn_with(db, |c| {
        c.retention_days = 30;
        c.retention_interval = Duration::from_millis(100);
    })
    .await;
    // More than two delete batches (1000 rows each) of old rows.
    let old: Vec<Attempt> = (0..2100).map(|_| days_ago(31, "10.0.0.1")).collect();
    let recent = vec![days_ago(29, "10.0.0.2"), days_ago(0, "10.0.0.3")];
    let outcome = app
        .ingest(vec![
            batch(1, old[..1050].to_vec()),
            batch(2, old[1050..].to_vec()),
            batch(3, recent.clone()),
        ])
        .await;
    assert!(outcome.error.is_none(), "{outcome:?}");

    let all = || {
        app.list_all(ListAttemptsRequest {
            limit: 500,
            ..Default::default()
        })
    };
    let mut left = all().await;
    for _ in 0..100 {
        if left.len() <= recent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = all().await;
    }

    assert_eq!(
        event_ids(&left),
        vec![recent[1].event_id.clone(), recent[0].event_id.clone()]
    );
}

async fn a_retention_of_zero_keeps_everything(db: TestDb) {
    let app = TestApp::spawn_with(db, |c| {
        c.retention_days = 0;
        c.retention_interval = Duration::from_millis(50);
    })
    .await;
    // About as old as ingest accepts, and far older than any retention.
    let ancient = days_ago(365, "10.0.0.1");
    app.ingest_ok(vec![ancient.clone()]).await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = app.list_all(ListAttemptsRequest::default()).await;

    assert_eq!(event_ids(&left), vec![ancient.event_id]);
}

on_every_backend!(
    attempts_older_than_the_retention_are_deleted_and_recent_ones_kept,
    a_retention_of_zero_keeps_everything,
);
