//! Start-up and shutdown.

use std::time::{Duration, Instant};

use audit_service::{Application, Config};
use proto::audit::v1::ListAttemptsRequest;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::helpers::{TestApp, TestDb, batch, event_ids, failure};

async fn shutdown_ends_open_ingest_streams_promptly(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut client = app.client().await;
    let (to_server, outbound) = mpsc::channel(4);
    let mut acks = client
        .ingest(ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();
    to_server
        .send(batch(1, vec![failure("10.0.0.1", "a@x.io", 0)]))
        .await
        .unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().batch_seq, 1);

    // The producer keeps its stream open, as a real forwarder does.
    let started = Instant::now();
    app.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), acks.message())
        .await
        .expect("the ingest stream was left open");

    // Well inside the drain timeout: the stream was ended, not waited out.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    match ended {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(None) => {}
        Ok(Some(ack)) => panic!("unexpected ack {ack:?}"),
    }
    drop(to_server);
}

async fn the_log_survives_a_restart(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = failure("10.0.0.1", "a@x.io", 0);
    app.ingest_ok(vec![a.clone()]).await;
    let db = app.stop().await;

    // Migrations run again (a no-op) on the same database.
    let app = TestApp::spawn(db).await;
    let listed = app.list_all(ListAttemptsRequest::default()).await;

    assert_eq!(event_ids(&listed), vec![a.event_id]);
}

on_every_backend!(
    shutdown_ends_open_ingest_streams_promptly,
    the_log_survives_a_restart,
);

#[tokio::test]
async fn an_unsupported_database_scheme_is_refused_naming_the_variable() {
    let err = Application::build(Config::for_tests("mongodb://root@127.0.0.1/test"))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("AUDIT_DATABASE_URL"), "{err:#}");
}

#[tokio::test]
async fn a_zero_threshold_is_refused() {
    let db = TestDb::sqlite().await;
    let mut config = Config::for_tests(db.url.clone());
    config.suspicious_threshold = 0;

    let err = Application::build(config).await.unwrap_err();

    assert!(
        err.to_string().contains("AUDIT_SUSPICIOUS_THRESHOLD"),
        "{err:#}"
    );
}
