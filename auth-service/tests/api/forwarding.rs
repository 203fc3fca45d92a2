//! The forwarder against a fake audit-service: admin events travel in the
//! same batches as attempts; an audit-service from before admin events
//! (its acks leave `admin_events_stored` at 0) leaves them in the outbox
//! while attempts go on, and they are taken once one that stores them
//! answers.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use auth_service::{forwarder::Forwarder, store::AuthStore};
use common::internal_auth::AttachToken;
use proto::audit::v1::{
    IngestAck, IngestBatch, ListAdminEventsRequest, ListAdminEventsResponse, ListAttemptsRequest,
    ListAttemptsResponse, TailEvent, TailRequest,
    audit_service_server::{AuditService, AuditServiceServer},
};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::helpers::{Outcome::*, Rules, T0, outcome};

on_every_backend!(admin_events_wait_for_an_audit_service_that_stores_them);

/// What the fake has seen and how it acks.
#[derive(Default)]
struct Seen {
    /// Ack admin events as stored (an audit-service that knows them).
    stores_admin_events: AtomicBool,
    /// Every batch received.
    batches: Mutex<Vec<IngestBatch>>,
}

struct FakeAudit(Arc<Seen>);

#[tonic::async_trait]
impl AuditService for FakeAudit {
    type IngestStream = ReceiverStream<Result<IngestAck, Status>>;
    type TailStream = ReceiverStream<Result<TailEvent, Status>>;

    async fn ingest(
        &self,
        request: Request<Streaming<IngestBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let mut inbound = request.into_inner();
        let seen = self.0.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let stores = seen.stores_admin_events.load(Ordering::SeqCst);
                let admin = u32::try_from(batch.admin_events.len()).unwrap();
                let attempts = u32::try_from(batch.attempts.len()).unwrap();
                let ack = IngestAck {
                    batch_seq: batch.batch_seq,
                    inserted: attempts + if stores { admin } else { 0 },
                    admin_events_stored: if stores { admin } else { 0 },
                };
                seen.batches.lock().unwrap().push(batch);
                if tx.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_attempts(
        &self,
        _: Request<ListAttemptsRequest>,
    ) -> Result<Response<ListAttemptsResponse>, Status> {
        Err(Status::unimplemented("not used by the forwarder"))
    }

    async fn tail(&self, _: Request<TailRequest>) -> Result<Response<Self::TailStream>, Status> {
        Err(Status::unimplemented("not used by the forwarder"))
    }

    async fn list_admin_events(
        &self,
        _: Request<ListAdminEventsRequest>,
    ) -> Result<Response<ListAdminEventsResponse>, Status> {
        Err(Status::unimplemented("not used by the forwarder"))
    }

    async fn count_attempts(
        &self,
        _: Request<proto::audit::v1::CountAttemptsRequest>,
    ) -> Result<Response<proto::audit::v1::CountAttemptsResponse>, Status> {
        Err(Status::unimplemented("not used by the forwarder"))
    }
}

/// Waits (up to 10 s) until `check` holds.
async fn eventually<F: Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admin_events_wait_for_an_audit_service_that_stores_them<S: AuthStore>(rules: Rules<S>) {
    rules.admin_user("root", "root-pass-123").await;
    let admin = rules.actor("root", "root-pass-123", T0).await;
    let id = rules.active_user("ida", "ida-pass-1234").await;
    rules.api.users().log_out(&admin, id, T0 + 1).await.unwrap();
    let r = rules
        .login("192.0.2.9", "ida", "wrong-pass-1", T0 + 2)
        .await;
    assert_eq!(outcome(r), Refused);
    let event_id = rules.admin_events().await[0].event_id.clone();

    let seen = Arc::new(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuditServiceServer::new(FakeAudit(seen.clone())))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let signal = Arc::new(Notify::new());
    let forwarder = Forwarder::new(
        rules.store.clone(),
        url,
        AttachToken::new(None).unwrap(),
        signal.clone(),
    );
    let (stop, stopping) = common::shutdown::channel();
    let running = tokio::spawn(forwarder.run(stopping));

    // An audit-service from before admin events: the attempts are taken,
    // the event stays, sent again rather than lost.
    eventually("the attempts are taken", || async {
        rules.store.outbox_len().await.unwrap() == 1
    })
    .await;
    assert_eq!(rules.admin_events().await.len(), 1);
    assert!(rules.outbox().await.is_empty());
    let sent = |seen: &Seen| {
        seen.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.admin_events.iter().map(|e| e.event_id.clone()))
            .filter(|e| *e == event_id)
            .count()
    };
    assert!(sent(&seen) >= 1, "the event went out with the attempts");

    // Once audit-service stores admin events, the event is taken.
    seen.stores_admin_events.store(true, Ordering::SeqCst);
    signal.notify_one();
    eventually("the event is taken", || async {
        rules.store.outbox_len().await.unwrap() == 0
    })
    .await;
    let batches = seen.batches.lock().unwrap().len();
    assert!(
        batches < 30,
        "the stream was not spun on the event left behind: {batches} batches"
    );

    stop.start();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
}
