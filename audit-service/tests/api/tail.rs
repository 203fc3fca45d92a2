//! Tail: committed attempts streamed live, filtered; resources released.

use std::time::Duration;

use proto::audit::v1::audit_service_client::AuditServiceClient;
use proto::audit::v1::{Attempt, TailEvent, TailRequest};
use tonic::{Code, Streaming, transport::Endpoint};

use crate::helpers::{TestApp, TestDb, batch, failure, success};

/// Waits (at most 5 s) until the app has `n` open tails.
async fn wait_for_subscribers(app: &TestApp, n: usize) {
    for _ in 0..500 {
        if app.hub.subscribers() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "expected {n} tail subscribers, have {}",
        app.hub.subscribers()
    );
}

/// The next tail event, failing the test after 5 s.
async fn next(stream: &mut Streaming<TailEvent>) -> TailEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("no tail event within 5 s")
        .unwrap()
        .expect("the tail ended")
}

fn event_id(event: &TailEvent) -> &str {
    &event
        .attempt
        .as_ref()
        .unwrap()
        .attempt
        .as_ref()
        .unwrap()
        .event_id
}

async fn a_tail_streams_matching_attempts_as_they_are_committed(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut client = app.client().await;
    let mut tail = client
        .tail(TailRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                successful: Some(false),
                ip: Some("10.0.0.0/8".to_owned()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    wait_for_subscribers(&app, 1).await;
    let first = failure("10.0.0.2", "a@x.io", 1);
    let second = failure("10.0.0.3", "a@x.io", 2);

    app.ingest_ok(vec![
        success("10.0.0.1", "a@x.io", 0),
        failure("11.0.0.1", "a@x.io", 0),
        first.clone(),
    ])
    .await;
    // A resent duplicate is not new, so it is not tailed again.
    let outcome = app
        .ingest(vec![batch(2, vec![first.clone(), second.clone()])])
        .await;
    assert_eq!(outcome.acks, vec![(2, 1)]);

    let got_first = next(&mut tail).await;
    let got_second = next(&mut tail).await;
    assert_eq!(event_id(&got_first), first.event_id);
    assert_eq!(event_id(&got_second), second.event_id);
    assert_eq!(got_first.skipped, 0);
    assert!(got_first.attempt.unwrap().id > 0);
}

async fn a_tail_client_that_disconnects_releases_its_subscription(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut client = app.client().await;
    let tail = client
        .tail(TailRequest::default())
        .await
        .unwrap()
        .into_inner();
    wait_for_subscribers(&app, 1).await;

    drop(tail);
    drop(client);

    // Released without any attempt arriving to notice the broken stream.
    wait_for_subscribers(&app, 0).await;
}

async fn a_bad_tail_filter_is_refused_naming_the_field(db: TestDb) {
    let app = TestApp::spawn(db).await;

    let status = app
        .client()
        .await
        .tail(TailRequest {
            filter: Some(proto::audit::v1::AttemptFilter {
                reason: Some(99),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("reason"), "{status:?}");
    assert_eq!(app.hub.subscribers(), 0);
}

on_every_backend!(
    a_tail_streams_matching_attempts_as_they_are_committed,
    a_tail_client_that_disconnects_releases_its_subscription,
    a_bad_tail_filter_is_refused_naming_the_field,
);

/// Backend-independent: the fan-out's bound is in memory, not the database.
#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_a_skip_notice_not_unbounded_memory() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    // HTTP/2's smallest windows, so the client side absorbs little of the
    // backlog and the server side really falls behind.
    let channel = Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut client = AuditServiceClient::new(channel);
    let mut tail = client
        .tail(TailRequest::default())
        .await
        .unwrap()
        .into_inner();
    wait_for_subscribers(&app, 1).await;

    // Far more than the hub holds (4096) plus what the connection buffers
    // (the server's HTTP/2 send buffer alone takes a few thousand), while
    // the subscriber reads nothing.
    let batches: Vec<_> = (0..40)
        .map(|i| {
            let attempts: Vec<Attempt> = (0..1000).map(|s| failure("", "", s)).collect();
            batch(i, attempts)
        })
        .collect();
    let outcome = app.ingest(batches).await;
    assert!(outcome.error.is_none(), "{outcome:?}");

    let mut received = 0u64;
    let mut skipped = 0u64;
    while received + skipped < 40_000 {
        let event = next(&mut tail).await;
        if event.attempt.is_some() {
            received += 1;
        }
        skipped += event.skipped;
    }
    assert!(skipped > 0, "received all {received} without a skip notice");
    assert_eq!(received + skipped, 40_000);
}
