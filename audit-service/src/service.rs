//! The `audit.v1.AuditService` gRPC handlers.

use proto::audit::v1::{
    IngestAck, IngestBatch, ListAttemptsRequest, ListAttemptsResponse,
    audit_service_server::AuditService,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::{
    attempt::{Cursor, Filter, NewAttempt, parse_limit},
    error::Error,
    store::Store,
};

/// Acks buffered ahead of a slow reader; the producer waits for acks
/// anyway, so a small buffer suffices.
const ACK_BUFFER: usize = 16;

/// Handles the RPCs over the shared store.
#[derive(Debug, Clone)]
pub(crate) struct AuditApi {
    /// The log database.
    store: Store,
    /// Turns `true` when the server starts shutting down, so long-lived
    /// ingest streams end and graceful shutdown does not wait on them.
    stopping: watch::Receiver<bool>,
}

impl AuditApi {
    pub(crate) fn new(store: Store, stopping: watch::Receiver<bool>) -> Self {
        Self { store, stopping }
    }
}

/// The request id from the edge, for the request's span.
fn request_id<T>(req: &Request<T>) -> String {
    common::metadata::get(req.metadata(), common::metadata::REQUEST_ID)
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    type IngestStream = ReceiverStream<Result<IngestAck, Status>>;

    async fn ingest(
        &self,
        request: Request<Streaming<IngestBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let span = tracing::info_span!(
            "ingest",
            request_id = %request_id(&request),
            peer = ?request.remote_addr(),
        );
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        tokio::spawn(
            ingest_stream(self.store.clone(), inbound, tx, self.stopping.clone()).instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_attempts(
        &self,
        request: Request<ListAttemptsRequest>,
    ) -> Result<Response<ListAttemptsResponse>, Status> {
        let span = tracing::info_span!("list_attempts", request_id = %request_id(&request));
        async move {
            let req = request.into_inner();
            let limit = parse_limit(req.limit)?;
            let cursor = match req.cursor.as_str() {
                "" => None,
                raw => Some(Cursor::decode(raw)?),
            };
            let filter = Filter::parse(&req)?;
            let page = self.store.list(&filter, limit, cursor).await?;
            Ok(Response::new(ListAttemptsResponse {
                attempts: page.attempts.into_iter().map(Into::into).collect(),
                next_cursor: page.next.map(|c| c.encode()).unwrap_or_default(),
            }))
        }
        .instrument(span)
        .await
        .map_err(|e: Error| e.into())
    }
}

/// Resolves once shutdown has begun; never, if the server side is gone
/// (then the stream ends with its connection instead).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves one producer's stream: batches strictly in order, each committed
/// before its ack. Any failure ends the stream without acking the failed
/// batch, so the producer resends it and nothing is lost.
async fn ingest_stream(
    store: Store,
    mut inbound: Streaming<IngestBatch>,
    acks: mpsc::Sender<Result<IngestAck, Status>>,
    stopping: watch::Receiver<bool>,
) {
    let stop = stopped(stopping);
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            biased;
            () = &mut stop => {
                let _ = acks
                    .send(Err(Status::unavailable("audit-service is shutting down; reconnect")))
                    .await;
                break;
            }
            () = acks.closed() => break,
            next = inbound.message() => next,
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(status) => {
                // Usually the producer hung up; if it is still there (say its
                // message did not decode), it learns why the stream ends.
                tracing::debug!(%status, "producer stream broke");
                let _ = acks.send(Err(status)).await;
                break;
            }
        };
        let reply = ingest_batch(&store, batch).await;
        let failed = reply.is_err();
        if acks.send(reply.map_err(Status::from)).await.is_err() || failed {
            break;
        }
    }
}

/// Validates and commits one batch, returning its ack.
async fn ingest_batch(store: &Store, batch: IngestBatch) -> Result<IngestAck, Error> {
    let attempts = NewAttempt::parse_batch(batch.attempts)?;
    let inserted = store.insert_batch(&attempts).await?;
    tracing::debug!(
        batch_seq = batch.batch_seq,
        received = attempts.len(),
        inserted,
        "batch committed"
    );
    Ok(IngestAck {
        batch_seq: batch.batch_seq,
        inserted,
    })
}
